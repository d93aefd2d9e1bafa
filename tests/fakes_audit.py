"""In-memory fakes of the audit port for unit tests (no database).

`FakeAuditLog` runs the same value checks and hash chain as the real store, so a
service that records a bad value fails its unit test, not production.
`FakeUnitOfWork` offers only `audit`; add fake repositories as attributes as needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType

from faceapi.domain.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditQuery,
    Checkpoint,
    RecordedEvent,
    validate_event,
)
from faceapi.domain.audit_chain import compute_hash


@dataclass
class FakeAuditLog:
    committed: list[RecordedEvent] = field(default_factory=list)
    pending: list[RecordedEvent] = field(default_factory=list)

    def append(self, event: AuditEvent) -> RecordedEvent:
        validate_event(event)
        chain = self.committed + self.pending
        seq = len(chain) + 1
        prev = chain[-1].hash if chain else GENESIS_HASH
        now = datetime.now(UTC)
        event_id = str(uuid.uuid4())
        recorded = RecordedEvent(seq, event_id, now, event, prev,
                                 compute_hash(seq, event_id, now, event, prev))
        self.pending.append(recorded)
        return recorded

    def get(self, event_id: str) -> RecordedEvent | None:
        return next((r for r in self.committed if r.id == event_id), None)

    def query(self, query: AuditQuery, limit: int) -> list[RecordedEvent]:
        rows = [r for r in self.committed
                if not query.actions or r.event.action.value in query.actions]
        return (rows[::-1] if query.newest_first else rows)[:limit]

    def iter_events(self, query: AuditQuery | None = None) -> Iterator[RecordedEvent]:
        return iter(self.query(replace(query or AuditQuery(), newest_first=False), 10**9))

    def head(self) -> RecordedEvent | None:
        return self.committed[-1] if self.committed else None

    def checkpoints(self) -> Sequence[Checkpoint]:
        return []

    def checkpoint(self) -> Checkpoint | None:
        return None

    @property
    def actions(self) -> list[str]:
        return [r.event.action.value for r in self.committed]


@dataclass
class FakeUnitOfWork:
    audit: FakeAuditLog = field(default_factory=FakeAuditLog)
    commits: int = 0

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.rollback()

    def commit(self) -> None:
        self.audit.committed += self.audit.pending
        self.audit.pending = []
        self.commits += 1

    def rollback(self) -> None:
        self.audit.pending = []
