"""Database engines: connection set-up, change tracking and fork safety. The Store
built on them is in store/store.py.

SQLite (the default) gets WAL, foreign keys, a busy timeout and `BEGIN IMMEDIATE` for
every write transaction, so concurrent writers queue on the database lock instead of
failing half-way. PostgreSQL is used as is; audit appends take an advisory lock
(store/audit_repo.py).
"""

from __future__ import annotations

import os
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.sql.dml import UpdateBase

from faceapi.adapters.store.tables import AUDIT_TABLES
from faceapi.domain.errors import StoreUnavailable

log = structlog.get_logger(__name__)

# Connection.info key holding the set of tables changed in the open unit of work.
CHANGES_KEY = "faceapi_changed_tables"
# Execution option: this statement changes state that needs no audit event.
UNAUDITED = "faceapi_unaudited"
# Execution option on a connection: a read-only transaction (SQLite: BEGIN DEFERRED).
READ_ONLY = "faceapi_read_only"
SQLITE_BUSY_TIMEOUT_S = 30


# gunicorn's preload_app builds the engine (and runs migrations) in the master before
# forking: a child must never reuse a pooled connection it inherited.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


def store_unavailable() -> StoreUnavailable:
    """The database is down or unreachable: the caller gets a 503 to retry, not a 500."""
    return StoreUnavailable("the database is not reachable; try again shortly", retry_after=5)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _track_changes(conn: Connection, clauseelement: Any, *args: Any) -> None:
    # after_execute's remaining arguments: multiparams, params, execution_options, result
    execution_options = args[2]
    changes = conn.info.get(CHANGES_KEY)
    if changes is None or execution_options.get(UNAUDITED):
        return
    if isinstance(clauseelement, UpdateBase):
        name = getattr(clauseelement.table, "name", None)
        if name not in AUDIT_TABLES:
            changes.add(name)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` with our SQLite settings; creates the SQLite file's folder."""
    parsed = make_url(url)
    # A database error's text (logged with its traceback) must not carry the bound
    # values: face descriptors, key hashes, subject ids.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, record: Any) -> None:
            # Stop pysqlite from issuing its own BEGIN: we emit the right one below.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock up front: two writers can never both read
            # the chain head and then collide on the upgrade to a write lock.
            read_only = conn.get_execution_options().get(READ_ONLY)
            conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")
    else:
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(url, **kwargs)
    event.listen(engine, "after_execute", _track_changes)
    _ENGINES.add(engine)
    return engine
