"""HTTP overhead of POST /v1/faces/detect against the raw local engine.

Run:  .venv/bin/python -m bench.latency            (about 3 minutes on 2 CPUs)

For every image of the accuracy bench (LABELS.csv and PAIRS.csv files) it times, in
turn: the engine alone (`LocalEngine.detect_faces` on the decoded image, DEFAULT
attributes), intake + engine in-process (`decode_image` + detect), and the HTTP endpoint
on a gunicorn it starts itself (deploy/gunicorn.conf.py, one sync worker, a free port,
a temporary data dir, a fresh admin key from `faceapi keys bootstrap`), multipart upload,
one new connection per request. Prints p50/p95 and the ratios; writes
bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.domain.faces import Attributes

if __package__ in (None, ""):  # run as a script (`python bench/latency.py`, make bench)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    REPO,
    environment,
    faces_dir,
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

    def __init__(self, workdir: Path) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds per image")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    args = parser.parse_args()

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
