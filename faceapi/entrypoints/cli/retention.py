"""`faceapi retention run`: delete decision rows past their policy's
`decision_retention_days`, audited as `retention.run` (run it from cron or the CronJob)."""

from __future__ import annotations

import click

from faceapi.entrypoints.cli.common import cli_container


@click.group()
def retention() -> None:
    """Data lifecycle: delete what is past its retention."""


@retention.command("run")
def run_cmd() -> None:
    """Delete decision rows older than their policy's decision_retention_days."""
    with cli_container() as container:
        report = container.use_cases.run_retention()
        idempotency_deleted = container.use_cases.purge_idempotency_records()
    by_policy = ", ".join(f"{name}: {n}" for name, n in sorted(report.decisions_deleted.items()))
    click.echo(f"deleted {report.total_decisions_deleted} decision(s)"
               + (f" ({by_policy})" if by_policy else "")
               + f"; audit event {report.audit_event_id}")
    click.echo(f"deleted {idempotency_deleted} expired idempotency record(s)")
