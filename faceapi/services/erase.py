"""Use case: erase a subject (GDPR Art 17): faces, descriptors, consent records, and
what other subsystems hold about the subject (review evidence, lockout state, the crops
of its enrolled faces, and its faces in a remote engine's collection).

Other subsystems take part through `SubjectEraser`s registered by the composition
root: each deletes its rows inside the erasure's unit of work, so the erasure and its
audit event commit together or not at all, and hands back clean-ups (blob files) that
run once the transaction has committed. A failed clean-up is logged by name and
retried by the next erasure of the same subject; the rows that pointed at the blob are
already gone, so nothing can read it in the meantime.

`erase_lapsed_subject` is the same erasure for `faceapi retention run`, when the
subject's consent has lapsed (services/retention.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.collections import Collection, consent_lapsed
from faceapi.domain.errors import NotFound
from faceapi.services.collection_lookup import load_collection, resource
from faceapi.services.ports import SubjectEraser, UnitOfWork

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ErasureReport:
    collection_id: str
    subject_id: str
    face_count: int
    consent_count: int
    other: Mapping[str, int]
    audit_event_id: str


def _run_erasers(uow: UnitOfWork, collection_id: str, subject_id: str | None,
                 erasers: tuple[SubjectEraser, ...]
                 ) -> tuple[dict[str, int], list[Callable[[], None]]]:
    counts: dict[str, int] = {}
    cleanups: list[Callable[[], None]] = []
    for eraser in erasers:
        erased = eraser(uow, collection_id, subject_id)
        for kind, n in erased.counts.items():
            counts[kind] = counts.get(kind, 0) + n
        cleanups.extend(erased.after_commit)
    return counts, cleanups


def run_cleanups(cleanups: list[Callable[[], None]]) -> None:
    for cleanup in cleanups:
        try:
            cleanup()
        except OSError as exc:
            log.warning("erasure_cleanup_failed", error_type=type(exc).__name__)


def erase_collection_data(uow: UnitOfWork, collection_id: str,
                          erasers: tuple[SubjectEraser, ...]) -> list[Callable[[], None]]:
    """Run every eraser for all subjects of a collection (collection deletion)."""
    _, cleanups = _run_erasers(uow, collection_id, None, erasers)
    return cleanups


def erase_subject(collection_id: str, subject_id: str, *, actor: Actor, uow: UnitOfWork,
                  erasers: tuple[SubjectEraser, ...] = (),
                  on_erased: Callable[[str], None] | None = None) -> ErasureReport:
    """Erase everything about a subject, audited; NotFound when there was nothing.

    `on_erased(collection_id)` runs after commit (the app drops this worker's search
    index copy so the descriptors leave memory at once; other workers rebuild theirs on
    their next search of the collection, when they see the new version)."""

    with uow:
        collection = load_collection(uow, actor, collection_id)
        erased = _erase_in(uow, collection, subject_id, actor=actor, erasers=erasers)
        if erased is None:
            raise NotFound(f"subject {subject_id!r} not found in collection {collection_id!r}",
                           details={"collection_id": collection_id})
        report, cleanups = erased
        uow.commit()
    _after(report, cleanups, on_erased)
    return report


def erase_lapsed_subject(collection_id: str, subject_id: str, *, now: datetime,
                         actor: Actor, uow: UnitOfWork,
                         erasers: tuple[SubjectEraser, ...] = (),
                         on_erased: Callable[[str], None] | None = None
                         ) -> ErasureReport | None:
    """Erase a subject whose consent in force has lapsed at `now`, exactly as a manual
    erasure does (same erasers, same `subject.erase` event, with reason
    `consent_expired`). The consent is read again under the subject's row lock: a
    consent renewed since the subject was listed wins, and None is returned."""
    with uow:
        collection = uow.collections.get(collection_id)
        if collection is None or not uow.subjects.lock(collection_id, subject_id):
            return None  # erased (or its collection deleted) meanwhile
        if not consent_lapsed(uow.consents.current(collection_id, subject_id), now):
            return None
        erased = _erase_in(uow, collection, subject_id, actor=actor, erasers=erasers,
                           reason="consent_expired")
        if erased is None:
            return None
        report, cleanups = erased
        uow.commit()
    _after(report, cleanups, on_erased)
    return report


def _erase_in(uow: UnitOfWork, collection: Collection, subject_id: str, *, actor: Actor,
              erasers: tuple[SubjectEraser, ...], reason: str | None = None
              ) -> tuple[ErasureReport, list[Callable[[], None]]] | None:
    """The erasure inside the caller's open unit of work, with its audit event; None
    (nothing written) when nothing was known about the subject."""
    collection_id = collection.collection_id
    # Erasers first: some read the subject's face rows (their crops, the engine's
    # face ids) before the rows go.
    other, cleanups = _run_erasers(uow, collection_id, subject_id, erasers)
    face_ids = uow.faces.delete_for_subject(collection_id, subject_id)
    consent_count = uow.consents.delete_for_subject(collection_id, subject_id)
    existed = uow.subjects.delete(collection_id, subject_id)
    if not (existed or face_ids or consent_count or any(other.values())):
        return None
    if face_ids:
        uow.collections.bump_version(collection_id)
    scores: dict[str, float | int | bool | None] = {
        "face_count": len(face_ids), "consent_count": consent_count}
    scores.update({f"{kind}_count": n for kind, n in sorted(other.items())})
    event = uow.audit.append(AuditEvent(
        action=Action.SUBJECT_ERASE, outcome="erased", actor=actor,
        resource=resource(collection_id, subject_id), subject_id=subject_id,
        engine=collection.engine, model_version=collection.model_version,
        scores=scores, reason=reason))
    return ErasureReport(collection_id=collection_id, subject_id=subject_id,
                         face_count=len(face_ids), consent_count=consent_count,
                         other=other, audit_event_id=event.id), cleanups


def _after(report: ErasureReport, cleanups: list[Callable[[], None]],
           on_erased: Callable[[str], None] | None) -> None:
    run_cleanups(cleanups)
    if on_erased is not None:
        on_erased(report.collection_id)
