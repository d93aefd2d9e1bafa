"""Use case support for bulk enrollment (`faceapi import`): what the importer must read
before indexing an image, and the run's summary event. Indexing itself is
services/enroll.index_faces, the same use case the API calls."""

from __future__ import annotations

from datetime import datetime

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.services.collection_lookup import resource
from faceapi.services.ports import UnitOfWork


def faces_of_image(collection_id: str, sha256: str, *, uow: UnitOfWork) -> tuple[str, ...]:
    """Face ids already indexed from this exact image (by its SHA-256), so a resumed run
    skips it."""
    with uow:
        return tuple(f.face_id for f in uow.faces.find_by_image(collection_id, sha256))


def consent_status(collection_id: str, subject_id: str, *, uow: UnitOfWork,
                   now: datetime) -> str:
    """`in_force`, `lapsed` or `none`: the consent on record for the subject. A batch
    records its own consent for subjects with none; it never renews a lapsed one (a
    re-run of an old import must not revive consents that ended: renewing is a
    deliberate act per subject, POST .../consent or IndexFaces with a consent)."""
    with uow:
        current = uow.consents.current(collection_id, subject_id)
    if current is None:
        return "none"
    return "lapsed" if current.lapsed(now) else "in_force"


def record_import_run(collection_id: str, counts: dict[str, int], *, actor: Actor,
                      uow: UnitOfWork) -> None:
    """One event summarising the run (each image's indexing has its own event)."""
    with uow:
        uow.audit.append(AuditEvent(
            action=Action.IMPORT_RUN, outcome="completed", actor=actor,
            resource=resource(collection_id),
            scores={f"{status}_count": n for status, n in sorted(counts.items())}))
        uow.commit()
