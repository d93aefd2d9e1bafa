"""`faceapi blobs check`: after a restore, does the blob directory hold every face crop
and review evidence file the database names? Exit 0 if so, 1 otherwise (so a restore
script stops there); docs/operations.md, "Backup and restore"."""

from __future__ import annotations

import json

import click

from faceapi.entrypoints.cli.common import cli_checked


@click.group()
def blobs() -> None:
    """The blob store (face crops, review evidence)."""


@blobs.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_cmd(as_json: bool) -> None:
    """Count the crops and evidence files the database names that the blob store lacks."""
    with cli_checked() as container:
        report = container.use_cases.check_blobs()
    if as_json:
        click.echo(json.dumps(report.as_json(), sort_keys=True))
    elif report.ok:
        click.echo(f"OK: {report.collections} collections, {report.faces} face crops, "
                   f"{report.evidence_files} evidence files of {report.reviews} reviews present")
    if not as_json and report.orphan_crops:
        click.echo(f"note: {report.orphan_crops} crop file(s) belong to no face (e.g. written "
                   "after the database backup was taken): delete them", err=True)
    else:
        click.echo(f"FAIL: {report.crops_missing} of {report.faces} face crops and "
                   f"{report.evidence_missing} of {report.evidence_files} review evidence "
                   "files are missing from the blob store (restored without the matching "
                   "blob archive?); e.g. " + ", ".join(report.examples[:5]), err=True)
    raise SystemExit(0 if report.ok else 1)
