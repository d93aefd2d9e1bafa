"""`faceapi webhooks deliver`: send the due review callbacks (docs/webhooks.md).

Run it from the sweeper (deploy/compose.yaml) or a CronJob (deploy/k8s/base): once per
call by default, or `--every SECONDS` to keep going. Several may run at once: a
delivery is claimed with a lease before it is sent, so no two send it together. It
sweeps the review queue first, so reviews past their deadline become final (expired)
and are called back without waiting for the next `faceapi reviews sweep`.
"""

from __future__ import annotations

import time

import click

from faceapi.entrypoints.cli.common import cli_checked
from faceapi.entrypoints.web.api.verify import render_decision

# Batches one call sends at most before it returns (a `--every` loop starts again).
MAX_BATCHES = 20


@click.group()
def webhooks() -> None:
    """Review callbacks."""


@webhooks.command("deliver")
@click.option("--every", type=click.FloatRange(min=0, max=3600), default=0.0,
              show_default=True, help="Repeat every this many seconds; 0: once.")
@click.option("--batch", type=click.IntRange(1, 500), default=50, show_default=True,
              help="Deliveries claimed per batch.")
def deliver_cmd(every: float, batch: int) -> None:
    """Sweep reviews, then send every due callback (retries included) once."""
    with cli_checked() as container:
        while True:
            container.use_cases.sweep_reviews()
            totals = [0, 0, 0, 0]
            for _ in range(MAX_BATCHES):
                report = container.use_cases.deliver_webhooks(render_decision, limit=batch)
                counts = (report.delivered, report.retrying, report.failed, report.cancelled)
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
                if sum(counts) < batch:
                    break
            click.echo(f"delivered {totals[0]}; retrying {totals[1]}; failed {totals[2]}; "
                       f"cancelled {totals[3]}")
            if not every:
                return
            time.sleep(every)
