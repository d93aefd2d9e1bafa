"""Latency of the HTTP API against the local engine and against plain dlib.

Run:  .venv/bin/python -m bench.latency            (detect: about 3 minutes on 2 CPUs)
      .venv/bin/python -m bench.latency --compare  (compare: about 4 minutes)
      .venv/bin/python -m bench.latency --detection-cost   (about 1 minute)
      .venv/bin/python -m bench.latency --cpu-breakdown --pairs 2  (about 1 minute)
      .venv/bin/python -m bench.latency --decode-cost      (about 1 minute)

Default (detect): for every image of the accuracy bench (LABELS.csv and PAIRS.csv files)
it times, in turn: the engine alone (`LocalEngine.detect_faces` on the decoded image,
DEFAULT attributes), intake + engine in-process (`decode_image` + detect), and the HTTP
endpoint on a gunicorn it starts itself (deploy/gunicorn.conf.py, one sync worker, a
free port, a temporary data dir, a fresh admin key from `faceapi keys bootstrap`),
multipart upload, one new connection per request. Prints p50/p95 and the ratios; writes
bench/results/latency.json.

--compare: POST /v1/faces/compare over HTTP against plain dlib in-process on the same
image pairs in the same run, per image size. Pairs: the first --pairs same-identity
pairs of PAIRS.csv whose two images are single-face JPEGs, each image resized (Lanczos,
JPEG quality 90) so its longer side is 640, 1024 and 1600 px. Plain dlib: PIL decode,
get_frontal_face_detector() upsample 1 on the full image, the 5-point shape, dlib's
compute_face_descriptor for the source's largest face and every target face, euclidean
distances (what a dlib user writes). The server runs once per configuration (one worker;
descriptor runtime onnx or dlib; detect strategy fixed or adaptive; detect threads 2 or
1), each request followed by the plain computation of the same pair. Also the worker's
RSS after the run and the load average before and after. Writes
bench/results/latency_compare.json and .md (latency_compare_<tag>.* with --tag).
--compare --mixed: the same with a source and a target of different sizes (MIXED_SIZES:
640/1600, 1600/640, 1024/1600, 1600/1024 px), latency_compare_mixed[_<tag>].*.

--cpu-breakdown: thread CPU time of every step of a compare, plain dlib and engine, and
the lower bounds they put on the HTTP/plain ratio (latency_cpu.*). --decode-cost: large
JPEGs (12-40 MP) decoded fully and in JPEG draft mode (latency_decode.*).

--detection-cost: HOG detection alone (dlib's detector on the decoded pixels) per image
size and upsampling (0, 1, 2; 2 only up to 1024 px), on the same resized images, and
the adaptive strategy's first pass; writes bench/results/latency_detect.json and .md.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.domain.faces import Attributes

if __package__ in (None, ""):  # run as a script (`python bench/latency.py`, make bench)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    REPO,
    RESULTS,
    environment,
    faces_dir,
    markdown_header,
    percentile,
    read_csv,
    table,
    write_json,
)

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(port: int, path: str, body: bytes, content_type: str, key: str) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": content_type, "Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        status = response.status
    finally:
        conn.close()
    return status, time.perf_counter() - start


class Server:
    """gunicorn with one worker on a free port and a throwaway data dir."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
        self.env.update({
            "FACEAPI_DATA_DIR": str(workdir / "data"),
            "FACEAPI_BIND": f"127.0.0.1:{self.port}",
            "FACEAPI_WORKERS": "1",
            "FACEAPI_LOG_FORMAT": "json",
            "FACEAPI_IMAGE_FORMATS": ",".join(KNOWN_FORMATS),
            # The bench sends hundreds of requests a minute; the default limit would
            # turn some into 429s.
            "FACEAPI_RATE_LIMIT_DEFAULT": "100000/minute",
        })
        self.env.update(extra_env or {})
        self.log = workdir / "gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.key = ""

    def start(self) -> None:
        cli = str(VENV_BIN / "faceapi")
        subprocess.run([cli, "db", "upgrade"], env=self.env, cwd=REPO, check=True,
                       capture_output=True)
        subprocess.run([cli, "keys", "bootstrap"], env=self.env, cwd=REPO, check=True,
                       capture_output=True)
        self.key = (Path(self.env["FACEAPI_DATA_DIR"]) / "admin-key.txt").read_text().strip()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
                env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"gunicorn did not become ready; see {self.log}")

    def worker_rss_mb(self) -> list[float]:
        """Resident memory of each worker (children of the gunicorn master), in MB."""
        if self.process is None:
            return []
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        sizes = []
        for child in children:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(values, 50) * 1000, "p95_ms": percentile(values, 95) * 1000,
            "mean_ms": sum(values) / len(values) * 1000}


# Compare and detection cost ---------------------------------------------------------

SIZES = (640, 1024, 1600)
# --compare --mixed: (source, target) longer sides of images of different sizes, a selfie
# against a photo at the detection size and the reverse (the engine detects those in
# turn), and a pair it still detects side by side.
MIXED_SIZES = ((640, 1600), (1600, 640), (1024, 1600), (1600, 1024))
CONFIGS: dict[str, dict[str, str]] = {
    "onnx": {"FACEAPI_DESCRIPTOR_RUNTIME": "onnx", "FACEAPI_DETECT_STRATEGY": "fixed",
             "FACEAPI_DETECT_THREADS": "2"},
    "onnx-1thread": {"FACEAPI_DESCRIPTOR_RUNTIME": "onnx", "FACEAPI_DETECT_STRATEGY": "fixed",
                     "FACEAPI_DETECT_THREADS": "1"},
    "onnx-adaptive": {"FACEAPI_DESCRIPTOR_RUNTIME": "onnx",
                      "FACEAPI_DETECT_STRATEGY": "adaptive", "FACEAPI_DETECT_THREADS": "2"},
    "dlib": {"FACEAPI_DESCRIPTOR_RUNTIME": "dlib", "FACEAPI_DETECT_STRATEGY": "fixed",
             "FACEAPI_DETECT_THREADS": "2"},
}
DEFAULT_CONFIGS = "onnx,onnx-1thread,onnx-adaptive,dlib"


def compare_pairs(root: Path, count: int) -> list[tuple[str, str]]:
    """Same-identity PAIRS.csv pairs of single-face JPEGs, distinct files."""
    notes = {r["file"]: r for r in read_csv(root / "IMAGE_NOTES.csv")}
    chosen: list[tuple[str, str]] = []
    used: set[str] = set()
    for row in read_csv(root / "PAIRS.csv"):
        a, b = row["file_a"], row["file_b"]
        if row["same"] != "1" or a in used or b in used:
            continue
        if all(notes.get(f, {}).get("faces") == "1" and not notes[f]["tags"]
               and f.lower().endswith((".jpg", ".jpeg")) for f in (a, b)):
            chosen.append((a, b))
            used.update((a, b))
        if len(chosen) == count:
            break
    return chosen


def resized_jpeg(path: Path, side: int) -> bytes:
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    scale = side / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    out = io.BytesIO()
    rgb.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=90)
    return out.getvalue()


def plain_compare(models: Any, source: bytes, target: bytes) -> list[float]:
    """CompareFaces the plain dlib way; returns the target faces' distances."""
    def pixels(data: bytes) -> Any:
        with Image.open(io.BytesIO(data)) as img:
            return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))

    src, tgt = pixels(source), pixels(target)
    dets = models.hog(src, 1)
    if len(dets) == 0:
        return []
    largest = max(dets, key=lambda r: r.width() * r.height())
    probe = np.array(models.recognizer.compute_face_descriptor(src, models.shape5(src, largest)))
    return [float(np.linalg.norm(probe - np.array(models.recognizer.compute_face_descriptor(
        tgt, models.shape5(tgt, det))))) for det in models.hog(tgt, 1)]


def multipart_pair(source: bytes, target: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = b""
    for name, data in (("source", source), ("target", target)):
        parts += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                  f"filename=\"{name}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
        parts += data + b"\r\n"
    return parts + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def compare_bench(args: argparse.Namespace) -> None:
    from faceapi.adapters.engines.local.models import load_models

    root = faces_dir()
    pairs = compare_pairs(root, args.pairs)
    sizes = MIXED_SIZES if args.mixed else tuple((side, side) for side in SIZES)
    labels = {size: str(size[0]) if size[0] == size[1] else f"{size[0]}/{size[1]}"
              for size in sizes}
    images = {(f, side): resized_jpeg(root / f, side)
              for pair in pairs for f in pair for side in {s for size in sizes for s in size}}
    models = load_models("hog")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configuration(s) {unknown}; choose from {sorted(CONFIGS)}")
    # Each request is followed by the plain computation of the same pair, and ratios
    # are taken within a configuration: the machine's load drifts between them.
    plain: dict[str, dict[str, list[float]]] = {c: {label: [] for label in labels.values()}
                                                for c in configs}
    http: dict[str, dict[str, list[float]]] = {c: {label: [] for label in labels.values()}
                                               for c in configs}
    statuses: dict[str, dict[str, int]] = {c: {} for c in configs}
    rss: dict[str, list[float]] = {}
    load_before = os.getloadavg()
    for config in configs:
        with tempfile.TemporaryDirectory(prefix="faceapi-latency-") as tmp:
            server = Server(Path(tmp), CONFIGS[config])
            server.start()
            try:
                warm = multipart_pair(images[(pairs[0][0], sizes[0][0])],
                                      images[(pairs[0][1], sizes[0][1])])
                post(server.port, "/v1/faces/compare", *warm, server.key)
                for size, label in labels.items():
                    for a, b in pairs:
                        source, target = images[(a, size[0])], images[(b, size[1])]
                        body, ctype = multipart_pair(source, target)
                        for _ in range(args.repeat):
                            status, seconds = post(server.port, "/v1/faces/compare", body,
                                                   ctype, server.key)
                            statuses[config][str(status)] = statuses[config].get(
                                str(status), 0) + 1
                            http[config][label].append(seconds)
                            start = time.perf_counter()
                            plain_compare(models, source, target)
                            plain[config][label].append(time.perf_counter() - start)
                    print(f"{config}: {label} px done", flush=True)
                rss[config] = server.worker_rss_mb()
            finally:
                server.stop()
    rows = []
    per_size: dict[str, Any] = {}
    for label in labels.values():
        entry: dict[str, Any] = {}
        for config in configs:
            h, p = http[config][label], plain[config][label]
            entry[config] = {"http": summary(h), "plain_dlib": summary(p)}
            entry[config]["ratio_p50_to_plain"] = (entry[config]["http"]["p50_ms"]
                                                   / entry[config]["plain_dlib"]["p50_ms"])
            entry[config]["paired_ratio_p50"] = percentile(
                [a / b for a, b in zip(h, p, strict=True)], 50)
            rows.append([label, config, entry[config]["http"]["p50_ms"],
                         entry[config]["http"]["p95_ms"], entry[config]["plain_dlib"]["p50_ms"],
                         entry[config]["plain_dlib"]["p95_ms"],
                         entry[config]["ratio_p50_to_plain"], entry[config]["paired_ratio_p50"]])
        per_size[label] = entry
    result = {
        "command": ".venv/bin/python -m bench.latency --compare"
                   + (" --mixed" if args.mixed else "")
                   + (f" --pairs {args.pairs}" if args.pairs != 4 else "")
                   + (f" --repeat {args.repeat}" if args.repeat != 2 else "")
                   + (f" --configs {args.configs}" if args.configs != DEFAULT_CONFIGS
                      else "")
                   + (f" --tag {args.tag}" if args.tag else ""),
        "environment": environment(),
        "pairs": pairs, "sizes": list(labels.values()), "repeat": args.repeat, "workers": 1,
        "configs": {c: CONFIGS[c] for c in configs},
        "statuses": statuses, "worker_rss_mb": rss, "per_size": per_size,
    }
    headers = ["longer side px (source/target)", "server config", "HTTP p50 ms",
               "HTTP p95 ms", "plain dlib p50 ms", "plain dlib p95 ms", "p50 ratio",
               "median of paired ratios"]
    print(table(headers, rows))
    print(f"worker RSS MB: {rss}; statuses {statuses}")
    result["load_average_before_after"] = [load_before, os.getloadavg()]
    name = ("latency_compare" + ("_mixed" if args.mixed else "")
            + (f"_{args.tag}" if args.tag else ""))
    print(f"wrote {write_json(name + '.json', result)}")
    (RESULTS / f"{name}.md").write_text(compare_markdown(result), encoding="utf-8")


def compare_markdown(result: dict[str, Any]) -> str:
    """bench/results/latency_compare.md from the JSON result."""
    headers = ["longer side px (source/target)", "server config", "HTTP p50 ms",
               "HTTP p95 ms", "plain dlib p50 ms", "plain dlib p95 ms", "p50 ratio",
               "median paired ratio"]
    md = ["# POST /v1/faces/compare over HTTP vs plain dlib in-process", "",
          f"`{result['command']}` ({result['environment']['time_utc']}, "
          f"{result['environment']['processor_count']} CPUs, one gunicorn worker, "
          f"{len(result['pairs'])} pairs x {result['repeat']} rounds per size; each request "
          "followed by the plain computation of the same pair)", "",
          *markdown_header(headers)]
    for side, entry in result["per_size"].items():
        for config, e in entry.items():
            md.append(f"| {side} | {config} | {e['http']['p50_ms']:.0f} | "
                      f"{e['http']['p95_ms']:.0f} | {e['plain_dlib']['p50_ms']:.0f} | "
                      f"{e['plain_dlib']['p95_ms']:.0f} | {e['ratio_p50_to_plain']:.2f} | "
                      f"{e['paired_ratio_p50']:.2f} |")
    rss = result["worker_rss_mb"]
    md += ["", "Configurations: " + "; ".join(
        f"{c}: " + ", ".join(f"{k}={v}" for k, v in env.items())
        for c, env in result["configs"].items()),
        "", "Worker RSS after the run (MB): "
        + ", ".join(f"{c} {', '.join(f'{v:.0f}' for v in sizes)}" for c, sizes in rss.items()),
        "", f"HTTP statuses: {result['statuses']}",
        "", "Load average (1, 5, 15 min) before / after: "
        + " / ".join(", ".join(f"{v:.1f}" for v in la)
                     for la in result.get("load_average_before_after", []))]
    return "\n".join(md) + "\n"


def detection_cost(args: argparse.Namespace) -> None:
    from faceapi.adapters.engines.local.detection import ADAPTIVE_LARGE_FACE
    from faceapi.adapters.engines.local.models import load_models

    root = faces_dir()
    files = [f for pair in compare_pairs(root, args.pairs) for f in pair][:args.pairs]
    models = load_models("hog")
    results: dict[str, Any] = {}
    rows = []
    for side in SIZES:
        entry: dict[str, Any] = {}
        for upsample in (0, 1, 2):
            if upsample == 2 and side > 1024:
                continue
            times = []
            for f in files:
                with Image.open(io.BytesIO(resized_jpeg(root / f, side))) as img:
                    pixels = np.ascontiguousarray(np.asarray(img.convert("RGB")))
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    rects, _, _ = models.hog.run(pixels, upsample, 0.0)
                    times.append(time.perf_counter() - start)
                if upsample == 0:  # images whose first adaptive pass would be kept
                    entry["adaptive_first_pass_kept"] = entry.get(
                        "adaptive_first_pass_kept", 0) + int(
                        len(rects) > 0 and min(r.width() for r in rects) >= ADAPTIVE_LARGE_FACE)
            entry[f"upsample_{upsample}"] = summary(times)
            rows.append([side, upsample, entry[f"upsample_{upsample}"]["p50_ms"],
                         entry[f"upsample_{upsample}"]["p95_ms"]])
        results[str(side)] = entry
    result = {"command": ".venv/bin/python -m bench.latency --detection-cost"
                         + (f" --pairs {args.pairs}" if args.pairs != 4 else "")
                         + (f" --repeat {args.repeat}" if args.repeat != 2 else ""),
              "environment": environment(), "images": files, "repeat": args.repeat,
              "adaptive_large_face_px": ADAPTIVE_LARGE_FACE, "per_size": results}
    headers = ["longer side px", "upsample", "HOG p50 ms", "HOG p95 ms"]
    print(table(headers, rows))
    print(f"wrote {write_json('latency_detect.json', result)}")
    md = ["# HOG detection time by image size and upsampling", "",
          f"`{result['command']}` ({result['environment']['time_utc']}, "
          f"{result['environment']['processor_count']} CPUs, {len(files)} single-face "
          f"photos x {args.repeat} rounds)", "",
          *markdown_header(headers)]
    md += ["| " + " | ".join(f"{c:.1f}" if isinstance(c, float) else str(c) for c in row) + " |"
           for row in rows]
    (RESULTS / "latency_detect.md").write_text("\n".join(md) + "\n", encoding="utf-8")


def _cpu_ms(fn: Any, repeat: int) -> float:
    """Least CPU time of this thread over `repeat` calls, in ms: on a machine shared
    with other jobs, wall time measures the others too; a thread's CPU time does not
    (save cache effects). onnxruntime with 1 thread computes in the calling thread."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best * 1000


def cpu_breakdown(args: argparse.Namespace) -> None:
    """Where a compare's CPU time goes, per image size: each step of plain dlib and of
    the engine, on one image of each --pairs pair (both sides cost the same steps), and
    the lower bounds of the HTTP/plain ratio these put on any exact implementation.
    Writes bench/results/latency_cpu.json and .md."""
    import dlib
    import numpy.typing as npt

    from faceapi.adapters.engines.local.engine import CHIP_PADDING, CHIP_SIZE

    root = faces_dir()
    files = [f for pair in compare_pairs(root, args.pairs) for f in pair]
    with tempfile.TemporaryDirectory(prefix="faceapi-cpu-") as tmp:
        settings = Settings(env="test", image_formats=KNOWN_FORMATS, data_dir=Path(tmp))
        engine = LocalEngine(settings.with_overrides(detect_threads=1))
        models: Any = engine._models
        steps: dict[str, dict[str, list[float]]] = {}
        for side in SIZES:
            rows: dict[str, list[float]] = {}

            def add(step: str, ms: float, rows: dict[str, list[float]] = rows) -> None:
                rows.setdefault(step, []).append(ms)

            for f in files:
                data = resized_jpeg(root / f, side)

                def pil(data: bytes = data) -> npt.NDArray[np.uint8]:
                    with Image.open(io.BytesIO(data)) as img:
                        return np.ascontiguousarray(np.asarray(img.convert("RGB"),
                                                               dtype=np.uint8))

                px = pil()
                up = np.ascontiguousarray(np.repeat(np.repeat(px, 2, axis=0), 2, axis=1))
                rects = models.hog(px, 1)
                if len(rects) != 1:
                    continue
                rect = rects[0]
                shape5 = models.shape5(px, rect)
                image = decode_image(data, settings)
                found = engine._find(image)
                face = found.faces[0]
                chip = np.asarray(dlib.get_face_chip(px, face.shape68, CHIP_SIZE, CHIP_PADDING))
                add("decode, PIL (plain)", _cpu_ms(pil, args.repeat))
                add("decode, faceapi intake", _cpu_ms(lambda d=data: decode_image(d, settings),
                                                      args.repeat))
                add("HOG upsample 1 (both)", _cpu_ms(lambda p=px: models.hog.run(p, 1, 0.0),
                                                     args.repeat))
                add("  of which: HOG without upsampling on a 2x-sized image (rest: pyramid_up)",
                    _cpu_ms(lambda u=up: models.hog.run(u, 0, 0.0), args.repeat))
                add("5-point shape (plain)", _cpu_ms(lambda p=px, r=rect: models.shape5(p, r),
                                                     args.repeat))
                add("dlib descriptor (plain)", _cpu_ms(
                    lambda p=px, s=shape5: models.recognizer.compute_face_descriptor(p, s),
                    args.repeat))
                add("engine: detection incl. 68-point shape", _cpu_ms(
                    lambda i=image: engine._find(i), args.repeat))
                add("engine: face chip", _cpu_ms(lambda p=px, s=face.shape68: dlib.get_face_chip(
                    p, s, CHIP_SIZE, CHIP_PADDING), args.repeat))
                add("engine: onnx descriptor", _cpu_ms(
                    lambda c=chip: engine._onnx.compute(c[None]) if engine._onnx else None,
                    args.repeat))
                add("engine: attributes (landmarks, pose, quality)", _cpu_ms(
                    lambda p=found.pixels, fc=face: engine._detail(p, fc, Attributes.ALL),
                    args.repeat))
            steps[str(side)] = rows
    result: dict[str, Any] = {
        "command": ".venv/bin/python -m bench.latency --cpu-breakdown"
                   + (f" --pairs {args.pairs}" if args.pairs != 4 else "")
                   + (f" --repeat {args.repeat}" if args.repeat != 2 else ""),
        "environment": environment(), "images": files, "repeat": args.repeat,
        "per_size": {}}
    for side, rows in steps.items():
        med = {k: percentile(v, 50) for k, v in rows.items()}
        hog = med["HOG upsample 1 (both)"]
        plain = 2 * (med["decode, PIL (plain)"] + hog + med["5-point shape (plain)"]
                     + med["dlib descriptor (plain)"])
        engine_side = (med["decode, faceapi intake"] + med["engine: detection incl. 68-point shape"]
                       + med["engine: face chip"] + med["engine: onnx descriptor"]
                       + med["engine: attributes (landmarks, pose, quality)"])
        result["per_size"][side] = {
            "median_cpu_ms": med, "images": len(next(iter(rows.values()), [])),
            "plain_compare_cpu_ms": plain,
            "engine_compare_cpu_ms": 2 * engine_side,
            # Both images' HOG alone, on one core: no exact implementation on one core
            # can go below it (the HTTP layer only adds).
            "floor_one_core_ratio": 2 * hog / plain,
            "engine_one_core_ratio": 2 * engine_side / plain,
            # Two images on two free cores: the longer side is one image's work.
            "engine_two_cores_ratio": engine_side / plain,
        }
    headers = ["longer side px", "step (median CPU ms per image)", *SIZES]
    names = list(next(iter(steps.values())).keys())
    md = ["# Where a compare's CPU time goes (thread CPU time, not wall time)", "",
          f"`{result['command']}` ({result['environment']['time_utc']}, "
          f"{result['environment']['processor_count']} CPUs; least of {args.repeat} calls per "
          f"image, median over {len(files)} single-face images)", "",
          "| step | " + " | ".join(f"{s} px" for s in SIZES) + " |",
          "|---|" + "---|" * len(SIZES)]
    for n in names:
        md.append(f"| {n} | " + " | ".join(
            f"{result['per_size'][str(s)]['median_cpu_ms'][n]:.1f}" for s in SIZES) + " |")
    for key, label in (("plain_compare_cpu_ms", "plain dlib compare, 2 images (ms)"),
                       ("engine_compare_cpu_ms", "engine compare, 2 images (ms)"),
                       ("floor_one_core_ratio", "floor on one core: 2 x HOG / plain"),
                       ("engine_one_core_ratio", "engine on one core / plain"),
                       ("engine_two_cores_ratio", "engine, images on two free cores / plain")):
        md.append(f"| **{label}** | " + " | ".join(
            f"{result['per_size'][str(s)][key]:.2f}" for s in SIZES) + " |")
    print("\n".join(md))
    del headers
    print(f"wrote {write_json('latency_cpu.json', result)}")
    (RESULTS / "latency_cpu.md").write_text("\n".join(md) + "\n", encoding="utf-8")


DECODE_MEGAPIXELS = (12, 24, 40)


def two_core_floor(args: argparse.Namespace) -> None:
    """Wall-clock floor of an exact compare on two cores, in-process, per image size: for
    each --pairs pair and --repeat round, interleaved, (1) plain dlib's compare, (2) the
    two images' HOG passes (dlib's `run`, upsample 1) on two threads at once and nothing
    else, which is the least any implementation giving dlib's detections on two cores
    can take, and (3) the engine's compare_faces on decoded images (what the HTTP request
    runs, less the upload, intake and audit). Ratios are of p50s to plain's p50, taken
    within this run. Writes bench/results/latency_floor.json and .md."""
    from concurrent.futures import ThreadPoolExecutor

    import dlib

    from faceapi.adapters.engines.local.models import load_models

    root = faces_dir()
    pairs = compare_pairs(root, args.pairs)
    models = load_models("hog")
    detectors = (dlib.get_frontal_face_detector(), dlib.get_frontal_face_detector())
    rows = []
    per_size: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="faceapi-floor-") as tmp, \
            ThreadPoolExecutor(max_workers=1) as helper:
        settings = Settings(env="test", image_formats=KNOWN_FORMATS, data_dir=Path(tmp))
        engine = LocalEngine(settings)
        for side in SIZES:
            times: dict[str, list[float]] = {"plain": [], "two_hog": [], "engine": []}
            for a, b in pairs:
                source, target = resized_jpeg(root / a, side), resized_jpeg(root / b, side)
                images = decode_image(source, settings), decode_image(target, settings)
                first, second = (np.ascontiguousarray(i.pixels) for i in images)
                engine.compare_faces(*images, 80.0)  # warm
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    plain_compare(models, source, target)
                    times["plain"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    other = helper.submit(detectors[1].run, second, 1, 0.0)
                    detectors[0].run(first, 1, 0.0)
                    other.result()
                    times["two_hog"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    engine.compare_faces(*images, 80.0)
                    times["engine"].append(time.perf_counter() - start)
            p50 = {k: percentile(v, 50) * 1000 for k, v in times.items()}
            per_size[str(side)] = {"p50_ms": p50, "ratio_to_plain": {
                k: p50[k] / p50["plain"] for k in ("two_hog", "engine")}, "samples": len(
                times["plain"])}
            rows.append([side, p50["plain"], p50["two_hog"], p50["two_hog"] / p50["plain"],
                         p50["engine"], p50["engine"] / p50["plain"]])
            print(f"{side} px done", flush=True)
    headers = ["longer side px", "plain dlib p50 ms", "two HOG passes at once p50 ms",
               "ratio", "engine compare p50 ms", "ratio"]
    print(table(headers, rows))
    result = {"command": ".venv/bin/python -m bench.latency --two-core-floor"
                         + (f" --pairs {args.pairs}" if args.pairs != 4 else "")
                         + (f" --repeat {args.repeat}" if args.repeat != 2 else "")
                         + (f" --tag {args.tag}" if args.tag else ""),
              "environment": environment(), "pairs": pairs, "repeat": args.repeat,
              "per_size": per_size}
    name = "latency_floor" + (f"_{args.tag}" if args.tag else "")
    print(f"wrote {write_json(name + '.json', result)}")
    md = ["# The two-core floor of an exact compare", "",
          f"`{result['command']}` ({result['environment']['time_utc']}, "
          f"{result['environment']['processor_count']} CPUs, in-process, "
          f"{len(pairs)} pairs x {args.repeat} rounds per size, interleaved)", "",
          *markdown_header(headers)]
    md += [f"| {r[0]} | {r[1]:.0f} | {r[2]:.0f} | {r[3]:.2f} | {r[4]:.0f} | {r[5]:.2f} |"
           for r in rows]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")


def decode_cost(args: argparse.Namespace) -> None:
    """Item 4 of issue 14: what decoding a large phone photo costs, and what JPEG draft
    mode (libjpeg's DCT scaling to 1/2, 1/4, 1/8 while decoding) would save and change.
    One single-face photo of the set upscaled (Lanczos, JPEG quality 90) to 12, 24 and 40
    MP (the default pixel cap). CPU times (least of --repeat) of: faceapi's intake
    (full decode), PIL's full decode, a draft decode to the smallest scale whose longer
    side is still >= FACEAPI_DETECT_MAX_SIDE, the detector's downscale to that side from
    the full image, and the detection itself; then whether detection on the draft image
    gives the same boxes. Writes bench/results/latency_decode.json and .md."""
    from faceapi.adapters.engines.local.detection import downscale, find_faces

    root = faces_dir()
    source = compare_pairs(root, 1)[0][0]
    with tempfile.TemporaryDirectory(prefix="faceapi-decode-") as tmp:
        settings = Settings(env="test", image_formats=KNOWN_FORMATS, data_dir=Path(tmp))
        engine = LocalEngine(settings.with_overrides(detect_threads=1))
        max_side = settings.detect_max_side
        with Image.open(root / source) as img:
            base = img.convert("RGB")
        rows = []
        entries: dict[str, Any] = {}
        for mp in DECODE_MEGAPIXELS:
            scale = (mp * 1_000_000 / (base.width * base.height)) ** 0.5
            big = base.resize((round(base.width * scale), round(base.height * scale)),
                              Image.Resampling.LANCZOS)
            out = io.BytesIO()
            big.save(out, "JPEG", quality=90)
            data = out.getvalue()
            del big

            def full(data: bytes = data) -> Any:
                with Image.open(io.BytesIO(data)) as img:
                    return np.asarray(img.convert("RGB"))

            def draft(data: bytes = data) -> Any:
                with Image.open(io.BytesIO(data)) as img:
                    w, h = img.size
                    # draft picks the smallest scale >= the size asked for.
                    ratio = max_side / max(w, h)
                    img.draft("RGB", (max(1, int(w * ratio)), max(1, int(h * ratio))))
                    return np.asarray(img.convert("RGB"))

            pixels = np.ascontiguousarray(full())
            drafted = np.ascontiguousarray(draft())
            small, _ = downscale(pixels, max_side)
            small_draft, _ = downscale(drafted, max_side)
            found_full = engine._find(decode_image(data, settings))
            def boxes(found: Any, w: int, full_w: int = pixels.shape[1]) -> list[tuple[float, ...]]:
                k = full_w / w
                return [tuple(round(v * k, 1) for v in (f.left, f.top, f.right, f.bottom))
                        for f in found.faces]

            found_draft = find_faces(drafted, engine._models, upsample=settings.upsample,
                                     max_side=max_side, orientation_search=True)
            entry = {
                "pixels": [int(pixels.shape[1]), int(pixels.shape[0])], "bytes": len(data),
                "draft_pixels": [int(drafted.shape[1]), int(drafted.shape[0])],
                "intake_decode_ms": _cpu_ms(lambda d=data: decode_image(d, settings),
                                            args.repeat),
                "pil_full_decode_ms": _cpu_ms(full, args.repeat),
                "pil_draft_decode_ms": _cpu_ms(draft, args.repeat),
                "downscale_from_full_ms": _cpu_ms(lambda p=pixels: downscale(p, max_side),
                                                  args.repeat),
                "detection_image_pixels_differ": int(np.count_nonzero(
                    small.astype(np.int16) - small_draft.astype(np.int16)))
                if small.shape == small_draft.shape else -1,
                "detection_ms": _cpu_ms(lambda p=small: engine._models.hog.run(p, 1, 0.0), 1),
                "boxes_full": boxes(found_full, pixels.shape[1]),
                "boxes_draft_in_full_pixels": boxes(found_draft, drafted.shape[1]),
            }
            entries[str(mp)] = entry
            rows.append([mp, f"{pixels.shape[1]}x{pixels.shape[0]}", entry["intake_decode_ms"],
                         entry["pil_full_decode_ms"], entry["pil_draft_decode_ms"],
                         entry["downscale_from_full_ms"], entry["detection_ms"],
                         str(entry["boxes_full"]), str(entry["boxes_draft_in_full_pixels"])])
            print(f"{mp} MP done", flush=True)
    result = {"command": ".venv/bin/python -m bench.latency --decode-cost"
                         + (f" --repeat {args.repeat}" if args.repeat != 2 else ""),
              "environment": environment(), "image": source, "detect_max_side": max_side,
              "per_megapixels": entries}
    headers = ["MP", "pixels", "intake decode CPU ms", "PIL full decode CPU ms",
               "PIL draft decode CPU ms", "downscale to 1600 CPU ms", "HOG at 1600 CPU ms",
               "face box (full decode)", "face box (draft decode)"]
    print(table(headers, rows))
    print(f"wrote {write_json('latency_decode.json', result)}")
    md = ["# Decoding large JPEGs: full vs draft mode (CPU time)", "",
          f"`{result['command']}` ({result['environment']['time_utc']}, "
          f"{result['environment']['processor_count']} CPUs; {source} upscaled)", "",
          *markdown_header(headers)]
    md += ["| " + " | ".join(f"{c:.0f}" if isinstance(c, float) else str(c) for c in r) + " |"
           for r in rows]
    (RESULTS / "latency_decode.md").write_text("\n".join(md) + "\n", encoding="utf-8")


def api(port: int, key: str, method: str, path: str, body: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=json.dumps(body), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


VERIFY_IMAGE = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"


def _verify_client(server: Server, body: Any, stop: float, latencies: list[float],
                   statuses: dict[str, int]) -> None:
    while time.monotonic() < stop:
        start = time.perf_counter()
        code, _ = api(server.port, server.key, "POST", "/v1/verify", body)
        latencies.append(time.perf_counter() - start)
        statuses[str(code)] = statuses.get(str(code), 0) + 1


def verify_rps(args: argparse.Namespace) -> None:
    """A subject enrolled with img5.jpg (330x512), then verified with the same photo
    under the `login` policy by --clients client threads (4) for --seconds, after 4
    warm-up requests; 1 and 2 gunicorn workers (sync, one thread each), each descriptor
    runtime, FACEAPI_DETECT_THREADS from --detect-threads (the default 2 when not given),
    SQLite in a temporary data dir (the audit trail is written for every decision). One
    client shows a request's latency on otherwise idle cores; four, throughput."""
    image = base64.b64encode((VERIFY_IMAGE / "img5.jpg").read_bytes()).decode("ascii")
    runs: dict[str, Any] = {}
    rows = []
    load_before = os.getloadavg()
    for runtime in args.runtimes.split(","):
        for workers in (1, 2):
            with tempfile.TemporaryDirectory(prefix="faceapi-rps-") as tmp:
                env = {"FACEAPI_WORKERS": str(workers), "FACEAPI_DESCRIPTOR_RUNTIME": runtime,
                       "FACEAPI_RATE_LIMIT_VERIFY": "100000/minute"}
                if args.detect_threads:
                    env["FACEAPI_DETECT_THREADS"] = str(args.detect_threads)
                server = Server(Path(tmp), env)
                server.start()
                try:
                    status, _ = api(server.port, server.key, "POST", "/v1/collections",
                                    {"collection_id": "bench", "consent_required": False})
                    if status != 201:
                        raise RuntimeError(f"create collection: {status}")
                    status, _ = api(server.port, server.key, "POST",
                                    "/v1/collections/bench/faces",
                                    {"subject_id": "s1", "image": {"bytes": image}})
                    if status != 200:
                        raise RuntimeError(f"index faces: {status}")
                    status, created = api(server.port, server.key, "POST", "/v1/keys",
                                          {"name": "bench app", "role": "app",
                                           "owner": "system:bench"})
                    if status != 201:
                        raise RuntimeError(f"create app key: {status}")
                    server.key = created["key"]  # verify is an app's call
                    body = {"collection_id": "bench", "subject_id": "s1", "policy": "login",
                            "image": {"bytes": image}}
                    for _ in range(4):
                        api(server.port, server.key, "POST", "/v1/verify", body)
                    statuses: dict[str, int] = {}
                    latencies: list[float] = []
                    stop = time.monotonic() + args.seconds
                    began = time.monotonic()
                    threads = [threading.Thread(target=_verify_client, args=(
                        server, body, stop, latencies, statuses)) for _ in range(args.clients)]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                    elapsed = time.monotonic() - began
                    rss = server.worker_rss_mb()
                finally:
                    server.stop()
            ok = statuses.get("200", 0)
            name = f"{runtime}-{workers}w"
            runs[name] = {"runtime": runtime, "workers": workers, "seconds": elapsed,
                          "statuses": statuses, "requests_per_second": ok / elapsed,
                          "latency": summary(latencies), "worker_rss_mb": rss}
            rows.append([runtime, workers, ok / elapsed, runs[name]["latency"]["p50_ms"],
                         runs[name]["latency"]["p95_ms"], ", ".join(f"{r:.0f}" for r in rss)])
            print(f"{name}: {ok / elapsed:.2f} verify/s", flush=True)
    result = {"command": ".venv/bin/python -m bench.latency --verify-rps"
                         + (f" --seconds {args.seconds:g}" if args.seconds != 15.0 else "")
                         + (f" --clients {args.clients}" if args.clients != 4 else "")
                         + (f" --runtimes {args.runtimes}" if args.runtimes != "onnx,dlib"
                            else "")
                         + (f" --detect-threads {args.detect_threads}" if args.detect_threads
                            else "")
                         + (f" --tag {args.tag}" if args.tag else ""),
              "environment": environment(), "clients": args.clients,
              "detect_threads": args.detect_threads or 2, "image": "img5.jpg (330x512)",
              "load_average_before_after": [load_before, os.getloadavg()], "runs": runs}
    headers = ["runtime", "workers", "verify/s (200s)", "p50 ms", "p95 ms", "worker RSS MB"]
    print(table(headers, rows))
    name = "latency_verify" + (f"_{args.tag}" if args.tag else "")
    print(f"wrote {write_json(name + '.json', result)}")
    md = ["# POST /v1/verify throughput", "",
          f"`{result['command']}` ({result['environment']['time_utc']}, "
          f"{result['environment']['processor_count']} CPUs, {args.clients} client "
          f"thread{'s' if args.clients != 1 else ''}, FACEAPI_DETECT_THREADS "
          f"{args.detect_threads or 2}, "
          f"{args.seconds:g} s per run, SQLite, `login` policy, the enrolled photo)", "",
          *markdown_header(headers)]
    md += [f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.0f} | {r[4]:.0f} | {r[5]} |" for r in rows]
    md += ["", "Statuses: " + "; ".join(f"{k} {v['statuses']}" for k, v in runs.items()),
           "", "Load average (1, 5, 15 min) before / after: " + " / ".join(
               ", ".join(f"{v:.1f}" for v in la) for la in result["load_average_before_after"])]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds per image")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--compare", action="store_true",
                        help="POST /v1/faces/compare vs plain dlib per image size")
    parser.add_argument("--mixed", action="store_true",
                        help="--compare: images of different sizes (MIXED_SIZES)")
    parser.add_argument("--detection-cost", action="store_true",
                        help="HOG time per image size and upsampling")
    parser.add_argument("--verify-rps", action="store_true",
                        help="POST /v1/verify requests per second, 1 and 2 workers")
    parser.add_argument("--seconds", type=float, default=15.0, help="--verify-rps: per run")
    parser.add_argument("--pairs", type=int, default=4, help="--compare: image pairs")
    parser.add_argument("--tag", default="",
                        help="--compare, --two-core-floor, --verify-rps: suffix of the "
                             "result files")
    parser.add_argument("--clients", type=int, default=4, help="--verify-rps: client threads")
    parser.add_argument("--runtimes", default="onnx,dlib", choices=("onnx,dlib", "onnx", "dlib"),
                        help="--verify-rps: descriptor runtimes to run")
    parser.add_argument("--detect-threads", type=int, choices=(1, 2), default=0,
                        help="--verify-rps: FACEAPI_DETECT_THREADS of the server")
    parser.add_argument("--cpu-breakdown", action="store_true",
                        help="CPU time of each step of a compare, engine vs plain dlib")
    parser.add_argument("--two-core-floor", action="store_true",
                        help="plain dlib vs two HOG passes at once vs the engine, in-process")
    parser.add_argument("--decode-cost", action="store_true",
                        help="decoding 12-40 MP JPEGs, full vs draft mode")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help="--compare: server configurations (" + ",".join(CONFIGS) + ")")
    args = parser.parse_args()
    if args.compare:
        compare_bench(args)
        return
    if args.detection_cost:
        detection_cost(args)
        return
    if args.cpu_breakdown:
        cpu_breakdown(args)
        return
    if args.decode_cost:
        decode_cost(args)
        return
    if args.two_core_floor:
        two_core_floor(args)
        return
    if args.verify_rps:
        verify_rps(args)
        return

    root = faces_dir()
    files = sorted({r["file"] for r in read_csv(root / "LABELS.csv")}
                   | {r[k] for r in read_csv(root / "PAIRS.csv") for k in ("file_a", "file_b")})
    if args.limit:
        files = files[:args.limit]
    settings = Settings(image_formats=KNOWN_FORMATS)
    engine = LocalEngine(settings)
    payloads = {f: (root / f).read_bytes() for f in files}

    raw: list[float] = []
    intake: list[float] = []
    http_times: list[float] = []
    statuses: dict[int, int] = {}
    per_image: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="faceapi-latency-") as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            # Warm-up: the first request of a worker pays one-off costs.
            first = payloads[files[0]]
            post(server.port, "/v1/faces/detect", *multipart("image", "warm", first), server.key)
            for i, file in enumerate(files, 1):
                data = payloads[file]
                body, ctype = multipart("image", Path(file).name, data)
                r_times, i_times, h_times = [], [], []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    image = decode_image(data, settings)
                    decoded = time.perf_counter()
                    engine.detect_faces(image, Attributes.DEFAULT)
                    done = time.perf_counter()
                    r_times.append(done - decoded)
                    i_times.append(done - start)
                    status, seconds = post(server.port, "/v1/faces/detect", body, ctype, server.key)
                    statuses[status] = statuses.get(status, 0) + 1
                    h_times.append(seconds)
                raw += r_times
                intake += i_times
                http_times += h_times
                per_image[file] = {"engine_ms": min(r_times) * 1000,
                                   "intake_engine_ms": min(i_times) * 1000,
                                   "http_ms": min(h_times) * 1000}
                print(f"\r{i}/{len(files)} images", end="", flush=True)
            print()
        finally:
            server.stop()

    result = {
        "environment": environment(),
        "config": {"repeat": args.repeat, "images": len(files), "workers": 1,
                   "attributes": "DEFAULT", "detector": settings.detector,
                   "upsample": settings.upsample, "detect_max_side": settings.detect_max_side},
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "engine": summary(raw),
        "intake_and_engine": summary(intake),
        "http": summary(http_times),
    }
    result["ratio_p50_http_to_engine"] = result["http"]["p50_ms"] / result["engine"]["p50_ms"]
    result["ratio_p50_http_to_intake_and_engine"] = (
        result["http"]["p50_ms"] / result["intake_and_engine"]["p50_ms"])
    result["ratio_p95_http_to_engine"] = result["http"]["p95_ms"] / result["engine"]["p95_ms"]
    overheads = sorted(v["http_ms"] - v["engine_ms"] for v in per_image.values())
    result["overhead_per_request_ms"] = {"p50": percentile(overheads, 50),
                                         "p95": percentile(overheads, 95)}
    result["per_image"] = per_image
    rows = [[name, result[key]["p50_ms"], result[key]["p95_ms"], result[key]["mean_ms"]]
            for name, key in (("engine detect_faces", "engine"),
                              ("decode_image + engine", "intake_and_engine"),
                              ("HTTP POST /v1/faces/detect", "http"))]
    print(table(["path", "p50 ms", "p95 ms", "mean ms"], rows))
    print(f"p50 ratio HTTP / engine: {result['ratio_p50_http_to_engine']:.3f}; "
          f"HTTP / (decode + engine): {result['ratio_p50_http_to_intake_and_engine']:.3f}; "
          f"p95 ratio HTTP / engine: {result['ratio_p95_http_to_engine']:.3f}")
    print(f"overhead per request (HTTP - engine, per image best of {args.repeat}): "
          f"p50 {result['overhead_per_request_ms']['p50']:.1f} ms, "
          f"p95 {result['overhead_per_request_ms']['p95']:.1f} ms; statuses {result['statuses']}")
    print(f"wrote {write_json('latency.json', result)}")


if __name__ == "__main__":
    main()
