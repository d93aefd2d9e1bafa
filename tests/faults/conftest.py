"""Fault tests: a real deployment (gunicorn -c deploy/gunicorn.conf.py with 2 workers, a
PostgreSQL cluster and a Redis of the test's own, the local engine) that each test then
breaks: a worker killed, the database restarted, Redis killed, the blob directory full
or read-only. The shared PostgreSQL and Redis are never touched.

The first key is made as an operator would (`faceapi db upgrade`, `faceapi keys
bootstrap`); the keys and the collection the test needs are made with that admin key
over HTTP. docs/operations.md ("Faults and recovery") says what each test proves."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import (
    REPO,
    Gunicorn,
    PostgresCluster,
    Response,
    faceapi_cli,
    faceapi_env,
    postgres_missing,
    start_gunicorn,
)

DATASET = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"
ENROLLED = DATASET / "img5.jpg"  # angelina_jolie
GENUINE = DATASET / "img6.jpg"  # angelina_jolie, another photo
IMPOSTOR = DATASET / "img12.jpg"  # jennifer_aniston
# Large enough that no limit interferes with a test that is not about rate limits.
NO_LIMIT = "100000/minute"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Under pytest-xdist (`make test`: --dist loadgroup) the fault tests run one after
    # the other in one worker: each starts its own gunicorn with 2 workers, and two at
    # once on a 2-core machine would time each other's recovery, not faceapi's.
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.slow)
            if config.pluginmanager.hasplugin("xdist"):
                item.add_marker(pytest.mark.xdist_group("faults"))


def image(path: Path) -> dict[str, str]:
    return {"bytes": base64.b64encode(path.read_bytes()).decode("ascii")}


@pytest.fixture
def pg_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own, started; removed after the test."""
    missing = postgres_missing()
    if missing:
        pytest.skip(missing)
    if not ENROLLED.is_file():
        pytest.skip("face fixtures missing (tests/data/faces)")
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@dataclass
class Deployment:
    """One faceapi deployment: gunicorn, its settings, its keys and its database."""

    server: Gunicorn
    env: dict[str, str]
    database_url: str
    data_dir: Path
    blob_dir: Path
    admin_key: str
    operator_key: str
    app_key: str

    def enroll(self, subject: str, photo: Path = ENROLLED, *,
               collection: str = "door", timeout: float = 60) -> Response:
        return self.server.request("POST", f"/v1/collections/{collection}/faces",
                                   key=self.operator_key, timeout=timeout,
                                   body={"subject_id": subject, "image": image(photo)})

    def verify(self, subject: str, photo: Path = GENUINE, *, policy: str = "login",
               key: str | None = None, timeout: float = 60,
               source: str | None = None) -> Response:
        return self.server.request("POST", "/v1/verify", key=key or self.app_key,
                                   timeout=timeout, source=source,
                                   body={"collection_id": "door", "subject_id": subject,
                                         "policy": policy, "image": image(photo)})

    def create_key(self, role: str) -> str:
        answer = self.server.request(
            "POST", "/v1/keys", key=self.admin_key,
            body={"name": f"faults {role} {uuid.uuid4().hex[:6]}", "role": role,
                  "owner": f"faults-{role}-{uuid.uuid4().hex[:6]}@example.org"})
        assert answer.status in (200, 201), answer
        return str(answer.json()["key"])


DeploymentFactory = Callable[..., Deployment]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[DeploymentFactory]:
    """deployment(database_url, redis_url=None, blob_dir=None, **env) -> a running
    deployment with a collection `door` (login, identity_check, photo_tagging bound, no
    consent required), an operator key and an app key. Stopped after the test."""
    started: list[Gunicorn] = []

    def _start(database_url: str, *, redis_url: str | None = None,
               blob_dir: Path | None = None, **extra: str) -> Deployment:
        data_dir = tmp_path / "data"
        blobs = blob_dir or data_dir / "blobs"
        settings = {"FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(data_dir),
                    "FACEAPI_DATABASE_URL": database_url, "FACEAPI_BLOB_DIR": str(blobs),
                    "FACEAPI_POLICIES_DIR": str(REPO / "policies"),
                    "FACEAPI_LOG_FORMAT": "json", "FACEAPI_LOG_LEVEL": "WARNING",
                    "FACEAPI_RATE_LIMIT_DEFAULT": NO_LIMIT,
                    "FACEAPI_RATE_LIMIT_VERIFY": NO_LIMIT,
                    "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}
        if redis_url:
            settings["FACEAPI_REDIS_URL"] = redis_url
        settings.update(extra)
        env = faceapi_env(settings)
        for command in (("db", "upgrade"), ("keys", "bootstrap")):
            done = faceapi_cli(env, *command)
            assert done.returncode == 0, done.stderr[-2000:]
        admin_key = (data_dir / "admin-key.txt").read_text().strip()
        server = start_gunicorn(env, tmp_path / "gunicorn.log")
        started.append(server)
        deployed = Deployment(server, server.env, database_url, data_dir, blobs, admin_key,
                              "", "")
        deployed.operator_key = deployed.create_key("operator")
        deployed.app_key = deployed.create_key("app")
        answer = server.request("POST", "/v1/collections", key=deployed.operator_key,
                                body={"collection_id": "door", "consent_required": False,
                                      "policies": ["login", "identity_check",
                                                   "photo_tagging"]})
        assert answer.status == 201, answer
        return deployed

    try:
        yield _start
    finally:
        for server in started:
            server.stop()


def rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of one query on the deployment's database (a connection of the test's own)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def report(scenario: str, **figures: Any) -> None:
    """Record a scenario's measured figures: printed (pytest -s shows them) and, when
    FACEAPI_TEST_FAULTS_REPORT names a file, appended to it as one JSON line (what
    bench/faults.py collects into bench/results/)."""
    import json
    import os

    line = json.dumps({"scenario": scenario, **figures}, sort_keys=True)
    print(line)
    target = os.environ.get("FACEAPI_TEST_FAULTS_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")
