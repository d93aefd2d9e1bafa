"""Small read helpers the overview needs from the review and lockout services."""

from __future__ import annotations

from faceapi.domain.access import Actor


def pending_review_count(who: Actor) -> int | None:
    """Pending review items the actor may see, or None when unavailable."""
    return None


def active_lock_count(who: Actor) -> int | None:
    """Subjects locked out right now in the actor's scope, or None when unavailable."""
    return None
