"""Peak memory of one POST /v1/faces/compare against one POST /v1/faces/detect.

Run:  .venv/bin/python -m bench.compare_memory          (about a minute on 2 CPUs)

A compare detects its two images at once (the local engine's helper thread,
docs/engines.md), so both detection pyramids are alive together. This bench starts
gunicorn as bench/latency.py does (one sync worker, the local engine with its defaults),
warms the worker up with one compare at the largest size, then for each size and pair
resets the worker's peak resident set (writing 5 to /proc/<pid>/clear_refs) and reads
VmHWM after one request: the peak over the resident set just before it is what that
request cost. Same-identity pairs from the shared set (bench/latency.py's choice),
resized to the longest side given. Prints a table; writes
bench/results/compare_memory.json (or --output).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import environment, faces_dir, table, write_json
from bench.decode_budget import _status_kb, reset_peak, worker_pid
from bench.latency import Server, compare_pairs, multipart, multipart_pair, post, resized_jpeg

SIZES = (1024, 1600)


def _peak_of(server: Server, path: str, body: bytes, ctype: str) -> dict[str, Any]:
    assert server.process is not None
    pid = worker_pid(server.process.pid)
    before_kb = _status_kb(pid, "VmRSS")
    reset_peak(pid)
    status, seconds = post(server.port, path, body, ctype, server.key)
    peak_kb = _status_kb(pid, "VmHWM")
    return {"status": status, "seconds": round(seconds, 3),
            "rss_before_mb": round(before_kb / 1024, 1), "peak_mb": round(peak_kb / 1024, 1),
            "increase_mb": round((peak_kb - before_kb) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--output", default="compare_memory.json",
                        help="file name under bench/results")
    args = parser.parse_args()
    root = faces_dir()
    pairs = compare_pairs(root, args.pairs)
    images = {(f, side): resized_jpeg(root / f, side)
              for pair in pairs for f in pair for side in SIZES}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="faceapi-compare-memory-") as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            first = pairs[0]
            warm = multipart_pair(images[(first[0], SIZES[-1])], images[(first[1], SIZES[-1])])
            post(server.port, "/v1/faces/compare", *warm, server.key)
            post(server.port, "/v1/faces/detect",
                 *multipart("image", "warm.jpg", images[(first[0], SIZES[-1])]), server.key)
            for side in SIZES:
                for a, b in pairs:
                    source, target = images[(a, side)], images[(b, side)]
                    detect = _peak_of(server, "/v1/faces/detect",
                                      *multipart("image", "source.jpg", source))
                    compare = _peak_of(server, "/v1/faces/compare", *multipart_pair(source, target))
                    results.append({"side": side, "pair": [a, b], "detect": detect,
                                    "compare": compare})
                    print(f"{side} px {a} / {b}: detect +{detect['increase_mb']} MB, "
                          f"compare +{compare['increase_mb']} MB", flush=True)
        finally:
            server.stop()
    rows = []
    summary: dict[str, Any] = {}
    for side in SIZES:
        mine = [r for r in results if r["side"] == side]
        detect = [r["detect"]["increase_mb"] for r in mine]
        compare = [r["compare"]["increase_mb"] for r in mine]
        summary[str(side)] = {"detect_increase_mb_median": statistics.median(detect),
                              "detect_increase_mb_max": max(detect),
                              "compare_increase_mb_median": statistics.median(compare),
                              "compare_increase_mb_max": max(compare)}
        rows.append([side, len(mine), statistics.median(detect), max(detect),
                     statistics.median(compare), max(compare)])
    print(table(["side px", "pairs", "detect +MB median", "detect +MB max",
                 "compare +MB median", "compare +MB max"], rows))
    statuses = sorted({r[k]["status"] for r in results for k in ("detect", "compare")})
    payload = {
        "environment": environment(),
        "endpoint": "POST /v1/faces/compare and /v1/faces/detect (multipart), local engine "
                    "defaults, 1 sync worker; increase = VmHWM after the request - VmRSS "
                    "before it (peak reset before each request)",
        "load_average": os.getloadavg(),
        "statuses": statuses,
        "summary": summary,
        "results": results,
    }
    print(f"wrote {write_json(args.output, payload)}")


if __name__ == "__main__":
    main()
