"""`faceapi reviews sweep`: expire overdue reviews and purge evidence past retention.

The API sweeps on every review and decision read; this command is for a quiet system,
so evidence never outlives its retention just because nobody looked (run it from cron).
"""

from __future__ import annotations

import click

from faceapi.adapters.blobs import DirectoryBlobStore
from faceapi.adapters.store import Store
from faceapi.config import Settings
from faceapi.domain.clock import SystemClock
from faceapi.services.review import sweep


@click.group()
def reviews() -> None:
    """Human-review housekeeping."""


@reviews.command("sweep")
def sweep_cmd() -> None:
    """Expire reviews past their deadline as rejected; delete evidence past retention."""
    settings = Settings.from_env()
    store = Store.from_settings(settings)
    try:
        expired, purged = sweep(uow=store.uow(), blobs=DirectoryBlobStore(
            settings.resolved_blob_dir), clock=SystemClock())
    finally:
        store.dispose()
    click.echo(f"expired {expired} review(s); purged evidence of {purged} review(s)")
