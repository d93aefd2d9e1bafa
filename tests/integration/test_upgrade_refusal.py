"""Upgrades (docs/operations.md, "Upgrades"): code at head never serves from a schema at
another revision. A production app on a schema one migration behind refuses to start and
says to run `faceapi db upgrade`; on a schema a newer release migrated (a rollback of the
code) it refuses and says upgrading cannot help; a running app whose schema is moved
under it turns not ready (503 schema_not_current) instead of failing requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from faceapi.adapters.store import Store
from faceapi.adapters.store.migrate import downgrade_engine, head_revision
from faceapi.config import Settings
from faceapi.entrypoints.cli.db import db
from faceapi.entrypoints.web.app import create_app
from tests.fakes import FakeEngine
from tests.support.production_keys import write_production_keys

pytestmark = [pytest.mark.postgres, pytest.mark.empty_database]

# The revision before head: what a database still has when the new pods start before
# the migration Job ran.
PREVIOUS = "0008_review_scope"


def db_cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir),
           "FACEAPI_DATABASE_URL": settings.resolved_database_url, "FACEAPI_ENV": "test"}
    result = CliRunner().invoke(db, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def production(settings: Settings, tmp_path: Path, db_backend: str) -> Settings:
    if db_backend != "postgresql":
        pytest.skip("SQLite apps migrate themselves on start; runs in the PostgreSQL pass")
    return settings.with_overrides(env="production",
                                   **write_production_keys(tmp_path / "secrets"))


def test_an_app_at_head_refuses_a_schema_one_migration_behind_until_db_upgrade_runs(
        production: Settings) -> None:
    assert db_cli(production, "upgrade", "--revision", PREVIOUS)[0] == 0
    code, output = db_cli(production, "current")
    assert code == 1
    assert f"current: {PREVIOUS}  head: {head_revision()}" in output
    with pytest.raises(RuntimeError) as refused:
        create_app(production, engine=FakeEngine())
    assert str(refused.value) == (f"database schema is at {PREVIOUS}, the code needs "
                                  f"{head_revision()}: run `faceapi db upgrade`")
    assert db_cli(production, "upgrade")[0] == 0
    app = create_app(production, engine=FakeEngine())
    try:
        assert app.test_client().get("/readyz").status_code == 200
    finally:
        app.extensions["faceapi"].store.dispose()


def test_code_older_than_the_schema_refuses_and_says_upgrading_cannot_help(
        production: Settings) -> None:
    assert db_cli(production, "upgrade")[0] == 0
    store = Store.from_settings(production)
    try:
        with store.engine.begin() as conn:  # what a newer release's migration leaves
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    finally:
        store.dispose()
    with pytest.raises(RuntimeError, match="0099_future, which this code does not know") \
            as refused:
        create_app(production, engine=FakeEngine())
    assert "restore the backup taken before the upgrade" in str(refused.value)
    assert "run `faceapi db upgrade`" not in str(refused.value)


def test_a_running_app_whose_schema_is_moved_back_turns_not_ready(
        production: Settings) -> None:
    assert db_cli(production, "upgrade")[0] == 0
    app = create_app(production, engine=FakeEngine())
    store = app.extensions["faceapi"].store
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        downgrade_engine(store.engine, PREVIOUS)
        reply = client.get("/readyz")
        assert reply.status_code == 503
        assert reply.get_json()["checks"]["store"] == "schema_not_current"
    finally:
        store.dispose()


def test_running_old_pods_turn_not_ready_once_a_newer_release_migrates_the_schema(
        production: Settings) -> None:
    # What the migration Job of an upgrade does to the pods still running the old code:
    # they leave the Service until new pods are ready (docs/operations.md, "Upgrades").
    assert db_cli(production, "upgrade")[0] == 0
    app = create_app(production, engine=FakeEngine())
    store = app.extensions["faceapi"].store
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
        reply = client.get("/readyz")
        assert reply.status_code == 503
        assert reply.get_json()["checks"]["store"] == "schema_not_current"
    finally:
        store.dispose()
