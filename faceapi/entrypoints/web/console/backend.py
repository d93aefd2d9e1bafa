"""The adapters the composition root built, as the console's views need them, and the
small read helpers the overview needs from the review and lockout services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from faceapi.adapters.store.store import Store
from faceapi.domain.access import Actor
from faceapi.entrypoints.web.api.collections import search_index, subject_erasers
from faceapi.entrypoints.web.api.deps import deps
from faceapi.services.ports import BlobStore, SubjectEraser


def store() -> Store:
    return cast(Store, getattr(deps(), "store"))  # noqa: B009


def blobs() -> BlobStore:
    return deps().blobs


def erasers() -> tuple[SubjectEraser, ...]:
    """The erasers create_app registered (review evidence, lockout state): the same an
    erasure through the API runs."""
    return subject_erasers(deps())


def on_erased() -> Callable[[str], None]:
    """Drops this worker's search index copy at once (others see the version bump)."""
    return search_index(deps()).invalidate


def service_deps() -> dict[str, Any]:
    """The keyword dependencies the review service functions take."""
    d = deps()
    return {"uow": store().uow(), "blobs": blobs(), "clock": d.clock}


def pending_review_count(who: Actor) -> int | None:
    """Pending review items the actor may see, or None when unavailable."""
    from faceapi.services import review

    if who.role not in ("reviewer", "auditor", "admin", "operator"):
        return None
    return review.count_waiting_reviews(actor=who, uow=store().uow(), clock=deps().clock)
