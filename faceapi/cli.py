"""The `faceapi` command. Subcommands live next to what they operate on and are
registered here; each builds its own Settings from the environment once."""

from __future__ import annotations

import click

from faceapi import __version__
from faceapi.audit_cli import audit
from faceapi.auth_cli import keys
from faceapi.collections_cli import collections
from faceapi.import_cli import import_cmd
from faceapi.policies_cli import policies
from faceapi.reviews_cli import reviews
from faceapi.store.cli import db


@click.group()
@click.version_option(__version__, prog_name="faceapi")
def cli() -> None:
    """faceapi: face verification under named policies, with review and audit."""


cli.add_command(db)
cli.add_command(audit)
cli.add_command(keys)
cli.add_command(policies)
cli.add_command(import_cmd)
cli.add_command(collections)
cli.add_command(reviews)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
