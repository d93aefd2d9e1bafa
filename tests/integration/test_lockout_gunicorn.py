"""Lockout across workers: two real gunicorn servers on one fresh PostgreSQL database,
the real local engine, requests alternating between them. The count lives in the store,
so the sixth failed verify is refused whichever worker it reaches, and a success on
one worker resets the count the other one sees."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
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
from tests.support.servers import Gunicorn, faceapi_env, start_gunicorn

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"
ENROLLED = DATASET / "img5.jpg"  # angelina_jolie
GENUINE = DATASET / "img6.jpg"  # angelina_jolie, another photo
IMPOSTOR = DATASET / "img12.jpg"  # jennifer_aniston
PG_SERVER_URL = os.environ.get("FACEAPI_TEST_PG_URL",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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


def post_verify(server: Gunicorn, key: str, image: Path, subject: str) -> tuple[int, Any, str]:
    answer = server.request("POST", "/v1/verify", key=key, timeout=60, body={
        "collection_id": "door", "subject_id": subject, "policy": "login",
        "image": {"bytes": base64.b64encode(image.read_bytes()).decode("ascii")}})
    return answer.status, answer.json(), answer.headers.get("retry-after", "")


@pytest.fixture
def two_workers(db_backend: str, tmp_path: Path,
                request: pytest.FixtureRequest) -> Iterator[tuple[list[Gunicorn], str]]:
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
    env = faceapi_env({"FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(data_dir),
                       "FACEAPI_DATABASE_URL": fresh_database, "FACEAPI_LOG_FORMAT": "json",
                       # Enough verify requests for the test in each worker's own window.
                       "FACEAPI_RATE_LIMIT_VERIFY": "600/minute"})
    servers: list[Gunicorn] = []
    try:
        for name in ("worker-a", "worker-b"):
            servers.append(start_gunicorn(env, tmp_path / f"{name}.log", workers=1))
        yield servers, key
    finally:
        for server in servers:
            server.stop(timeout=20)


def test_six_failed_verifies_lock_the_subject_across_two_gunicorn_workers(
        two_workers: tuple[list[Gunicorn], str]) -> None:
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
        two_workers: tuple[list[Gunicorn], str]) -> None:
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
