"""Use cases of the audit trail itself: record, list, get, verify, export, checkpoint.

How another service records its event (the pattern every use case follows):

    with uow:
        ...the change...
        event = uow.audit.append(AuditEvent(action=Action.FACE_INDEX, outcome="success",
                                            actor=actor, resource=f"collections/{cid}", ...))
        uow.commit()          # the change and its event, or neither

A use case that changes nothing but must still be recorded (detect, compare) calls
`record(event, uow=uow)`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from faceapi.domain import access
from faceapi.domain.audit import Action, Actor, AuditEvent, AuditQuery, Checkpoint, RecordedEvent
from faceapi.domain.audit_chain import Problem, VerifyReport, format_time, verify_chain
from faceapi.domain.audit_export import (
    CSV_COLUMNS,
    csv_checkpoint_row,
    csv_row,
    export_header,
    jsonl_lines,
)
from faceapi.domain.errors import NotFound
from faceapi.services.ports import AuditUnitOfWork

MAX_PAGE = 500
EXPORT_FORMATS = ("jsonl", "csv")
EXPORT_MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def export_filename(fmt: str, now: datetime) -> str:
    """The download name of an export (API and console)."""
    return f"faceapi-audit-{now.strftime('%Y%m%dT%H%M%SZ')}.{fmt}"


def record(event: AuditEvent, *, uow: AuditUnitOfWork) -> RecordedEvent:
    """Record one event in its own transaction (for use cases that change nothing)."""
    with uow:
        recorded = uow.audit.append(event)
        uow.commit()
    return recorded


def scoped(query: AuditQuery, reader: Actor) -> AuditQuery:
    """The query limited to what the reader's collection and policy scope covers."""
    return replace(query, scope_collections=access.collection_filter(reader),
                   scope_policies=access.policy_filter(reader))


def list_events(query: AuditQuery, limit: int, *, uow: AuditUnitOfWork,
                reader: Actor) -> tuple[list[RecordedEvent], int | None]:
    """One page of the events inside the reader's scope and the sequence number to
    continue after (None at the end)."""
    limit = max(1, min(limit, MAX_PAGE))
    with uow:
        # One extra row tells whether another page exists without a COUNT.
        rows = uow.audit.query(scoped(query, reader), limit + 1)
    page = rows[:limit]
    return page, (page[-1].seq if len(rows) > limit else None)


def get_event(event_id: str, *, uow: AuditUnitOfWork, reader: Actor) -> RecordedEvent:
    """One event by id; NotFound if there is none, and an OutOfScope that answers the
    same (and is audited) if it lies outside the reader's scope."""
    with uow:
        found = uow.audit.get(event_id)
    missing = NotFound(f"no audit event {event_id}", details={"event_id": event_id})
    if found is None:
        raise missing
    if not access.can_read_event(reader, found.event):
        raise access.out_of_scope_like(missing)
    return found


def list_checkpoints(*, uow: AuditUnitOfWork) -> list[Checkpoint]:
    """Every signed checkpoint, oldest first."""
    with uow:
        return list(uow.audit.checkpoints())


def verify_trail(*, read_uow: AuditUnitOfWork, uow: AuditUnitOfWork,
                 public_keys: Sequence[Ed25519PublicKey], actor: Actor,
                 extra_checkpoints: Sequence[Checkpoint] = ()) -> VerifyReport:
    """Walk the whole chain and its checkpoints; the check itself is recorded.

    `extra_checkpoints` are signed heads kept outside the database: they catch a tail
    removed together with the checkpoints that covered it."""
    with read_uow:
        report = verify_chain(read_uow.audit.iter_events(),
                              [*read_uow.audit.checkpoints(), *extra_checkpoints], public_keys)
    problem = report.problem
    if scoped(AuditQuery(), actor).is_scoped:
        report = withheld(report)
    record(AuditEvent(
        action=Action.AUDIT_VERIFY, outcome="ok" if report.ok else "failed", actor=actor,
        resource="audit",
        scores={"events_checked": report.events_checked, "head_seq": report.head_seq},
        details={} if problem is None else {"kind": problem.kind, "seq": problem.seq}),
        uow=uow)
    return report


def withheld(report: VerifyReport) -> VerifyReport:
    """The report a scoped reader gets: the whole chain was checked (a gap or an edit
    anywhere fails it), but of the first problem only its kind and sequence number are
    told, never the id or the message, which may describe an event outside its scope."""
    problem = report.problem
    if problem is None:
        return report
    return replace(report, problem=Problem(
        problem.kind, problem.seq, None,
        f"the chain fails verification at seq {problem.seq} ({problem.kind})"))


def create_checkpoint(*, uow: AuditUnitOfWork) -> Checkpoint | None:
    """Sign the chain head now (on demand)."""
    with uow:
        checkpoint = uow.audit.checkpoint()
        uow.commit()
    return checkpoint


def query_as_json(query: AuditQuery) -> dict[str, Any]:
    """The filters of an export, for its header and its audit event."""
    out: dict[str, Any] = {}
    for name in ("actor_key_id", "actor_role", "outcome", "policy_name", "resource",
                 "subject_id", "request_id"):
        value = getattr(query, name)
        if value is not None:
            out[name] = value
    if query.since is not None:
        out["since"] = format_time(query.since)
    if query.until is not None:
        out["until"] = format_time(query.until)
    if query.actions:
        out["actions"] = list(query.actions)
    # A scoped reader's export says so: it holds only the events its scope covers.
    for name in ("scope_collections", "scope_policies"):
        limit = getattr(query, name)
        if limit is not None:
            out[name] = sorted(limit)
    return out


def export_trail(query: AuditQuery, fmt: str, *, uow: AuditUnitOfWork, read_uow: AuditUnitOfWork,
                 actor: Actor, public_key: Ed25519PublicKey,
                 now: datetime, retired_keys: Sequence[Ed25519PublicKey] = ()) -> Iterator[str]:
    """Record the export, then stream the matching events (oldest first) and every
    checkpoint up to the head at that moment, in JSONL or CSV.

    The audit event is written before the first byte, so an export that is cut off
    half-way is still on record."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    query = scoped(query, actor)
    filters = query_as_json(query)
    # Details keep only short filter values; the event records what was exported.
    details: dict[str, Any] = {"format": fmt, "filtered": query.is_filtered,
                               **({"scoped": True} if query.is_scoped else {})}
    with uow:
        head = uow.audit.head()
        pinned = head.seq if head is not None else 0
        uow.audit.append(AuditEvent(
            action=Action.AUDIT_EXPORT, outcome="started", actor=actor, resource="audit",
            scores={"head_seq": pinned}, details=details,
            reason=",".join(sorted(filters))[:200] or None))
        uow.commit()
    pinned_query = replace(query, newest_first=False, after_seq=None, until_seq=pinned)
    header = export_header(public_key, filters, now, complete=not query.is_filtered,
                           retired_keys=retired_keys)
    header["head_seq"] = pinned
    return _stream(pinned_query, fmt, header, read_uow, pinned)


def _stream(query: AuditQuery, fmt: str, header: dict[str, Any], read_uow: AuditUnitOfWork,
            pinned: int) -> Iterator[str]:
    with read_uow:
        checkpoints = [cp for cp in read_uow.audit.checkpoints() if cp.seq <= pinned]
        events = read_uow.audit.iter_events(query)
        try:
            if fmt == "jsonl":
                yield from jsonl_lines(header, events, checkpoints)
                return
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="raise")
            writer.writeheader()
            for record_ in events:
                writer.writerow(csv_row(record_))
                yield _drain(buffer)
            for cp in checkpoints:
                writer.writerow(csv_checkpoint_row(cp))
            yield _drain(buffer)
        finally:
            # A client that hangs up mid-stream closes this generator; close the
            # database cursor with it.
            close = getattr(events, "close", None)
            if close is not None:
                close()


def _drain(buffer: io.StringIO) -> str:
    value = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return value
