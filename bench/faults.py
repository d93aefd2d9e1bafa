"""What the fault tests measure, collected over several runs.

Run:  .venv/bin/python -m bench.faults [--runs 3]     (about 2 minutes a run on 2 CPUs)

Each run is `pytest -p no:xdist tests/faults` (gunicorn -w 2, a private PostgreSQL cluster
and Redis, the local engine; see docs/operations.md, "Faults and recovery"). Every
scenario writes its measured figures as one JSON line to FACEAPI_TEST_FAULTS_REPORT;
this script gathers them per scenario, prints the range over the runs and writes
bench/results/faults.json. A run whose tests fail is reported and stops the bench: the
figures of a failed fault test mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (`python bench/faults.py`)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import REPO, environment, table, write_json

COMMAND = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "tests/faults"]


def run_once(report: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(COMMAND, cwd=REPO, env={**os.environ,
                                                  "FACEAPI_TEST_FAULTS_REPORT": str(report)},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-5000:])
        raise SystemExit(f"tests/faults failed ({done.returncode}): no figures")
    return time.monotonic() - started


def numbers(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every numeric figure of one scenario (nested dicts flattened): min, median, max."""
    values: dict[str, list[float]] = defaultdict(list)

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[prefix].append(float(value))

    for record in records:
        walk("", {k: v for k, v in record.items() if k != "scenario"})
    return {name: {"min": min(v), "median": statistics.median(v), "max": max(v)}
            for name, v in sorted(values.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    durations = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            report = Path(tmp) / f"run-{run}.jsonl"
            durations.append(round(run_once(report), 1))
            for line in report.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                by_scenario[record["scenario"]].append(record)
    summary = {scenario: numbers(records) for scenario, records in by_scenario.items()}
    rows = [[scenario, name, s["min"], s["median"], s["max"]]
            for scenario, figures in summary.items() for name, s in figures.items()]
    print(table(["scenario", "figure", "min", "median", "max"], rows))
    print(f"tests/faults wall time per run (s): {durations}")
    path = write_json("faults.json", {
        "command": f".venv/bin/python -m bench.faults --runs {args.runs}",
        "runs": args.runs, "wall_time_per_run_s": durations,
        "environment": environment(), "summary": summary, "records": by_scenario})
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
