"""The onnx descriptor runtime under gunicorn as deployed (deploy/gunicorn.conf.py: the
app preloaded in the master, two forked workers): the model is converted once into the
data directory, every worker answers, /v1/faces/compare gives the dlib runtime's
similarity on every request whichever worker serves it, and a graceful stop ends the
workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local.engine import MODELS_CACHE
from faceapi.adapters.images import decode_image
from faceapi.config import Settings

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"
SOURCE, TARGET = DATASET / "img5.jpg", DATASET / "img6.jpg"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compare(url: str, key: str) -> tuple[int, float]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, path in (("source", SOURCE), ("target", TARGET)):
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{name}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
        body += path.read_bytes() + b"\r\n"
    # Threshold 0: the pair is always a FaceMatch, so every answer carries its score.
    body += (f"--{boundary}\r\nContent-Disposition: form-data; "
             f"name=\"similarity_threshold\"\r\n\r\n0\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(
        f"{url}/v1/faces/compare", data=body, method="POST",
        headers={"Authorization": f"Bearer {key}",
                 "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
        return response.status, float(payload["FaceMatches"][0]["Similarity"])


def start_server(tmp_path: Path, workers: int, **settings: str) -> tuple[
        subprocess.Popen[bytes], str, Path, str | None]:
    """gunicorn -c deploy/gunicorn.conf.py on a fresh SQLite data dir, migrated, with the
    first admin key when `keys` is not "none"; waits until /readyz is 200 (which warms
    the worker's descriptor session). The process, its URL, its log and the key."""
    data_dir = tmp_path / "data"
    port = free_port()
    make_key = settings.pop("keys", "bootstrap") != "none"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update({"FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(data_dir),
                "FACEAPI_LOG_FORMAT": "json", "FACEAPI_BIND": f"127.0.0.1:{port}",
                "FACEAPI_WORKERS": str(workers), **settings})
    for command in (["db", "upgrade"], ["keys", "bootstrap"])[:2 if make_key else 1]:
        subprocess.run([str(BIN / "faceapi"), *command], env=env, cwd=REPO, check=True,
                       capture_output=True)
    key = (data_dir / "admin-key.txt").read_text().strip() if make_key else None
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as handle:
        server = subprocess.Popen([str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                                   "wsgi:app"], env=env, cwd=REPO, stdout=handle,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                    if response.status == 200:
                        return server, url, log, key
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
    except BaseException:
        server.kill()
        server.wait()
        raise


def test_two_preloaded_workers_convert_once_and_answer_as_dlib_does(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server, url, _, key = start_server(tmp_path, 2, FACEAPI_RATE_LIMIT_DEFAULT="10000/minute")
    assert key is not None
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda _: compare(url, key), range(12)))
        workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(workers) == 2
        # A graceful stop ends the workers well within gunicorn's 30 s graceful_timeout:
        # workers forked from a master that had imported onnxruntime hung at exit.
        server.terminate()
        started = time.monotonic()
        server.wait(timeout=25)
        assert time.monotonic() - started < 20
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert {status for status, _ in answers} == {200}
    similarities = {similarity for _, similarity in answers}
    assert len(similarities) == 1, similarities
    assert len(list((data_dir / MODELS_CACHE).glob("*.onnx"))) == 1
    assert not list((data_dir / MODELS_CACHE).glob("*.tmp"))
    # The dlib runtime, in this process, on the same images.
    settings = Settings(env="test", data_dir=tmp_path / "ref", descriptor_runtime="dlib")
    reference = LocalEngine(settings).compare_faces(
        decode_image(SOURCE.read_bytes(), settings), decode_image(TARGET.read_bytes(), settings),
        0.0)
    assert similarities.pop() == pytest.approx(reference.face_matches[0].similarity, abs=1e-3)


@pytest.mark.parametrize("runtime", ["onnx", "dlib"])
def test_a_graceful_stop_ends_the_workers_promptly(tmp_path: Path, runtime: str) -> None:
    # Workers forked from a master that had imported onnxruntime hung at exit (futex
    # wait during interpreter shutdown, either runtime) once they had served /readyz:
    # gunicorn's master gave up after graceful_timeout (30 s) and left them running.
    server, _, log, _ = start_server(tmp_path, 1, keys="none",
                                     FACEAPI_DESCRIPTOR_RUNTIME=runtime)
    try:
        workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        server.terminate()
        started = time.monotonic()
        server.wait(timeout=40)
        assert time.monotonic() - started < 20, log.read_text()[-2000:]
        left = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
        for pid in left:  # not ours to leave behind, whatever the verdict
            os.kill(int(pid), 9)
        assert not left
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
