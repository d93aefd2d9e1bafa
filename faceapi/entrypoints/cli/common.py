"""What every `faceapi` command shares: the container from the composition root (its
`use_cases` are what commands call), and the opener that turns an unmigrated schema or a
FaceApiError into `Error: ...`, exit 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from faceapi.bootstrap import Container, bootstrap
from faceapi.domain.audit import Actor

CLI_ACTOR = Actor.system("cli")


@contextmanager
def cli_container() -> Iterator[Container]:
    """The adapters for one command (built from FACEAPI_* once, on first use); the
    database connections are released when the command ends."""
    container = bootstrap()
    # A command that loads the policies (retention, collections create ...) records
    # the versions it loads, as the web app does at start.
    container.record_policy_loads = True
    try:
        yield container
    finally:
        container.close()


@contextmanager
def cli_checked() -> Iterator[Container]:
    """The container for a command that needs a migrated store; an unmigrated schema or
    a FaceApiError (the database is unreachable, a key is not found ...) ends the command
    with `Error: ...`, exit 1."""
    from faceapi.config import ConfigError
    from faceapi.domain.errors import FaceApiError

    with cli_container() as container:
        try:
            try:
                container.store.require_current_schema()
            except RuntimeError as exc:  # not migrated: `faceapi db upgrade` first
                raise click.ClickException(str(exc)) from exc
            except ConfigError as exc:  # a key file setting that does not hold
                raise click.ClickException(str(exc)) from exc
            yield container
        except FaceApiError as exc:
            raise click.ClickException(exc.message) from exc
