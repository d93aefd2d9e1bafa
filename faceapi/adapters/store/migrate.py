"""Running the Alembic migrations from Python (create_app, `faceapi db upgrade`, tests).

The revision chain is linear with fixed ids so parallel work cannot collide:
0001_audit -> 0002_api_keys -> 0003_collections -> ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from faceapi.adapters.store.db import make_engine
from faceapi.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Separate from the audit append lock: only one process migrates at a time.
MIGRATION_LOCK_KEY = 0x0FACEA91


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@contextmanager
def _migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction for a whole migration run.

    On SQLite, foreign keys are off while it runs: Alembic's batch mode changes a table
    by copying it and dropping the original, and with foreign keys on, dropping
    `collections` cascades to every subject and face (ON DELETE CASCADE), so an
    upgrade through a revision that rebuilt it emptied them. The pragma can change
    only outside a transaction, hence the raw connection; the migrated rows are checked
    with `PRAGMA foreign_key_check` before the commit, and the pragma is back on before
    the connection returns to the pool."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                 {"k": MIGRATION_LOCK_KEY})
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left {len(broken)} row(s) whose "
                                           f"foreign key points nowhere: {broken[:5]}")
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """Bring the database at `engine` up to `revision`, in one transaction."""
    cfg = alembic_config()
    with _migration_transaction(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade_engine(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with _migration_transaction(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate the database named by `settings` (its data dir is created if needed)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_known_revision(revision: str) -> bool:
    """Whether this code has a migration with that id (a database migrated by a newer
    release names one it does not)."""
    return revision in {script.revision for script in
                        ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def is_up_to_date(engine: Engine) -> bool:
    """Whether the database is at the newest revision (production start check)."""
    return current_revision(engine) == head_revision()
