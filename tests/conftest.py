"""Shared fixtures: settings in a temp dir, a fresh app per test, the face data set."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app
from tests.fakes import FakeClock, FakeEngine
from tests.support.databases import build_sqlite_template, copy_sqlite_template, sqlite_path

REPO = Path(__file__).resolve().parent.parent
FIXTURE_FACES = REPO / "tests" / "data" / "faces"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=("sqlite", "postgresql"),
                     default=os.environ.get("FACEAPI_TEST_DB", "sqlite"),
                     help="database backend for store tests (default sqlite)")


def shared_faces_dir() -> Path:
    return Path(os.environ.get("FACEAPI_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))


@pytest.fixture
def faces_dir() -> Path:
    """The full shared face data set; tests that need it skip when it is absent."""
    path = shared_faces_dir()
    if not (path / "LABELS.csv").is_file():
        pytest.skip(f"shared face data set not found at {path} (set FACEAPI_FACES_DIR)")
    return path


@pytest.fixture
def fixture_faces() -> Path:
    """The small licensed fixture set carried in the repo (tests/data/faces)."""
    return FIXTURE_FACES


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", data_dir=tmp_path / "data", log_format="json")


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head once per session; tests get copies of it
    (tests/support/databases.py)."""
    return build_sqlite_template(tmp_path_factory.mktemp("template") / "faceapi.db")


@pytest.fixture
def app(request: pytest.FixtureRequest, settings: Settings, fake_engine: FakeEngine,
        clock: FakeClock) -> Iterator[Flask]:
    # A SQLite database that does not exist yet starts as a copy of the migrated
    # template (what create_app's own migration would make, without its cost).
    path = sqlite_path(settings.resolved_database_url)
    if path is not None and not path.exists() \
            and request.node.get_closest_marker("empty_database") is None:
        copy_sqlite_template(request.getfixturevalue("sqlite_template"), path)
    app = create_app(settings, engine=fake_engine, clock=clock)
    yield app
    # Close the pool now: PostgreSQL connections left to the garbage collector warn.
    app.extensions["faceapi"].store.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


KeyFactory = Callable[..., str]
HeadersFactory = Callable[..., dict[str, str]]


@pytest.fixture
def make_key(app: Flask) -> KeyFactory:
    """make_key("operator", collections=["c1"], policies=None, expires_at=None,
    owner=None) creates a key in the app's store (as the CLI would) and returns the key
    itself. Without `owner` each key gets an owner of its own (two keys made here are two
    people to the two-person rule)."""
    import itertools

    import structlog

    from faceapi.domain.audit import Actor
    from faceapi.services import keys

    _owners = itertools.count(1)

    def _make(role: str = "app", *, collections: Iterable[str] | None = None,
              policies: Iterable[str] | None = None, expires_at: datetime | None = None,
              name: str | None = None, owner: str | None = None) -> str:
        d = app.extensions["faceapi"]
        new = keys.NewKey(name=name or f"test {role}", role=role,
                          owner=owner or f"test-{role}-{next(_owners)}@example.org",
                          collections=None if collections is None else frozenset(collections),
                          policies=None if policies is None else frozenset(policies),
                          expires_at=expires_at)
        # Made outside any request, as by the CLI: the last request's id, still in
        # structlog's context, must not be stamped on this key's audit event.
        with structlog.contextvars.bound_contextvars(request_id=None):
            return keys.create_key(new, uow=d.store.uow(), clock=d.clock,
                                   actor=Actor.system("tests")).secret

    return _make


@pytest.fixture
def auth_headers(make_key: KeyFactory) -> HeadersFactory:
    """auth_headers("reviewer") -> {"Authorization": "Bearer fa_..."}. One key per distinct
    role and scope per test (asking twice gives the same key); scope keywords as make_key."""
    made: dict[tuple[object, ...], str] = {}

    def _headers(role: str = "app", **scope: object) -> dict[str, str]:
        marker = (role, *sorted((k, repr(sorted(v) if isinstance(v, (list, set, frozenset, tuple))
                                           else v)) for k, v in scope.items()))
        if marker not in made:
            made[marker] = make_key(role, **scope)
        return {"Authorization": f"Bearer {made[marker]}"}

    return _headers


def encode(pixels: np.ndarray, fmt: str = "PNG", **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def solid_image(width: int = 64, height: int = 48, fmt: str = "PNG",
                color: tuple[int, int, int] = (120, 90, 60)) -> bytes:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :] = color
    return encode(pixels, fmt)
