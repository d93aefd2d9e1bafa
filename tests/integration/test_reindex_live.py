"""Moving a collection to a new template version with the real dlib engine, a real
gunicorn server and the real `faceapi` command, on a SQLite database in a temporary
data directory.

The new version is an honest one: FACEAPI_DESCRIPTOR_JITTERS=2 makes every descriptor
the mean of two jittered passes of the ResNet over the chip (on dlib), which changes the
template version (`.../jitter1` -> `.../jitter2`). A detector change alone (hog -> cnn)
changes the model version only, and the collection stays searchable."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from faceapi.bootstrap import bootstrap
from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.services.collections import CreateCollectionRequest
from faceapi.services.enroll import IndexFacesRequest
from faceapi.services.search import SearchRequest

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"
IMAGES = sorted(DATASET.glob("img*.jpg"))
COPIES = 4  # each image enrolled under this many subjects: enough faces to interrupt
BIN = Path(sys.executable).parent
OPERATOR = Actor.system("tests")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update({"FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(data_dir),
                "FACEAPI_LOG_FORMAT": "json", "FACEAPI_RATE_LIMIT_DEFAULT": "100000/minute"})
    env.update({f"FACEAPI_{k.upper()}": v for k, v in extra.items()})
    return env


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_env({k: v for k, v in env.items() if k.startswith("FACEAPI_")})


def faceapi(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "faceapi"), *args], env=env, cwd=REPO, check=True,
                          capture_output=True, text=True, timeout=600)


def enroll_everyone(env: dict[str, str]) -> int:
    """The collection, enrolled under the old settings through the use cases."""
    container = bootstrap(settings_of(env))
    try:
        use_cases = container.use_cases
        use_cases.create_collection(CreateCollectionRequest(
            "people", consent_required=False, policies=("login", "photo_tagging")),
            actor=OPERATOR)
        count = 0
        for image in IMAGES:
            for copy in range(COPIES):
                result = use_cases.index_faces(IndexFacesRequest(
                    collection_id="people", image=image.read_bytes(), max_faces=1,
                    subject_id=f"{image.stem}-{copy}"), actor=OPERATOR)
                count += len(result.face_records)
        return count
    finally:
        container.close()


def search(url: str, key: str, image: Path) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"policy": "photo_tagging", "image": {
        "bytes": base64.b64encode(image.read_bytes()).decode("ascii")}}).encode()
    request = urllib.request.Request(
        f"{url}/v1/collections/people/search", data=body, method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**env, "FACEAPI_BIND": f"127.0.0.1:{port}", "FACEAPI_WORKERS": "1",
           "FACEAPI_THREADS": "2"}
    with log.open("wb") as handle:
        server = subprocess.Popen([str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                                   "wsgi:app"], env=env, cwd=REPO, stdout=handle,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def template_versions(data_dir: Path, table: str = "faces",
                      column: str = "template_version") -> list[str]:
    engine = create_engine(f"sqlite:///{data_dir / 'faceapi.db'}")
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(f"SELECT {column} FROM {table}")).scalars())
    finally:
        engine.dispose()


def reindex_events(data_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    engine = create_engine(f"sqlite:///{data_dir / 'faceapi.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT outcome, scores FROM audit_events WHERE action = "
                                     "'collection.reindex' ORDER BY seq")).all()
    finally:
        engine.dispose()
    return [(outcome, json.loads(scores)) for outcome, scores in rows]


@pytest.fixture(scope="module")
def old_collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A data directory whose collection `people` was enrolled under hog and jitter 1;
    each test works on its own copy."""
    if not IMAGES:
        pytest.skip("tests/data face images are missing")
    data_dir = tmp_path_factory.mktemp("reindex") / "data"
    env = environment(data_dir, descriptor_jitters="1")
    faceapi(env, "db", "upgrade")
    faceapi(env, "keys", "bootstrap")
    return data_dir, enroll_everyone(env)


def copy_of(source: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "data"
    shutil.copytree(source, target)
    return target


def test_a_collection_enrolled_under_hog_is_searchable_under_cnn(
        old_collection: tuple[Path, int], tmp_path: Path) -> None:
    data_dir = copy_of(old_collection[0], tmp_path)
    container = bootstrap(settings_of(environment(data_dir, detector="cnn",
                                                  descriptor_jitters="1")))
    try:
        assert container.engine.model_version.split("/")[2] == "cnn"
        result = container.use_cases.search(
            SearchRequest(collection_id="people", image=IMAGES[0].read_bytes(),
                          policy="photo_tagging"), actor=Actor(role="app", key_id="a"))
    finally:
        container.close()
    found = {m.face.subject_id for m in result.face_matches}
    assert {f"{IMAGES[0].stem}-{c}" for c in range(COPIES)} <= found
    assert result.faces_not_migrated == 0


def test_reindex_to_a_new_template_version_while_searches_continue_resumes_after_a_kill(
        old_collection: tuple[Path, int], tmp_path: Path) -> None:
    data_dir = copy_of(old_collection[0], tmp_path)
    total = old_collection[1]
    assert total == len(IMAGES) * COPIES
    new = environment(data_dir, descriptor_jitters="2", descriptor_runtime="dlib")
    created = faceapi(new, "keys", "create", "--role", "app", "--name", "tagger",
                      "--owner", "system:tests")
    key = next(w for w in created.stdout.split() if w.startswith("fa_"))
    server, url = start_server(new, tmp_path / "server.log")
    answers: list[tuple[float, int, dict[str, Any]]] = []
    done = threading.Event()

    def keep_searching() -> None:
        while not done.is_set():
            status, body = search(url, key, IMAGES[0])
            answers.append((time.monotonic(), status, body))

    try:
        status, before = search(url, key, IMAGES[0])
        # The new model's probe meets no face of the old version: nothing matched, and
        # the answer says how many faces it could not look at.
        assert status == 200, before
        assert (before["FaceMatches"], before["FacesNotMigrated"]) == ([], total)
        searcher = threading.Thread(target=keep_searching)
        searcher.start()
        try:
            with subprocess.Popen([str(BIN / "faceapi"), "collections", "reindex", "people",
                                   "--batch-size", "2"], env=new, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) as run:
                assert run.stderr is not None
                for line in run.stderr:
                    if "faces re-embedded" in line and \
                            not line.split(": ")[1].startswith("0/"):
                        run.send_signal(signal.SIGKILL)  # mid-way, likely inside a batch
                        break
                run.wait(timeout=60)
            assert run.returncode == -signal.SIGKILL
            partial = template_versions(data_dir)
            assert 0 < sum(v.endswith("/jitter2") for v in partial) < total
            finished = faceapi(new, "collections", "reindex", "people", "--batch-size", "2")
        finally:
            done.set()
            searcher.join(timeout=180)
        status, after = search(url, key, IMAGES[0])
    finally:
        stop(server)
    assert {s for _, s, _ in answers} == {200}, [b for _, s, b in answers if s != 200][:3]
    assert len(answers) >= 2
    assert status == 200
    assert after["FacesNotMigrated"] == 0
    found = {m["Face"]["ExternalImageId"] for m in after["FaceMatches"]}
    assert {f"{IMAGES[0].stem}-{c}" for c in range(COPIES)} <= found
    assert "0 have no kept chip" in finished.stdout
    # Every face is at the new version, and was re-embedded exactly once over both runs.
    versions = template_versions(data_dir)
    assert len(versions) == total
    assert len(set(versions)) == 1
    assert versions[0].endswith("/align68/jitter2")
    [recorded] = template_versions(data_dir, "collections", "model_version")
    assert recorded.endswith("/hog/align68/jitter2")
    events = reindex_events(data_dir)
    assert [o for o, _ in events].count("started") == 2
    assert [o for o, _ in events][-1] == "finished"
    assert sum(s["reindexed_count"] for o, s in events if o == "batch") == total
    # The chain, with the events of the killed run, still verifies.
    faceapi(new, "audit", "verify")


@pytest.mark.parametrize("runtime", ["onnx", "dlib"])
def test_a_kept_chip_gives_the_very_descriptor_the_image_gave(runtime: str,
                                                              tmp_path: Path) -> None:
    # Reindexing to the same template version must change nothing: embed_chips on the
    # chips embed_faces hands back is embed_faces' own descriptor (the chip is the
    # network's exact input), on either runtime.
    from faceapi.adapters.engines.local import LocalEngine
    from faceapi.adapters.images import decode_image

    if not IMAGES:
        pytest.skip("tests/data face images are missing")
    settings = Settings(env="test", data_dir=tmp_path, descriptor_runtime=runtime)
    engine = LocalEngine(settings)
    for path in IMAGES[:3]:
        _, faces = engine.embed_faces(decode_image(path.read_bytes(), settings))
        assert faces
        chips = [f.chip for f in faces]
        assert all(c is not None and len(c) == 150 * 150 * 3 for c in chips)
        again = engine.embed_chips([c for c in chips if c is not None])
        assert again == [f.embedding for f in faces]
