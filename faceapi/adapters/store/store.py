"""The Store: the one object the composition root builds for persistence (engine,
audit signing key, secret box, checkpoint policy); it hands out units of work.

SQLite (the default) gets WAL, foreign keys, a busy timeout and `BEGIN IMMEDIATE` for
every write transaction (store/db.py); PostgreSQL is used as is; audit appends take an
advisory lock (store/audit_repo.py).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from faceapi.adapters.secret_box import SecretBox, load_or_create_secret_box
from faceapi.adapters.signing_keys import CheckpointSigner, signer_from_settings
from faceapi.adapters.store.db import make_engine, store_unavailable, utc_now
from faceapi.adapters.store.migrate import (
    current_revision,
    head_revision,
    is_known_revision,
    upgrade_engine,
)
from faceapi.adapters.store.uow import SqlAlchemyUnitOfWork
from faceapi.config import Settings
from faceapi.domain.audit import Checkpoint
from faceapi.domain.audit_chain import VerifyReport, verify_chain

log = structlog.get_logger(__name__)

_TIMERS: weakref.WeakSet[CheckpointTimer] = weakref.WeakSet()


def _restart_timers() -> None:
    # Threads do not survive fork: each gunicorn worker runs its own timer.
    for timer in list(_TIMERS):
        timer.restart_after_fork()


# Registered after store/db.py's handler (imported above), so a child disposes its
# inherited connections before its timer starts.
os.register_at_fork(after_in_child=_restart_timers)


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
                   signer=signer_from_settings(settings),
                   checkpoint_every=max(1, settings.audit_checkpoint_every),
                   checkpoint_seconds=settings.audit_checkpoint_seconds,
                   now=now or utc_now, secret_box=load_or_create_secret_box(settings))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def uow(self) -> SqlAlchemyUnitOfWork:
        """A unit of work for a change (and its audit events)."""
        return SqlAlchemyUnitOfWork(self)

    def read_uow(self) -> SqlAlchemyUnitOfWork:
        """A unit of work that only reads: on SQLite it does not take the write lock."""
        return SqlAlchemyUnitOfWork(self, read_only=True)

    def upgrade(self, revision: str = "head") -> None:
        upgrade_engine(self.engine, revision)

    def require_current_schema(self) -> None:
        """Refuse to serve from a database that `faceapi db upgrade` has not migrated."""
        try:
            current = current_revision(self.engine)
        except OperationalError as exc:
            raise store_unavailable() from exc
        head = head_revision()
        if current is not None and current != head and not is_known_revision(current):
            # Not behind but ahead: `faceapi db upgrade` cannot help (docs/operations.md,
            # "Upgrades": rolling back code across a migration).
            raise RuntimeError(f"database schema is at {current}, which this code does not "
                               f"know (its newest is {head}): a newer release migrated it; "
                               "run that release, or restore the backup taken before the "
                               "upgrade")
        if current != head:
            raise RuntimeError(f"database schema is at {current or 'nothing'}, the code needs "
                               f"{head}: run `faceapi db upgrade`")

    def verify(self) -> VerifyReport:
        """Walk the live chain and its checkpoints with this deployment's trusted keys
        (the signing key's and the retired ones configured)."""
        with self.read_uow() as uow:
            return verify_chain(uow.audit.iter_events(), uow.audit.checkpoints(),
                                self.signer.trusted_public_keys)

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
