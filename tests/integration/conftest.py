"""Database plumbing for integration tests: the same tests on SQLite and PostgreSQL.

`--db=sqlite` (default) or `--db=postgresql` (or FACEAPI_TEST_DB) picks the backend.
Every test gets a database of its own, already at head: the migrations run for real
once per session, into a template that each test gets a copy of (tests/support/
databases.py: a copied file on SQLite, a schema of the session's own database on
PostgreSQL, which is dropped at the end). Tests marked `empty_database` (the migration
tests, test_store_migrations.py) get an empty one instead and migrate it themselves.
Tests that use `database_url` (directly or through `settings`, `store`, `app`) are
marked `postgres`, so `pytest -m postgres --db=postgresql` re-runs exactly the
database-backed tests. FACEAPI_TEST_PG_URL overrides the server (default
postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from faceapi.adapters.store import Store, db
from faceapi.config import Settings
from tests.support.databases import PgSchemas, copy_sqlite_template

PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Test modules whose every test wants an empty (unmigrated) database.
EMPTY_DATABASE_MODULES = frozenset({"test_store_migrations.py"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: uses the database; re-run with --db=postgresql by make test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if item.path.name in EMPTY_DATABASE_MODULES:
            item.add_marker(pytest.mark.empty_database)


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
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        schemas = _SCHEMAS.pop(url, None)
        if schemas is not None:
            schemas.close()
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


# The schema factory of each session database (tests/support/databases.py), made on
# first use and closed before that database is dropped. Not a fixture of its own: the
# security modules import `database_url` and `pg_database_url` from here, and these two
# must be all they need.
_SCHEMAS: dict[str, PgSchemas] = {}


def _schemas_of(base: str) -> PgSchemas:
    schemas = _SCHEMAS.get(base)
    if schemas is None:
        schemas = _SCHEMAS[base] = PgSchemas(base)
    return schemas


def wants_empty_database(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("empty_database") is not None


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_backend: str,
                 tmp_path: Path) -> Iterator[str]:
    """The database of one test: at head (a copy of the session's migrated template),
    or empty for tests marked `empty_database` (migrations not yet run)."""
    empty = wants_empty_database(request)
    if db_backend == "sqlite":
        path = tmp_path / "db" / "faceapi.db"
        if not empty:
            copy_sqlite_template(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
        yield url
        _dispose_engines_of(url)
        return
    base: str = request.getfixturevalue("pg_database_url")
    if empty:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        engine = create_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    else:
        schemas = _schemas_of(base)
        schema = schemas.take()
    # search_path puts every table, trigger function and alembic_version in it.
    pg_url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    url = pg_url.render_as_string(hide_password=False)
    try:
        yield url
    finally:
        _dispose_engines_of(url)
        if empty:
            engine = create_engine(base)
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()
        else:
            schemas.release(schema)


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
