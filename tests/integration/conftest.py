"""Database plumbing for integration tests: the same tests on SQLite and PostgreSQL.

`--db=sqlite` (default) or `--db=postgresql` (or FACEAPI_TEST_DB) picks the backend.
On PostgreSQL the session creates its own database (dropped at the end) and every test
gets a fresh schema in it; on SQLite every test gets a fresh file. Either way the
migrations run for real. Tests that use `database_url` (directly or through
`settings`, `store`, `app`) are marked `postgres`, so
`pytest -m postgres --db=postgresql` re-runs exactly the database-backed tests.
FACEAPI_TEST_PG_URL overrides the server (default postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faceapi.config import Settings
from faceapi.store import Store, db

PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: uses the database; re-run with --db=postgresql by make test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def db_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.config.getoption("--db")
    return backend


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session."""
    server = make_url(os.environ.get("FACEAPI_TEST_PG_URL", PG_SERVER_URL))
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"faceapi_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"--db=postgresql but PostgreSQL at {server.render_as_string()} "
                    f"cannot create a database: {exc}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _dispose_engines_of(url: str) -> None:
    # Apps built by tests are not torn down; close their pooled connections here so
    # nothing is left open when the schema or database is dropped.
    target = make_url(url)
    for engine in list(db._ENGINES):
        if engine.url == target:
            engine.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_backend: str,
                 tmp_path: Path) -> Iterator[str]:
    """An empty database for one test (migrations not yet run)."""
    if db_backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'faceapi.db'}"
        yield url
        _dispose_engines_of(url)
        return
    base: str = request.getfixturevalue("pg_database_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        # search_path puts every table, trigger function and alembic_version in it.
        pg_url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield pg_url.render_as_string(hide_password=False)
    finally:
        _dispose_engines_of(pg_url.render_as_string(hide_password=False))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Overrides the root `settings`: integration apps run on the selected database."""
    return Settings(env="test", data_dir=tmp_path / "data", log_format="json",
                    database_url=database_url)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """A migrated store on the selected backend."""
    store = Store.from_settings(settings)
    store.upgrade()
    try:
        yield store
    finally:
        store.dispose()
