"""Sizing: the memory of gunicorn's master and workers with the models loaded, and the
CPU each kind of request costs, with 1 and 2 workers.

Run:  .venv/bin/python -m bench.rss                 (about 4 minutes on 2 CPUs)
      .venv/bin/python -m bench.rss --requests 5    (a quick try)

For each worker count it starts the same server as bench/load.py (gunicorn with
deploy/gunicorn.conf.py, FACEAPI_ENV=production, its own PostgreSQL database, Redis db
9, rate limits raised) and seeds the same collection. Then, one route at a time and one
client (so no request waits for another), it sends --requests detect, verify (login,
genuine probes) and search (photo_tagging) requests, and after each route reads, with no
request in flight:
- VmRSS, peak VmRSS (VmHWM) and PSS of the master and of each worker
  (/proc/<pid>/status, smaps_rollup).
  PSS divides each shared page among the processes sharing it, so the sum of PSS over
  the master and its workers is the physical memory of the whole server, the number a
  container's memory request is about; VmRSS counts the preloaded models in every
  process that maps them.
- the CPU seconds the workers used for the route's requests (/proc/<pid>/stat), so
  requests per worker-CPU-second, i.e. requests/s one fully used core serves; the
  PostgreSQL backends' CPU is given beside it.

Writes bench/results/rss.json and rss.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS, environment, percentile, write_json
from bench.load import Clients, Server, running_server, seed, summarize

ROUTES = ("detect", "verify_login", "search")


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


def snapshot(server: Server, label: str) -> dict[str, Any]:
    time.sleep(1.0)  # the last answer is out; let the worker finish its request's cleanup
    memory = server.memory()
    processes = [memory["master"], *memory["workers"]]
    return {"after": label, **memory,
            "pss_total_kb": sum(p["pss_kb"] for p in processes),
            "rss_total_kb": sum(p["rss_kb"] for p in processes)}


def measure(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    with running_server(workers=workers, pg=args.pg, redis_url=args.redis_url) as server:
        snapshots = [snapshot(server, "start (models preloaded, no request yet)")]
        work = seed(server, max_subjects=args.subjects, probes_per_subject=args.probes)
        snapshots.append(snapshot(server, f"seeding ({work.enrolled} enrolls, searches)"))
        runner = Clients(server, work, seed_value=7)
        routes = {}
        for route in ROUTES:
            cpu_before = server.cpu_seconds()
            samples, wall = runner.run(1, 3600, args.requests, mix={route: 1})
            cpu_after = server.cpu_seconds()
            cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_before}
            summary = summarize(samples, wall)
            answered = [s.seconds for s in samples if s.status]
            routes[route] = {
                "requests": len(samples), "statuses": summary["routes"][route]["statuses"],
                "wall_s": wall, "per_s_one_client": len(samples) / wall if wall else 0.0,
                "p50_ms": percentile(answered, 50) * 1000,
                "cpu_s": cpu,
                "worker_cpu_ms_per_request": cpu["workers"] / len(samples) * 1000,
                "requests_per_worker_cpu_s": len(samples) / cpu["workers"]
                if cpu["workers"] else 0.0,
                "postgres_cpu_ms_per_request": cpu["postgres"] / len(samples) * 1000,
            }
            snapshots.append(snapshot(server, f"{len(samples)} x {route}"))
            print(f"{workers} worker(s) {route}: {routes[route]['requests_per_worker_cpu_s']:.2f} "
                  f"req per worker-CPU-s; PSS total {_mb(snapshots[-1]['pss_total_kb'])} MB",
                  flush=True)
    return {"workers": workers, "seed": {"enrolled": work.enrolled,
                                         "genuine_probes": len(work.genuine)},
            "snapshots": snapshots, "routes": routes}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Sizing: memory and CPU per request ({result['environment']['time_utc']})", "",
             f"Command: `{result['command']}`", ""]
    for run in result["runs"]:
        lines += [f"### {run['workers']} worker(s)", "",
                  "| after | master VmRSS / PSS MB | each worker VmRSS / PSS (peak VmRSS) MB | "
                  "sum of PSS MB |", "|---|---|---|---|"]
        for snap in run["snapshots"]:
            workers = "; ".join(f"{_mb(w['rss_kb'])} / {_mb(w['pss_kb'])} "
                                f"({_mb(w['peak_rss_kb'])})" for w in snap["workers"])
            lines.append(f"| {snap['after']} | {_mb(snap['master']['rss_kb'])} / "
                         f"{_mb(snap['master']['pss_kb'])} | {workers} | "
                         f"{_mb(snap['pss_total_kb'])} |")
        lines += ["", "| route | requests | statuses | worker CPU ms / request | "
                  "requests per worker-CPU-s | PostgreSQL CPU ms / request | p50 ms (1 client) |",
                  "|---|---|---|---|---|---|---|"]
        for route, r in run["routes"].items():
            statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
            lines.append(f"| {route} | {r['requests']} | {statuses} | "
                         f"{r['worker_cpu_ms_per_request']:.0f} | "
                         f"{r['requests_per_worker_cpu_s']:.2f} | "
                         f"{r['postgres_cpu_ms_per_request']:.1f} | {r['p50_ms']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--requests", type=int, default=40, help="requests per route")
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--probes", type=int, default=3)
    parser.add_argument("--pg", default="127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--output", default="rss")
    args = parser.parse_args()
    runs = [measure(int(w), args) for w in args.workers.split(",")]
    result = {"environment": environment(),
              "command": ".venv/bin/python -m bench.rss " + " ".join(sys.argv[1:]),
              "config": {k: v for k, v in vars(args).items() if k != "output"},
              "runs": runs}
    write_json(args.output + ".json", result)
    text = markdown(result)
    (RESULTS / (args.output + ".md")).write_text(text, encoding="utf-8")
    print(text)
    bad = [r for run in runs for r in run["routes"].values()
           if any(k.startswith("5") or k == "0" for k in r["statuses"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
