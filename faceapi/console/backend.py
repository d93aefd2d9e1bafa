"""The adapters the composition root built, as the console's views need them, and the
small read helpers the overview needs from the review and lockout services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from faceapi.api.deps import deps
from faceapi.blobs import BlobStore
from faceapi.domain.access import Actor
from faceapi.services.erase import SubjectEraser
from faceapi.services.review import ReviewEvidenceEraser
from faceapi.store.db import Store


def store() -> Store:
    return cast(Store, getattr(deps(), "store"))  # noqa: B009


def blobs() -> BlobStore:
    return deps().blobs


def erasers() -> tuple[SubjectEraser, ...]:
    """What an erasure must also delete: review evidence and lockout state."""
    configured = getattr(deps(), "erasers", None)
    if configured is not None:
        return tuple(configured)
    return (ReviewEvidenceEraser(deps().blobs, deps().clock),)


def on_erased() -> Callable[[str], None] | None:
    """Drops this worker's search index copy at once (others see the version bump)."""
    hook = getattr(deps(), "on_erased", None)
    return hook if callable(hook) else None


def service_deps() -> dict[str, Any]:
    """The keyword dependencies the review service functions take."""
    d = deps()
    return {"uow": store().uow(), "blobs": blobs(), "clock": d.clock}


def pending_review_count(who: Actor) -> int | None:
    """Pending review items the actor may see (up to 1000), or None when unavailable."""
    from faceapi.services import review

    if who.role not in ("reviewer", "auditor", "admin", "operator"):
        return None
    items = review.list_reviews(review.ReviewQuery(limit=1000), actor=who, **service_deps())
    return len(items)


def active_lock_count(who: Actor) -> int | None:
    """Subjects locked out right now in the actor's scope, or None when unavailable."""
    return None
