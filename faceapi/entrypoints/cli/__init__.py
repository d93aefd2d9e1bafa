"""The `faceapi` command: the click group. Each command group is a module of this
package (audit, blobs, calibrate, collections, db, engine, imports, keys, policies, retention,
reviews, webhooks),
registered here; each command takes its adapters from the composition root (common.py,
bootstrap.py)."""

from __future__ import annotations

import click

from faceapi import __version__
from faceapi.entrypoints.cli.audit import audit
from faceapi.entrypoints.cli.blobs import blobs
from faceapi.entrypoints.cli.calibrate import calibrate
from faceapi.entrypoints.cli.collections import collections
from faceapi.entrypoints.cli.db import db
from faceapi.entrypoints.cli.engine import engine
from faceapi.entrypoints.cli.imports import import_cmd
from faceapi.entrypoints.cli.keys import keys
from faceapi.entrypoints.cli.policies import policies
from faceapi.entrypoints.cli.retention import retention
from faceapi.entrypoints.cli.reviews import reviews
from faceapi.entrypoints.cli.webhooks import webhooks


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
cli.add_command(retention)
cli.add_command(blobs)
cli.add_command(calibrate)
cli.add_command(engine)
cli.add_command(webhooks)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
