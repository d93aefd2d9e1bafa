# Two commands matter: `make serve` and `make test`. Both create the venv and install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
export FACEAPI_DATA_DIR ?= var

.PHONY: serve test test-unit test-fast lint bench clean venv dev

$(RUNTIME_STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(RUNTIME_STAMP)
dev: $(DEV_STAMP)

serve: $(RUNTIME_STAMP)
	$(VENV)/bin/faceapi db upgrade
	$(VENV)/bin/faceapi keys bootstrap
	$(VENV)/bin/gunicorn -c deploy/gunicorn.conf.py wsgi:app

test: $(DEV_STAMP)
	$(PY) -m tests.run_all

test-unit: $(DEV_STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check faceapi tests bench wsgi.py
	$(VENV)/bin/mypy faceapi wsgi.py

bench: $(DEV_STAMP)
	$(PY) bench/accuracy.py
	$(PY) bench/latency.py
	$(PY) bench/search.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
