"""Engines and the Store: the one object the composition root builds for persistence.

SQLite (the default) gets WAL, foreign keys, a busy timeout and `BEGIN IMMEDIATE` for
every write transaction, so concurrent writers queue on the database lock instead of
failing half-way. PostgreSQL is used as is; audit appends take an advisory lock
(store/audit_repo.py).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.dml import UpdateBase

from faceapi.adapters.secret_box import SecretBox, load_or_create_secret_box
from faceapi.adapters.signing_keys import CheckpointSigner, load_or_create_signing_key
from faceapi.adapters.store.tables import AUDIT_TABLES
from faceapi.config import Settings
from faceapi.domain.audit import Checkpoint
from faceapi.domain.audit_chain import VerifyReport, verify_chain
from faceapi.domain.errors import StoreUnavailable

if TYPE_CHECKING:
    # uow.py imports this module; the run-time imports below are inside methods.
    from faceapi.adapters.store.uow import SqlAlchemyUnitOfWork

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


_TIMERS: weakref.WeakSet[CheckpointTimer] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)
    # Threads do not survive fork: each gunicorn worker runs its own timer.
    for timer in list(_TIMERS):
        timer.restart_after_fork()


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


class Store:
    """Engine + audit signing key + checkpoint policy; hands out units of work."""

    def __init__(self, engine: Engine, *, signer: CheckpointSigner, checkpoint_every: int = 100,
                 checkpoint_seconds: int = 300, now: Callable[[], datetime] = utc_now,
                 secret_box: SecretBox | None = None) -> None:
        self.engine = engine
        self.signer = signer
        # Seals the secrets rows keep for the server to read back (SigV4 secrets);
        # without one, no such secret can be stored or read.
        self.secret_box = secret_box
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.now = now

    @classmethod
    def from_settings(cls, settings: Settings, *, now: Callable[[], datetime] | None = None,
                      engine: Engine | None = None) -> Store:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(engine or make_engine(settings.resolved_database_url),
                   signer=CheckpointSigner(load_or_create_signing_key(settings)),
                   checkpoint_every=max(1, settings.audit_checkpoint_every),
                   checkpoint_seconds=settings.audit_checkpoint_seconds,
                   now=now or utc_now, secret_box=load_or_create_secret_box(settings))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def uow(self) -> SqlAlchemyUnitOfWork:
        """A unit of work for a change (and its audit events)."""
        from faceapi.adapters.store.uow import SqlAlchemyUnitOfWork
        return SqlAlchemyUnitOfWork(self)

    def read_uow(self) -> SqlAlchemyUnitOfWork:
        """A unit of work that only reads: on SQLite it does not take the write lock."""
        from faceapi.adapters.store.uow import SqlAlchemyUnitOfWork
        return SqlAlchemyUnitOfWork(self, read_only=True)

    def upgrade(self, revision: str = "head") -> None:
        from faceapi.adapters.store.migrate import upgrade_engine
        upgrade_engine(self.engine, revision)

    def require_current_schema(self) -> None:
        """Refuse to serve from a database that `faceapi db upgrade` has not migrated."""
        from faceapi.adapters.store.migrate import current_revision, head_revision
        try:
            current = current_revision(self.engine)
        except OperationalError as exc:
            raise store_unavailable() from exc
        head = head_revision()
        if current != head:
            raise RuntimeError(f"database schema is at {current or 'nothing'}, the code needs "
                               f"{head}: run `faceapi db upgrade`")

    def verify(self) -> VerifyReport:
        """Walk the live chain and its checkpoints with this store's public key."""
        with self.read_uow() as uow:
            return verify_chain(uow.audit.iter_events(), uow.audit.checkpoints(),
                                [self.signer.public_key])

    def dispose(self) -> None:
        self.engine.dispose()

    def checkpoint_if_due(self) -> Checkpoint | None:
        """Sign the head if the time rule says so (see CheckpointTimer)."""
        with self.read_uow() as uow:
            if not uow.audit.checkpoint_due():
                return None
        with self.uow() as uow:
            # Re-checked under the writer lock: another worker may have signed it.
            checkpoint = uow.audit.checkpoint() if uow.audit.checkpoint_due() else None
            uow.commit()
        return checkpoint

    def start_checkpoint_timer(self, interval: float | None = None) -> CheckpointTimer:
        """Sign unsigned events within `checkpoint_seconds` even when no more arrive."""
        timer = CheckpointTimer(self, interval or max(1.0, self.checkpoint_seconds / 2))
        timer.start()
        return timer


class CheckpointTimer:
    """A daemon thread that applies the checkpoint time rule on a quiet system.

    Appends apply the rule themselves; this covers the events written just before a
    long pause. Every worker may run one: the writer lock makes the extra ones no-ops."""

    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-checkpoints", daemon=True)
        self._thread.start()
        _TIMERS.add(self)

    def restart_after_fork(self) -> None:
        if self._thread is not None and not self._stop.is_set():
            self.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        _TIMERS.discard(self)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                checkpoint = self.store.checkpoint_if_due()
            except Exception:  # a failed tick must not kill the timer; the next one retries
                log.warning("audit_checkpoint_failed", exc_info=True)
                continue
            if checkpoint is not None:
                log.info("audit_checkpoint", seq=checkpoint.seq, key_id=checkpoint.key_id)
