"""Search index benchmark: brute force (faceapi.adapters.search.index) against ANN libraries.

    python -m bench.search [--sizes 10000,100000,1000000] [--queries 200] [--out FILE]

Synthetic 128-d descriptors shaped like dlib's: identities are random centres on a
sphere of radius ~0.9 apart by ~1.0 on average, and each stored face is its centre
plus noise, so a genuine probe lies ~0.4 from its own faces (the shape of the real
distance distributions, see docs/accuracy.md). Queries are fresh samples of stored
identities. For each size it reports

- brute force: build time (float32 bytes as the store returns them -> matrix), memory
  of the matrix, and single-query latency p50/p95 of faceapi's own `nearest()`;
- each ANN library that is importable (faiss-cpu HNSW, hnswlib, usearch): build time,
  memory, and latency and recall@10 against the exact answer, at the smallest search
  breadth (ef) whose recall@10 is >= 0.99.

ANN libraries are not project dependencies: install them beside numpy to compare
(`pip install faiss-cpu hnswlib usearch`). Results go to bench/results/search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceapi.adapters.search.index import nearest, snapshot_from_rows

if __package__ in (None, ""):  # run as a script (`python bench/search.py`, make bench)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS, percentile

DIMS = 128
K = 10
TARGET_RECALL = 0.99
FACES_PER_IDENTITY = 4
EF_STEPS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
EF_STEPS_IN_USE = list(EF_STEPS)
LIBRARIES = ("faiss", "hnswlib", "usearch")


def synthetic(n: int, queries: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    identities = max(1, n // FACES_PER_IDENTITY)
    centres = rng.standard_normal((identities, DIMS)).astype(np.float32)
    centres *= 0.72 / np.linalg.norm(centres, axis=1, keepdims=True)
    owner = rng.integers(0, identities, size=n)
    noise_scale = np.float32(0.25 / np.sqrt(DIMS))
    data = centres[owner] + rng.standard_normal((n, DIMS), dtype=np.float32) * noise_scale
    probes = centres[rng.integers(0, identities, size=queries)]
    probes = probes + rng.standard_normal((queries, DIMS), dtype=np.float32) * noise_scale
    return np.ascontiguousarray(data, dtype=np.float32), np.ascontiguousarray(probes)


def percentile_ms(samples: list[float], q: float) -> float:
    return round(percentile(samples, q) * 1000.0, 3)


def timed_queries(run: Callable[[np.ndarray], np.ndarray],
                  probes: np.ndarray) -> tuple[list[float], np.ndarray]:
    times: list[float] = []
    found = np.empty((len(probes), K), dtype=np.int64)
    for i, probe in enumerate(probes):
        started = time.perf_counter()
        ids = run(probe)
        times.append(time.perf_counter() - started)
        found[i, :len(ids)] = ids[:K]
        found[i, len(ids):] = -1
    return times, found


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class AnnResult:
    library: str
    params: str
    build_s: float
    memory_mb: float | None
    ef: int | None
    recall_at_10: float
    p50_ms: float
    p95_ms: float

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def sweep(name: str, params: str, *, build_s: float, memory_mb: float | None,
          set_ef: Callable[[int], None], run: Callable[[np.ndarray], np.ndarray],
          probes: np.ndarray, truth: np.ndarray) -> AnnResult:
    """The smallest ef reaching the target recall (or the best one tried)."""
    best: AnnResult | None = None
    for ef in EF_STEPS_IN_USE:
        set_ef(ef)
        times, found = timed_queries(run, probes)
        result = AnnResult(name, params, round(build_s, 2), memory_mb, ef,
                           round(recall(found, truth), 4), percentile_ms(times, 50),
                           percentile_ms(times, 95))
        best = result
        if result.recall_at_10 >= TARGET_RECALL:
            break
    assert best is not None
    return best


def bench_faiss(data: np.ndarray, probes: np.ndarray, truth: np.ndarray) -> AnnResult | None:
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(1)  # one query per request thread, like the service
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(DIMS, 32)
    index.hnsw.efConstruction = 80
    faiss.omp_set_num_threads(0)  # build on every core
    index.add(data)
    build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    memory = round(len(faiss.serialize_index(index)) / 2**20, 1)

    def set_ef(ef: int) -> None:
        index.hnsw.efSearch = ef

    def run(probe: np.ndarray) -> np.ndarray:
        _, ids = index.search(probe[None, :], K)
        return np.asarray(ids[0], dtype=np.int64)

    return sweep("faiss-cpu HNSWFlat", "M=32 efConstruction=80", build_s=build,
                 memory_mb=memory, set_ef=set_ef, run=run, probes=probes, truth=truth)


def bench_hnswlib(data: np.ndarray, probes: np.ndarray, truth: np.ndarray) -> AnnResult | None:
    try:
        import hnswlib
    except ImportError:
        return None
    started = time.perf_counter()
    index = hnswlib.Index(space="l2", dim=DIMS)
    index.init_index(max_elements=len(data), M=16, ef_construction=100)
    index.add_items(data, np.arange(len(data)))
    build = time.perf_counter() - started
    index.set_num_threads(1)
    # Links (M*2 level 0 + upper levels) plus the vectors; hnswlib does not report it.
    memory = round(len(data) * (DIMS * 4 + 16 * 2 * 4 + 16) / 2**20, 1)

    def run(probe: np.ndarray) -> np.ndarray:
        ids, _ = index.knn_query(probe, k=K)
        return np.asarray(ids[0], dtype=np.int64)

    return sweep("hnswlib", "M=16 ef_construction=100", build_s=build, memory_mb=memory,
                 set_ef=index.set_ef, run=run, probes=probes, truth=truth)


def bench_usearch(data: np.ndarray, probes: np.ndarray, truth: np.ndarray) -> AnnResult | None:
    try:
        from usearch.index import Index
    except ImportError:
        return None
    started = time.perf_counter()
    index = Index(ndim=DIMS, metric="l2sq", dtype="f32", connectivity=16,
                  expansion_add=128)
    index.add(np.arange(len(data)), data)
    build = time.perf_counter() - started
    memory = round(index.memory_usage / 2**20, 1)

    def set_ef(ef: int) -> None:
        index.expansion_search = ef

    def run(probe: np.ndarray) -> np.ndarray:
        matches = index.search(probe, K, threads=1)
        return np.asarray(matches.keys, dtype=np.int64)

    return sweep("usearch", "connectivity=16 expansion_add=128", build_s=build,
                 memory_mb=memory, set_ef=set_ef, run=run, probes=probes, truth=truth)


def bench_size(n: int, queries: int, libraries: tuple[str, ...] = LIBRARIES) -> dict[str, Any]:
    data, probes = synthetic(n, queries)
    # The store hands the index float32 bytes per row; build exactly as the index does.
    rows = [(str(i), str(i // FACES_PER_IDENTITY), data[i].tobytes()) for i in range(n)]
    started = time.perf_counter()
    snapshot = snapshot_from_rows(1, rows)
    build = time.perf_counter() - started
    del rows

    times, found = timed_queries(lambda p: nearest(snapshot, p, K), probes)
    # Exact ground truth, computed independently in float64.
    truth = np.empty((queries, K), dtype=np.int64)
    data64 = data.astype(np.float64)
    for i, probe in enumerate(probes.astype(np.float64)):
        d = ((data64 - probe) ** 2).sum(axis=1)
        truth[i] = np.argsort(d, kind="stable")[:K]
    del data64
    brute = {"build_s": round(build, 2),
             "memory_mb": round((snapshot.vectors.nbytes + snapshot.norms.nbytes) / 2**20, 1),
             "p50_ms": percentile_ms(times, 50), "p95_ms": percentile_ms(times, 95),
             "recall_at_10": round(recall(found, truth), 4)}
    print(f"n={n:>9,}  brute force  build {brute['build_s']}s  mem {brute['memory_mb']} MB  "
          f"p50 {brute['p50_ms']} ms  p95 {brute['p95_ms']} ms  recall {brute['recall_at_10']}",
          flush=True)
    ann = []
    benches = {"faiss": bench_faiss, "hnswlib": bench_hnswlib, "usearch": bench_usearch}
    for library in libraries:
        result = benches[library](data, probes, truth)
        if result is None:
            continue
        ann.append(result.as_dict())
        print(f"n={n:>9,}  {result.library:<18} build {result.build_s}s  "
              f"mem {result.memory_mb} MB  ef {result.ef}  recall {result.recall_at_10}  "
              f"p50 {result.p50_ms} ms  p95 {result.p95_ms} ms", flush=True)
    return {"n": n, "queries": queries, "brute_force": brute, "ann": ann,
            "max_rss_mb": round(max_rss_mb(), 1),
            # Other work on the machine skews latencies: record how busy it was.
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "search.json")
    parser.add_argument("--libraries", default=",".join(LIBRARIES),
                        help="ANN libraries to try (those not installed are skipped)")
    parser.add_argument("--ef-steps", default=",".join(map(str, EF_STEPS)),
                        help="search breadths to try, smallest first")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    libraries = tuple(x for x in args.libraries.split(",") if x in LIBRARIES)
    EF_STEPS_IN_USE[:] = [int(x) for x in args.ef_steps.split(",") if x.strip()]
    results = [bench_size(n, args.queries, libraries) for n in sizes]
    document = {"dims": DIMS, "k": K, "target_recall": TARGET_RECALL,
                "ef_steps": EF_STEPS_IN_USE,
                "machine": {"python": platform.python_version(), "numpy": np.__version__,
                            "cpu": platform.processor() or platform.machine()},
                "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
