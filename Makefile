# Two commands matter: `make serve` and `make test`. Both create the venv and install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
export FACEAPI_DATA_DIR ?= var

.PHONY: serve test test-unit test-fast lint bench clean venv dev browser

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

test: $(DEV_STAMP) browser
	$(PY) -m tests.run_all

# The console's e2e tests drive Debian's chromium (never a downloaded browser). On a
# fresh root CI machine install it; elsewhere say so, and those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the e2e console tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || \
	    echo "could not install chromium: the e2e console tests will skip"; \
	  else echo "chromium not found (apt-get install chromium): the e2e console tests will skip"; fi; }

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
