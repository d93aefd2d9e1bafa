"""`faceapi db ...`: database migrations."""

from __future__ import annotations

import click

from faceapi.adapters.store.db import make_engine
from faceapi.adapters.store.migrate import current_revision, head_revision, upgrade
from faceapi.config import Settings


@click.group()
def db() -> None:
    """Database schema: migrate and inspect."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision id.")
def upgrade_cmd(revision: str) -> None:
    """Create or migrate the database to the newest schema (safe to run again)."""
    settings = Settings.from_env()
    upgrade(settings, revision)
    click.echo(f"database at {revision}: {_safe_url(settings)}")


@db.command("current")
def current_cmd() -> None:
    """Print the database's revision and the newest one; exit 1 if behind."""
    settings = Settings.from_env()
    engine = make_engine(settings.resolved_database_url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    click.echo(f"current: {current or '(empty)'}  head: {head}")
    if current != head:
        raise SystemExit(1)


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)
