"""The SQLAlchemy unit of work (cosmicpython style): one connection, one transaction.

    with store.uow() as uow:                      # BEGIN (SQLite: BEGIN IMMEDIATE)
        uow.collections.add(collection)           # the change ...
        uow.audit.append(AuditEvent(...))         # ... and its event, same transaction
        uow.commit()                              # both, or (no commit / exception) neither

Rules the class enforces:
- leaving the block without `commit()` rolls back, audit events included;
- `commit()` refuses (UnauditedChange, then rolls back) when a Core INSERT/UPDATE/DELETE
  touched a table other than the audit tables and no audit event was appended: no
  change commits without its event. A write that needs no event of its own (e.g. an
  API key's last-used time) opts out per statement with
  `conn.execute(stmt.execution_options(faceapi_unaudited=True))`. Raw `text()` SQL is
  not tracked: repositories use Core constructs.
- the audit log remembers the chain head for the rest of the transaction, so never
  append inside a savepoint (`begin_nested`) that may roll back on its own.
- a commit that carries audit events, made while an Idempotency-Key request is served,
  marks that request's claim `committed` in the same transaction (or refuses to commit
  when the claim was taken over): store/idempotency_repo.py.

Adding a repository (collections, faces, subjects, reviews, lockouts, api_keys ...):
1. in faceapi/services/ports.py, declare `class CollectionRepository(Protocol)` and add
   `@property def collections(self) -> CollectionRepository` to `UnitOfWork`;
2. in faceapi/adapters/store/<name>_repo.py, write `class SqlCollectionRepository` whose
   `__init__(self, conn: Connection)` keeps the connection and whose methods run Core
   statements on it (never commit: the unit of work does);
3. here, add a property to SqlAlchemyUnitOfWork:
       @property
       def collections(self) -> SqlCollectionRepository:
           return self._repo(SqlCollectionRepository)
   `_repo` builds it once per `with` block on the block's connection.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from faceapi.adapters.secret_box import SecretBox
from faceapi.adapters.signing_keys import CheckpointSigner
from faceapi.adapters.store.audit_repo import SqlAuditLog
from faceapi.adapters.store.chips_repo import SqlFaceChipsRepo
from faceapi.adapters.store.collections_repo import (
    SqlCollectionsRepo,
    SqlConsentsRepo,
    SqlFacesRepo,
    SqlSubjectsRepo,
)
from faceapi.adapters.store.db import CHANGES_KEY, READ_ONLY, store_unavailable
from faceapi.adapters.store.decisions_repo import SqlDecisionsRepo, SqlLockoutsRepo, SqlReviewsRepo
from faceapi.adapters.store.idempotency_repo import SqlIdempotencyRepo, mark_active_claim
from faceapi.adapters.store.keys_repo import SqlApiKeyRepository
from faceapi.adapters.store.policy_versions_repo import SqlPolicyVersionsRepo
from faceapi.adapters.store.webhooks_repo import SqlWebhooksRepo
from faceapi.domain.errors import FaceApiError

R = TypeVar("R")


class UnauditedChange(FaceApiError):
    """A unit of work changed data but recorded no audit event (a bug in a service)."""

    code = "unaudited_change"


class StoreParts(Protocol):
    """What a unit of work takes from the Store (store/store.py), which builds it."""

    engine: Engine
    signer: CheckpointSigner
    now: Callable[[], datetime]
    checkpoint_every: int
    checkpoint_seconds: int
    secret_box: SecretBox | None


class SqlAlchemyUnitOfWork:
    """UnitOfWork adapter. Build one per use case call with `store.uow()`.

    The transaction begins with the block's first statement (SQLAlchemy autobegin), so
    work done in the block before touching the database holds no lock."""

    def __init__(self, store: StoreParts, *, read_only: bool = False) -> None:
        self._store = store
        self._read_only = read_only
        self._conn: Connection | None = None
        self._audit: SqlAuditLog | None = None
        self._repos: dict[type[Any], Any] = {}

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        if self._conn is not None:
            raise RuntimeError("unit of work already open")
        try:
            conn = self._store.engine.connect()
        except OperationalError as exc:
            raise store_unavailable() from exc  # nothing was written
        if self._read_only:
            conn = conn.execution_options(**{READ_ONLY: True})
        conn.info[CHANGES_KEY] = set()
        self._conn = conn
        self._audit = SqlAuditLog(conn, signer=self._store.signer, now=self._store.now,
                                  checkpoint_every=self._store.checkpoint_every,
                                  checkpoint_seconds=self._store.checkpoint_seconds,
                                  read_only=self._read_only)
        self._repos = {}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        conn = self._conn
        self._conn = self._audit = None
        self._repos = {}
        if conn is None:
            return
        try:
            # A connection the server dropped (a restart under an open transaction) is
            # invalidated: rollback() is what releases it, and anything else on it would
            # try to reconnect first and replace the caller's StoreUnavailable with an
            # error of its own.
            if conn.in_transaction() or conn.invalidated:
                conn.rollback()
        finally:
            if not conn.invalidated:
                conn.info.pop(CHANGES_KEY, None)
            conn.close()

    @property
    def conn(self) -> Connection:
        """The block's connection, for repositories."""
        if self._conn is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._conn

    @property
    def audit(self) -> SqlAuditLog:
        if self._audit is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._audit

    @property
    def api_keys(self) -> SqlApiKeyRepository:
        repo = self._repos.get(SqlApiKeyRepository)
        if repo is None:
            # The one repository that also needs the store's secret box (SigV4 secrets).
            repo = self._repos[SqlApiKeyRepository] = SqlApiKeyRepository(
                self.conn, self._store.secret_box)
        return repo  # type: ignore[no-any-return]

    @property
    def chips(self) -> SqlFaceChipsRepo:
        repo = self._repos.get(SqlFaceChipsRepo)
        if repo is None:
            # Chips are sealed with the store's secret box, like SigV4 secrets.
            repo = self._repos[SqlFaceChipsRepo] = SqlFaceChipsRepo(
                self.conn, self._store.secret_box)
        return repo  # type: ignore[no-any-return]

    @property
    def collections(self) -> SqlCollectionsRepo:
        return self._repo(SqlCollectionsRepo)

    @property
    def subjects(self) -> SqlSubjectsRepo:
        return self._repo(SqlSubjectsRepo)

    @property
    def faces(self) -> SqlFacesRepo:
        return self._repo(SqlFacesRepo)

    @property
    def consents(self) -> SqlConsentsRepo:
        return self._repo(SqlConsentsRepo)

    @property
    def decisions(self) -> SqlDecisionsRepo:
        return self._repo(SqlDecisionsRepo)

    @property
    def reviews(self) -> SqlReviewsRepo:
        return self._repo(SqlReviewsRepo)

    @property
    def lockouts(self) -> SqlLockoutsRepo:
        return self._repo(SqlLockoutsRepo)

    @property
    def policy_versions(self) -> SqlPolicyVersionsRepo:
        return self._repo(SqlPolicyVersionsRepo)

    @property
    def idempotency(self) -> SqlIdempotencyRepo:
        return self._repo(SqlIdempotencyRepo)

    @property
    def webhooks(self) -> SqlWebhooksRepo:
        repo = self._repos.get(SqlWebhooksRepo)
        if repo is None:
            # Webhook signing secrets are sealed with the store's secret box too.
            repo = self._repos[SqlWebhooksRepo] = SqlWebhooksRepo(
                self.conn, self._store.secret_box)
        return repo  # type: ignore[no-any-return]

    def _repo(self, factory: type[R]) -> R:
        repo = self._repos.get(factory)
        if repo is None:
            repo = self._repos[factory] = factory(self.conn)  # type: ignore[call-arg]
        return repo  # type: ignore[no-any-return]

    @property
    def changed_tables(self) -> frozenset[str]:
        return frozenset(self.conn.info.get(CHANGES_KEY, ()))

    def _transaction_ended(self) -> None:
        self.conn.info[CHANGES_KEY] = set()
        self.audit.transaction_ended()

    def commit(self) -> None:
        changed = self.changed_tables
        if changed and self.audit.appended == 0:
            self.rollback()
            tables = ", ".join(sorted(changed))
            raise UnauditedChange(f"refusing to commit changes to {tables} without an audit event")
        # An Idempotency-Key request's write commits with its claim turned `committed`
        # (store/idempotency_repo.py says why here and not in the services).
        claim = None
        if self.audit.appended:
            try:
                claim = mark_active_claim(self.conn)
            except BaseException:
                self.rollback()
                raise
        self.conn.commit()
        if claim is not None:
            claim.committed = True
        self._transaction_ended()

    def rollback(self) -> None:
        self.conn.rollback()
        self._transaction_ended()
