"""Migrations, SQLite settings, append-only triggers and the signing key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from faceapi.adapters.signing_keys import load_or_create_signing_key
from faceapi.adapters.store import Store, make_engine, upgrade
from faceapi.adapters.store.migrate import current_revision, downgrade_engine, head_revision
from faceapi.config import Settings
from faceapi.domain.audit import SYSTEM, Action, AuditEvent


def test_upgrade_creates_the_audit_tables_and_is_safe_to_repeat(settings: Settings) -> None:
    upgrade(settings)
    upgrade(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"audit_events", "audit_checkpoints", "alembic_version"} <= tables
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_revision_chain_starts_with_0001_audit(store: Store) -> None:
    downgrade_engine(store.engine, "0001_audit")
    assert current_revision(store.engine) == "0001_audit"
    downgrade_engine(store.engine, "base")
    assert "audit_events" not in inspect(store.engine).get_table_names()
    store.upgrade()
    assert current_revision(store.engine) == head_revision()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(
        store: Store, db_backend: str) -> None:
    if db_backend != "sqlite":
        pytest.skip("SQLite settings")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 5000


def test_the_data_dir_is_created_on_first_start(tmp_path, database_url: str) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "new" / "dir", database_url=database_url)
    store = Store.from_settings(settings)
    store.upgrade()
    store.dispose()
    assert (tmp_path / "new" / "dir").is_dir()


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET outcome = 'failure'",
    "DELETE FROM audit_events",
    "UPDATE audit_checkpoints SET signature = 'x'",
    "DELETE FROM audit_checkpoints",
])
def test_raw_sql_cannot_update_or_delete_audit_rows(store: Store, statement: str) -> None:
    with store.uow() as uow:
        uow.audit.append(AuditEvent(action=Action.FACE_DETECT, outcome="success", actor=SYSTEM))
        uow.commit()
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert store.verify().ok


def test_postgresql_also_refuses_truncate(store: Store, db_backend: str) -> None:
    if db_backend != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL")
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_events"))


def test_the_signing_key_is_generated_owner_only_once_and_reused(tmp_path) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "d")
    first = load_or_create_signing_key(settings)
    second = load_or_create_signing_key(settings)
    key_file = tmp_path / "d" / "audit_signing_key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.public_key().public_bytes_raw() == second.public_key().public_bytes_raw()


def test_a_configured_signing_key_that_is_missing_stops_the_start(tmp_path) -> None:
    settings = Settings(env="test", data_dir=tmp_path, audit_signing_key=str(tmp_path / "no.pem"))
    with pytest.raises(FileNotFoundError, match="FACEAPI_AUDIT_SIGNING_KEY"):
        load_or_create_signing_key(settings)


def test_a_database_behind_the_code_is_refused_with_a_clear_message(
        settings: Settings) -> None:
    store = Store.from_settings(settings)
    try:
        with pytest.raises(RuntimeError, match="faceapi db upgrade"):
            store.require_current_schema()
        store.upgrade()
        store.require_current_schema()
    finally:
        store.dispose()


def test_a_production_app_on_an_unmigrated_postgresql_refuses_to_start(
        settings: Settings, db_backend: str) -> None:
    if db_backend != "postgresql":
        pytest.skip("SQLite apps migrate themselves on start; runs in the PostgreSQL pass")
    from faceapi.entrypoints.web.app import create_app
    from tests.fakes import FakeEngine
    from tests.support.production_keys import write_production_keys

    production = settings.with_overrides(
        env="production", **write_production_keys(settings.data_dir.parent / "secrets"))
    with pytest.raises(RuntimeError, match="faceapi db upgrade"):
        create_app(production, engine=FakeEngine())


def test_0007_gives_existing_keys_their_name_as_owner_and_the_bootstrap_key_bootstrap(
        store: Store) -> None:
    from datetime import UTC, datetime

    downgrade_engine(store.engine, "0006_policy_binding")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [("BootKey1", "bootstrap-admin", "admin", "bootstrap"),
            ("AppKey01", "door app", "app", "AdminKey")]
    with store.engine.begin() as conn:
        for key_id, name, role, creator in rows:
            conn.execute(text("INSERT INTO api_keys (id, name, role, key_hash, created_at, "
                              "created_by) VALUES (:id, :name, :role, :hash, :at, :by)"),
                         {"id": key_id, "name": name, "role": role, "hash": "0" * 64,
                          "at": now, "by": creator})
    store.upgrade()
    with store.engine.connect() as conn:
        owners = dict(conn.execute(text("SELECT id, owner FROM api_keys")).all())
    assert owners == {"BootKey1": "bootstrap", "AppKey01": "door app"}


@pytest.mark.parametrize(("configured", "bound"), [
    (None, "login,photo_tagging"),
    ("watchlist_search, identity_check", "identity_check,watchlist_search"),
])
def test_0006_binds_existing_collections_to_the_default_binding(
        store: Store, monkeypatch: pytest.MonkeyPatch, configured: str | None,
        bound: str) -> None:
    from datetime import UTC, datetime

    if configured is not None:
        monkeypatch.setenv("FACEAPI_DEFAULT_COLLECTION_POLICIES", configured)
    downgrade_engine(store.engine, "0005_face_crops")
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO collections (collection_id, description, engine, "
                          "model_version, version, consent_required, keep_face_crops, "
                          "created_at) VALUES ('old', '', 'fake', 'fake-1', 0, true, true, "
                          ":at)"), {"at": datetime(2026, 1, 1, tzinfo=UTC)})
    store.upgrade()
    with store.engine.connect() as conn:
        policies = conn.execute(text("SELECT policies FROM collections")).scalar_one()
    assert policies == bound


def test_upgrading_a_sqlite_database_through_every_table_rebuild_keeps_its_faces(
        tmp_path: Path) -> None:
    """Revisions 0005 and 0006 rebuild `collections` (Alembic batch mode on SQLite: copy,
    drop, rename); with foreign keys on, the drop cascaded and emptied subjects and
    faces. A database enrolled at 0004 keeps every row through head and back."""
    from datetime import UTC, datetime

    from sqlalchemy import text as sql

    from faceapi.adapters.store.db import make_engine
    from faceapi.adapters.store.migrate import downgrade_engine, upgrade_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        upgrade_engine(engine, "0004_decisions")
        with engine.begin() as conn:
            conn.execute(sql(
                "INSERT INTO collections (collection_id, description, engine, model_version,"
                " version, consent_required, created_at) VALUES ('staff', '', 'local',"
                " 'dlib-20.0.1/resnet_v1/hog/align68/jitter1', 1, 0, :t)"), {"t": now})
            conn.execute(sql("INSERT INTO subjects (collection_id, subject_id, created_at)"
                             " VALUES ('staff', 'alice', :t)"), {"t": now})
            conn.execute(sql(
                "INSERT INTO faces (face_id, collection_id, subject_id, image_id, image_sha256,"
                " box_width, box_height, box_left, box_top, confidence, width_px, height_px,"
                " embedding, created_at) VALUES ('f1', 'staff', 'alice', 'i1', :sha, 0.5, 0.5,"
                " 0.1, 0.1, 99.0, 100, 100, :emb, :t)"),
                {"sha": "0" * 64, "emb": b"\0" * 512, "t": now})

        def counts() -> tuple[int, int, int]:
            with engine.connect() as conn:
                return tuple(conn.execute(sql(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                             for table in ("collections", "subjects", "faces"))  # type: ignore[return-value]

        upgrade_engine(engine)
        assert counts() == (1, 1, 1)
        downgrade_engine(engine, "0004_decisions")
        assert counts() == (1, 1, 1)
        upgrade_engine(engine)
        assert counts() == (1, 1, 1)
        # The pool's connections have their foreign keys back on.
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()
