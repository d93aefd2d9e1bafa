"""Lockout across workers: two real gunicorn servers on one fresh PostgreSQL database,
the real local engine, requests alternating between them. The count lives in the store,
so the sixth failed verify is refused whichever worker it reaches, and a success on
one worker resets the count the other one sees."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faceapi.adapters.blobs import DirectoryBlobStore
from faceapi.adapters.engines.factory import build_engine
from faceapi.adapters.images import PillowImageDecoder
from faceapi.adapters.store import Store
from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.services import keys
from faceapi.services.collections import CreateCollectionRequest, create_collection
from faceapi.services.enroll import IndexFacesRequest, index_faces
from tests.fakes import FakeClock

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"
ENROLLED = DATASET / "img5.jpg"  # angelina_jolie
GENUINE = DATASET / "img6.jpg"  # angelina_jolie, another photo
IMPOSTOR = DATASET / "img12.jpg"  # jennifer_aniston
PG_SERVER_URL = os.environ.get("FACEAPI_TEST_PG_URL",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A database of its own, created for this test and dropped after it."""
    server = make_url(PG_SERVER_URL)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"faceapi_lockout_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not available: {type(exc).__name__}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]


def start_server(env: dict[str, str], log: Path) -> Server:
    port = free_port()
    handle = log.open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
         "wsgi:app"], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
        env={**env, "FACEAPI_BIND": f"127.0.0.1:{port}", "FACEAPI_WORKERS": "1"})
    handle.close()
    return Server(f"http://127.0.0.1:{port}", process)


def wait_ready(server: Server, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"gunicorn did not answer:\n{log.read_text()[-3000:]}")


def post_verify(server: Server, key: str, image: Path, subject: str) -> tuple[int, Any, str]:
    body = {"collection_id": "door", "subject_id": subject, "policy": "login",
            "image": {"bytes": base64.b64encode(image.read_bytes()).decode("ascii")}}
    request = urllib.request.Request(
        f"{server.url}/v1/verify", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), ""
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), \
            error.headers.get("Retry-After", "")


@pytest.fixture
def two_workers(db_backend: str, tmp_path: Path,
                request: pytest.FixtureRequest) -> Iterator[tuple[list[Server], str]]:
    if db_backend != "postgresql":
        pytest.skip("runs in the PostgreSQL pass (--db=postgresql)")
    if not ENROLLED.is_file():
        pytest.skip("face fixtures missing")
    fresh_database: str = request.getfixturevalue("fresh_database")
    data_dir = tmp_path / "data"
    settings = Settings(env="test", data_dir=data_dir, database_url=fresh_database)
    store = Store.from_settings(settings)
    store.upgrade()
    engine = build_engine(settings)
    system = Actor.system("tests")
    clock = FakeClock()
    create_collection(CreateCollectionRequest("door", consent_required=False), actor=system,
                      engine=engine, uow=store.uow(), clock=clock)
    for subject in ("angelina", "angelina2"):
        index_faces(IndexFacesRequest(collection_id="door", image=ENROLLED.read_bytes(),
                                      subject_id=subject),
                    actor=system, engine=engine, uow=store.uow(), clock=clock,
                    decoder=PillowImageDecoder(settings),
                    blobs=DirectoryBlobStore(settings.resolved_blob_dir))
    key = keys.create_key(keys.NewKey(name="door app", role="app"), uow=store.uow(),
                          clock=clock, actor=system).secret
    store.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update({"FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(data_dir),
                "FACEAPI_DATABASE_URL": fresh_database, "FACEAPI_LOG_FORMAT": "json",
                # Enough verify requests for the test in each worker's own window.
                "FACEAPI_RATE_LIMIT_VERIFY": "600/minute"})
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    servers = [start_server(env, log) for log in logs]
    try:
        for server, log in zip(servers, logs, strict=True):
            wait_ready(server, log)
        yield servers, key
    finally:
        for server in servers:
            server.process.terminate()
        for server in servers:
            try:
                server.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def test_six_failed_verifies_lock_the_subject_across_two_gunicorn_workers(
        two_workers: tuple[list[Server], str]) -> None:
    servers, key = two_workers
    for attempt in range(5):
        status, body, _ = post_verify(servers[attempt % 2], key, IMPOSTOR, "angelina")
        assert status == 200, body
        assert body["outcome"] == "no_match"
    # The sixth goes to the worker that saw only two of the five failures.
    status, body, retry_after = post_verify(servers[1], key, GENUINE, "angelina")
    assert status == 423, body
    assert body["error"]["code"] == "locked"
    assert int(retry_after) >= 1
    status, body, _ = post_verify(servers[0], key, GENUINE, "angelina")
    assert status == 423


def test_a_success_on_one_worker_resets_the_count_the_other_sees(
        two_workers: tuple[list[Server], str]) -> None:
    servers, key = two_workers
    for attempt in range(4):
        status, body, _ = post_verify(servers[attempt % 2], key, IMPOSTOR, "angelina2")
        assert body["outcome"] == "no_match"
    status, body, _ = post_verify(servers[0], key, GENUINE, "angelina2")
    assert body["outcome"] == "match", body
    for attempt in range(4):
        status, body, _ = post_verify(servers[(attempt + 1) % 2], key, IMPOSTOR, "angelina2")
        assert status == 200, body
        assert body["outcome"] == "no_match"
    status, body, _ = post_verify(servers[1], key, IMPOSTOR, "angelina2")
    assert status == 200  # the fifth failure since the success locks ...
    status, body, _ = post_verify(servers[0], key, GENUINE, "angelina2")
    assert status == 423  # ... and the next attempt is refused on the other worker
