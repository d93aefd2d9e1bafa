"""Helpers shared by the benchmarks: where the data set is, how to read it."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def faces_dir() -> Path:
    """FACEAPI_FACES_DIR, or ../shared/data/faces beside the repository."""
    path = Path(os.environ.get("FACEAPI_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))
    if not (path / "LABELS.csv").is_file():
        sys.exit(f"face data set not found at {path}: set FACEAPI_FACES_DIR")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def source_of(file: str) -> str:
    """The data set's source folder: the first path component."""
    return file.split("/", 1)[0]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def environment() -> dict[str, Any]:
    import dlib
    import numpy as np

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor_count": os.cpu_count(),
        "dlib": dlib.__version__,
        "numpy": np.__version__,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_header(headers: list[str]) -> list[str]:
    """The first two lines of a Markdown table with these column names."""
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


# Labelled images of tests/data/faces (tests/data/README.md), for benches that can run on
# the small licensed subset when ../shared/data/faces is not there.
FIXTURE_LABELS = (
    ("deepface/tests/unit/dataset/img5.jpg", "angelina_jolie"),
    ("deepface/tests/unit/dataset/img6.jpg", "angelina_jolie"),
    ("deepface/tests/unit/dataset/img11.jpg", "angelina_jolie"),
    ("deepface/tests/unit/dataset/img12.jpg", "jennifer_aniston"),
    ("deepface/tests/unit/dataset/img55.jpg", "jennifer_aniston"),
    ("CompreFace/embedding-calculator/src/services/imgtools/test/files/einstein.jpeg",
     "einstein"),
    ("face-api.js/examples/images/surprised.jpg", ""),
    ("face-api.js/examples/images/bbt3.jpg", ""),
    ("mtcnn/tests/images/ivan.jpg", "ivan"),
)


def labelled_faces() -> tuple[Path, list[tuple[str, str]]]:
    """The data set's root and its (file, identity) rows ("" = no single identity):
    the shared set's LABELS.csv (FACEAPI_FACES_DIR or ../shared/data/faces) when it is
    there, else the fixtures in tests/data/faces."""
    path = Path(os.environ.get("FACEAPI_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))
    if (path / "LABELS.csv").is_file():
        return path, [(row["file"], row["identity"]) for row in read_csv(path / "LABELS.csv")]
    return REPO / "tests" / "data" / "faces", list(FIXTURE_LABELS)


def proc_memory_kb(pid: int) -> dict[str, int]:
    """A process's resident memory from /proc: VmRSS (every page it maps, shared ones in
    full), VmHWM (the highest VmRSS it has had) and Pss (each shared page divided by the
    processes sharing it), in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            found["rss_kb"] = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            found["peak_rss_kb"] = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            found["pss_kb"] = int(line.split()[1])
    return found


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (/proc/<pid>/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """A process's direct children (gunicorn's workers, for the master)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(c) for c in children)
