"""Finding the collection a use case works on, after the object-level access check,
and naming it in audit events. Shared by the collection, erasure, enrollment, verify,
search and lockout use cases (so that erasure need not import the collection service,
which imports erasure)."""

from __future__ import annotations

from faceapi.domain.access import collection_not_found_message, require_collection_access
from faceapi.domain.audit import Actor
from faceapi.domain.collections import Collection
from faceapi.domain.errors import NotFound
from faceapi.services.ports import UnitOfWork


def resource(collection_id: str, subject_id: str | None = None) -> str:
    """The audit `resource` of a collection or one of its subjects."""
    base = f"collections/{collection_id}"
    return base if subject_id is None else f"{base}/subjects/{subject_id}"


def load_collection(uow: UnitOfWork, actor: Actor, collection_id: str) -> Collection:
    """The collection, after the object-level access check; NotFound either way."""
    require_collection_access(actor, collection_id)
    collection = uow.collections.get(collection_id)
    if collection is None:
        raise NotFound(collection_not_found_message(collection_id),
                       details={"collection_id": collection_id})
    return collection
