"""Ports the services type against: the unit of work and its repositories.

Free of SQLAlchemy and Flask on purpose: services and their unit tests import only
this. The SQLAlchemy adapters live in faceapi/adapters/store/; fakes in tests/fakes.py.

To add a repository: declare its Protocol here, add a read-only property with the same
name to `UnitOfWork` below, and implement it in faceapi/adapters/store/ (see store/uow.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Protocol

from faceapi.domain.access import ApiKeyRepository
from faceapi.domain.audit import AuditEvent, AuditQuery, Checkpoint, RecordedEvent
from faceapi.domain.collections import CollectionsRepo, ConsentsRepo, FacesRepo, SubjectsRepo
from faceapi.domain.decisions import DecisionsRepo, ReviewsRepo
from faceapi.domain.lockout import LockoutsRepo


class AuditLog(Protocol):
    """The audit trail inside one unit of work. Appends join the open transaction."""

    def append(self, event: AuditEvent) -> RecordedEvent:
        """Check, chain and write one event; it commits or rolls back with the change."""
        ...

    def get(self, event_id: str) -> RecordedEvent | None:
        """One event by its uuid, or None."""
        ...

    def query(self, query: AuditQuery, limit: int) -> list[RecordedEvent]:
        """Up to `limit` events matching the filters, in the query's order."""
        ...

    def iter_events(self, query: AuditQuery | None = None) -> Iterator[RecordedEvent]:
        """Every matching event, oldest first, streamed (verification, export)."""
        ...

    def head(self) -> RecordedEvent | None:
        """The newest event, or None for an empty trail."""
        ...

    def checkpoints(self) -> Sequence[Checkpoint]:
        """Every signed checkpoint, oldest first."""
        ...

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (on demand); None if the trail is empty or the
        head is already signed."""
        ...


class AuditUnitOfWork(Protocol):
    """The part of a unit of work that use cases which only record need (detect,
    compare, the audit trail's own use cases); any UnitOfWork is one."""

    @property
    def audit(self) -> AuditLog:
        """The audit trail, written in this transaction."""
        ...

    def __enter__(self) -> AuditUnitOfWork:
        ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        ...

    def commit(self) -> None:
        """Commit the audit events."""
        ...

    def rollback(self) -> None:
        """Discard everything done in this block."""
        ...


class UnitOfWork(AuditUnitOfWork, Protocol):
    """One transaction: `with uow:` opens it, `uow.commit()` makes the change and its
    audit events durable together, leaving the block without commit rolls everything
    back, audit events included. `audit`, `__exit__`, `commit` and `rollback` are
    AuditUnitOfWork's."""

    @property
    def api_keys(self) -> ApiKeyRepository:
        """API keys (hashed), looked up by their public prefix."""
        ...

    @property
    def collections(self) -> CollectionsRepo:
        """Face collections (faceapi/domain/collections.py)."""
        ...

    @property
    def subjects(self) -> SubjectsRepo:
        """The subjects of collections."""
        ...

    @property
    def faces(self) -> FacesRepo:
        """Indexed faces with their descriptors."""
        ...

    @property
    def consents(self) -> ConsentsRepo:
        """Consent records of subjects."""
        ...

    @property
    def decisions(self) -> DecisionsRepo:
        """Decisions made under policies (faceapi/domain/decisions.py)."""
        ...

    @property
    def reviews(self) -> ReviewsRepo:
        """Human reviews of decisions, with their votes."""
        ...

    @property
    def lockouts(self) -> LockoutsRepo:
        """Failed-verify throttling state (faceapi/domain/lockout.py)."""
        ...

    def __enter__(self) -> UnitOfWork:
        ...


# What the composition root hands to services: a fresh unit of work per use case call.
UnitOfWorkFactory = Callable[[], UnitOfWork]
