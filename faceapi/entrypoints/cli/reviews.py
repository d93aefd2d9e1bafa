"""`faceapi reviews sweep`: expire overdue reviews and purge evidence past retention.

The API sweeps on every review and decision read; this command is for a quiet system,
so evidence never outlives its retention just because nobody looked (run it from cron).
"""

from __future__ import annotations

import click

from faceapi.entrypoints.cli.common import cli_container


@click.group()
def reviews() -> None:
    """Human-review housekeeping."""


@reviews.command("sweep")
def sweep_cmd() -> None:
    """Expire reviews past their deadline as rejected; delete evidence past retention."""
    with cli_container() as container:
        expired, purged = container.use_cases.sweep_reviews()
    click.echo(f"expired {expired} review(s); purged evidence of {purged} review(s)")
