"""`faceapi retention run`: erase the subjects whose consent has lapsed and delete
decision rows past their policy's `decision_retention_days`, audited (a `subject.erase`
event per erased subject, one `retention.run` summary); run it from cron or the CronJob."""

from __future__ import annotations

import sys

import click

from faceapi.entrypoints.cli.common import cli_container


@click.group()
def retention() -> None:
    """Data lifecycle: delete what is past its retention."""


@retention.command("run")
def run_cmd() -> None:
    """Erase subjects whose consent lapsed; delete decision rows past retention.
    Exit 1 when some erasure failed (they are tried again by the next run)."""
    with cli_container() as container:
        report = container.use_cases.run_retention()
        idempotency_deleted = container.use_cases.purge_idempotency_records()
    by_policy = ", ".join(f"{name}: {n}" for name, n in sorted(report.decisions_deleted.items()))
    click.echo(f"erased {len(report.subjects_erased)} subject(s) whose consent lapsed"
               + (f", {report.erasures_failed} failed" if report.erasures_failed else "")
               + f"; deleted {report.total_decisions_deleted} decision(s)"
               + (f" ({by_policy})" if by_policy else "")
               + f"; audit event {report.audit_event_id}")
    click.echo(f"deleted {idempotency_deleted} expired idempotency record(s)")
    if report.erasures_failed:
        sys.exit(1)
