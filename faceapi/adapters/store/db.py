"""Database engines: connection set-up, change tracking and fork safety. The Store
built on them is in store/store.py.

SQLite (the default) gets WAL, foreign keys, a busy timeout and `BEGIN IMMEDIATE` for
every write transaction, so concurrent writers queue on the database lock instead of
failing half-way. PostgreSQL is used as is; audit appends take an advisory lock
(store/audit_repo.py).

A PostgreSQL server that goes away (restart, failover, network) must cost callers a 503
they can retry, never a 500 or a hung worker, and must not need a faceapi restart when
it returns (docs/operations.md, "Faults and recovery"):
- `pool_pre_ping`: a pooled connection is tested when checked out, so the connections
  a restart killed are replaced by new ones instead of failing the next request;
- `connect_timeout`: a server that accepts but does not answer costs a bounded wait;
- `_store_unavailable_on_disconnect`: a connection lost in the middle of a transaction
  (the server shut down under it) or refused becomes `StoreUnavailable`. The transaction
  is rolled back by the server with the session, so nothing of it was written (a loss
  during COMMIT itself leaves the outcome unknown to us; the caller retries).
"""

from __future__ import annotations

import os
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, ExceptionContext, make_url
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
# Seconds libpq may take to open a connection (TCP, TLS, authentication) before giving up.
PG_CONNECT_TIMEOUT_S = 5
# PostgreSQL SQLSTATE classes that mean "the server is not serving now": connection
# exceptions, insufficient resources (too many connections), operator intervention
# (shutdown, "the database system is starting up"; not 57014, a cancelled statement).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


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


def _server_unavailable(context: ExceptionContext) -> bool:
    if context.is_disconnect:
        return True
    original = context.original_exception
    if not isinstance(original, context.dialect.loaded_dbapi.OperationalError):
        return False
    sqlstate = getattr(original, "sqlstate", None)
    # No SQLSTATE: the client library failed to reach the server (refused, timed out).
    return sqlstate is None or str(sqlstate).startswith(_UNAVAILABLE_SQLSTATES)


def _store_unavailable_on_disconnect(context: ExceptionContext) -> None:
    """SQLAlchemy's handle_error hook: raise StoreUnavailable in place of a lost or
    refused connection's error. SQLAlchemy still invalidates the connection (and the
    pool's other connections of the same server) after this hook."""
    if context.is_pre_ping:
        return  # the pool's own test of a connection: it handles the failure itself
    if _server_unavailable(context):
        log.warning("store_unavailable", error_type=type(context.original_exception).__name__,
                    disconnect=context.is_disconnect)
        raise store_unavailable() from context.sqlalchemy_exception


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
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args = dict(kwargs.pop("connect_args", {}))
            connect_args.setdefault("connect_timeout", PG_CONNECT_TIMEOUT_S)
            kwargs["connect_args"] = connect_args
        engine = create_engine(url, **kwargs)
        event.listen(engine, "handle_error", _store_unavailable_on_disconnect)
    event.listen(engine, "after_execute", _track_changes)
    _ENGINES.add(engine)
    return engine
