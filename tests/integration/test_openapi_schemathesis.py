"""`schemathesis run --checks all` against a running server passes (issue 17, item 6):
every response conforms to /openapi.json (our error envelope on every error, the
documented statuses, content types and headers, `Allow` on a 405), schema-valid requests
are accepted and schema-violating ones refused.

The server is the app on werkzeug's threaded server on 127.0.0.1 with its real store
(SQLite, or PostgreSQL with --db=postgresql) and the fake engine, which finds one face
on the one PNG the hooks (tests/integration/schemathesis_hooks.py) put in place of
generated image bytes. The run is bounded: a fixed seed, few examples per operation, a
time budget.

One check is left out, on purpose: `use_after_free` expects a GET after a DELETE to be
404, but DELETE /v1/keys/{key_id} *revokes* a key, which stays readable with status
`revoked` for auditors (docs/api.md); that is the documented behaviour."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from faceapi.config import Settings
from tests.conftest import KeyFactory
from tests.emulator_server import serve
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector
from tests.integration.verify_support import new_image

REPO = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 5


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # Rate limits out of the way: a 429 is documented, but a run of 429s tests nothing.
    return Settings(env="test", data_dir=tmp_path / "data", log_format="json",
                    database_url=database_url, rate_limit_default="1000000/minute",
                    rate_limit_verify="1000000/minute",
                    webhook_allowed_hosts=("hooks.example.test",))


# Each run: the key's role, the operations (a path regex; None: all), its time budget.
# The admin run covers every operation; what an admin may not call (verify, search,
# reviews) is refused with 403, so those run again under the role that may.
RUNS: tuple[tuple[str, str | None, int], ...] = (
    ("admin", None, 45),
    ("app", r"^/v1/(verify|compare|decisions/|collections/\{collection_id\}/search)", 12),
    ("reviewer", r"^/v1/reviews", 12),
)


# schemathesis's positive_data_acceptance (ST202) takes a schema-valid request refused
# with anything but 2xx, 3xx, 401, 403, 404, 409, 429 or 5xx for a bug. A schema-valid
# POST /v1/verify is also rightly refused with 423 once its subject is locked out, which
# the generated requests reach whenever enough of them fail for one subject within the
# policy's window (it failed CI that way, now and then): 423 is documented, with
# Retry-After, and is the lockout guarantee at work.
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "423", "429", "5xx"]
"""


def _schemathesis(url: str, bearer: str, paths: str | None, budget: int, *, cwd: Path,
                  env: dict[str, str]) -> str:
    config = cwd / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    command = [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{url}/openapi.json",
               "--checks", "all",
               "--exclude-checks", "use_after_free",
               "--header", f"Authorization: Bearer {bearer}",
               "--max-examples", str(MAX_EXAMPLES), "--seed", "17",
               "--max-time", str(budget), "--generation-database", "none",
               "--no-color", "--continue-on-failure", "--max-failures", "200"]
    if paths is not None:
        command += ["--include-path-regex", paths]
    run = subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True,
                         timeout=budget + 60,
                         env={**env, "FACEAPI_SCHEMATHESIS_AUTH": f"Bearer {bearer}"})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20000:]
    selected = re.search(r"Selected: (\d+)/\d+", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected, output[-2000:]
    assert tested, output[-2000:]
    # The time budget must not leave operations untested.
    assert tested.group(1) == selected.group(1), output[-2000:]
    return output


def test_schemathesis_checks_all_pass_against_a_running_server(
        app: Flask, fake_engine: FakeEngine, make_key: KeyFactory, tmp_path: Path) -> None:
    if not SCHEMATHESIS.exists():
        pytest.skip("schemathesis is not installed (requirements-dev.txt)")
    image = new_image()
    fake_engine.script(image, [ScriptedFace(face(), unit_vector(7))])
    image_path = tmp_path / "face.png"
    image_path.write_bytes(image)
    keys = {role: make_key(role) for role, _, _ in RUNS}
    live = serve(app)
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO),
               "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
               "FACEAPI_SCHEMATHESIS_IMAGE": str(image_path),
               "FACEAPI_SCHEMATHESIS_URL": live.url}
        for role, paths, budget in RUNS:
            _schemathesis(live.url, keys[role], paths, budget, cwd=tmp_path, env=env)
    finally:
        live.stop()
