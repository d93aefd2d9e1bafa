"""FACEAPI_DETECT_THREADS=2 (the default): compare_faces detects its target on a helper
thread while the source is detected, with the same answers as one thread."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local import engine as engine_module
from faceapi.adapters.engines.local.parallel import PairRunner, thread_models
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, ConfigError, Settings
from faceapi.domain.errors import NoFaceInSource
from faceapi.domain.faces import Attributes
from faceapi.domain.images import DecodedImage

FACES = Path(__file__).resolve().parent.parent / "data" / "faces"
DATASET = FACES / "deepface" / "tests" / "unit" / "dataset"
GROUP = FACES / "face-api.js" / "examples" / "images" / "bbt3.jpg"
NO_FACE = FACES / "mtcnn" / "tests" / "images" / "no-faces.jpg"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(env="test", image_formats=KNOWN_FORMATS,
                    data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def engines(settings: Settings) -> dict[int, LocalEngine]:
    return {n: LocalEngine(settings.with_overrides(detect_threads=n)) for n in (1, 2)}


def image(path: Path, settings: Settings) -> DecodedImage:
    return decode_image(path.read_bytes(), settings)


def _resident_mb() -> float:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _upscaled(path: Path, side: int, settings: Settings) -> DecodedImage:
    with PILImage.open(path) as img:
        rgb = img.convert("RGB")
    scale = side / max(rgb.size)
    out = io.BytesIO()
    rgb.resize((round(rgb.width * scale), round(rgb.height * scale))).save(out, "JPEG")
    return decode_image(out.getvalue(), settings)


def test_two_threads_is_the_default_and_three_stops_the_start() -> None:
    assert Settings().detect_threads == 2
    assert Settings.from_env({"FACEAPI_DETECT_THREADS": "1"}).detect_threads == 1
    for value in ("0", "3"):
        with pytest.raises(ConfigError, match="FACEAPI_DETECT_THREADS"):
            Settings.from_env({"FACEAPI_DETECT_THREADS": value})


@pytest.mark.parametrize(("source", "target"), [
    (DATASET / "img5.jpg", DATASET / "img6.jpg"),
    (DATASET / "img11.jpg", GROUP),
    (GROUP, DATASET / "img12.jpg"),
    (DATASET / "img5.jpg", NO_FACE),
])
def test_the_comparison_is_the_same_with_one_or_two_threads(
        engines: dict[int, LocalEngine], settings: Settings, source: Path,
        target: Path) -> None:
    a, b = image(source, settings), image(target, settings)
    one = engines[1].compare_faces(a, b, 80.0)
    two = engines[2].compare_faces(a, b, 80.0)
    assert one == two  # every box, landmark, quality figure and similarity


def test_the_target_is_detected_on_the_helper_thread_with_its_own_detector(
        engines: dict[int, LocalEngine], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, Any]] = []
    real = engine_module.find_faces

    def spy(pixels: Any, models: Any, **kwargs: Any) -> Any:
        seen.append((threading.current_thread().name, models.hog))
        return real(pixels, models, **kwargs)

    monkeypatch.setattr(engine_module, "find_faces", spy)
    engine = engines[2]
    engine.compare_faces(image(DATASET / "img11.jpg", settings),
                         image(DATASET / "img12.jpg", settings), 80.0)
    # Which thread reaches find_faces first is a race: sort the calling thread first.
    (main_name, main_hog), (helper_name, helper_hog) = sorted(
        seen, key=lambda call: call[0] != threading.current_thread().name)
    assert main_name == threading.current_thread().name
    assert helper_name.startswith("faceapi-detect")
    # dlib's detector keeps its feature pyramid in the instance: never shared by threads.
    assert helper_hog is not main_hog
    assert main_hog is engine._models.hog


def test_images_of_very_different_sizes_are_detected_in_turn_each_split_over_both_cores(
        engines: dict[int, LocalEngine], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 330x512 selfie against a photo at the detection size (0.09 of its area): side
    by side, one core would idle while the other scans the large photo alone; in turn,
    each scan is split over both (hog_split.py). The answer is the same."""
    engine = engines[2]
    split = engine._models.split
    assert split is not None
    scans: list[tuple[str, tuple[int, ...]]] = []
    real = split.run

    def spy(pixels: Any, upsample: int, adjust_threshold: float) -> Any:
        scans.append((threading.current_thread().name, pixels.shape))
        return real(pixels, upsample, adjust_threshold)

    monkeypatch.setattr(split, "run", spy)
    monkeypatch.setattr(engine._pairs, "pair", lambda *args: pytest.fail("paired"))
    selfie = image(DATASET / "img5.jpg", settings)
    photo = _upscaled(DATASET / "img6.jpg", settings.detect_max_side, settings)
    for source, target in ((selfie, photo), (photo, selfie)):
        scans.clear()
        comparison = engine.compare_faces(source, target, 80.0)
        assert [name for name, _ in scans] == [threading.current_thread().name] * 2
        assert [shape for _, shape in scans] == [source.pixels.shape, target.pixels.shape]
        assert comparison == engines[1].compare_faces(source, target, 80.0)


def test_images_of_similar_sizes_are_still_detected_side_by_side(
        engines: dict[int, LocalEngine], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """img11 (600x800) against img6 (750x1050): 0.61 of its area, where side by side is
    faster (docs/engines.md, "Two images of very different sizes")."""
    engine = engines[2]
    paired: list[bool] = []
    real = engine._pairs.pair

    def spy(*args: Any) -> Any:
        paired.append(True)
        return real(*args)

    monkeypatch.setattr(engine._pairs, "pair", spy)
    engine.compare_faces(image(DATASET / "img11.jpg", settings),
                         image(DATASET / "img6.jpg", settings), 80.0)
    assert paired == [True]


def test_the_target_is_embedded_on_the_helper_thread_too(
        engines: dict[int, LocalEngine], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The target's chips and descriptors follow its detection on the helper, so they
    overlap the source's instead of running after them in the calling thread."""
    engine = engines[2]
    embedded: list[tuple[str, int]] = []
    real = engine._embedded_all

    def spy(pixels: Any, faces: list[Any]) -> Any:
        embedded.append((threading.current_thread().name, len(faces)))
        return real(pixels, faces)

    monkeypatch.setattr(engine, "_embedded_all", spy)
    comparison = engine.compare_faces(image(DATASET / "img11.jpg", settings),
                                      image(GROUP, settings), 80.0)
    faces_by_thread = dict(embedded)
    target_faces = len(comparison.face_matches) + len(comparison.unmatched_faces)
    assert len(embedded) == 2
    assert target_faces > 1
    assert faces_by_thread.pop(threading.current_thread().name) == 1  # the source's largest
    ((helper, count),) = faces_by_thread.items()
    assert helper.startswith("faceapi-detect")
    assert count == target_faces


def test_a_source_without_a_face_is_reported_as_before(
        engines: dict[int, LocalEngine], settings: Settings) -> None:
    with pytest.raises(NoFaceInSource):
        engines[2].compare_faces(image(NO_FACE, settings), image(DATASET / "img5.jpg", settings),
                                 80.0)


def where(_: str) -> str:
    return threading.current_thread().name


def test_the_source_error_comes_first_even_when_the_target_fails_too() -> None:
    runner = PairRunner(2)

    def fail(name: str) -> str:
        raise ValueError(name)

    with pytest.raises(ValueError, match="source"):
        runner.pair(fail, fail, "source", "target", fail)
    # The helper's slot was given back: the next pair runs in parallel again.
    first, second = runner.pair(where, where, "a", "b", where)
    assert first == threading.current_thread().name
    assert second().startswith("faceapi-detect")


def test_a_busy_helper_makes_the_second_call_run_in_the_caller() -> None:
    runner = PairRunner(2)
    started, release = threading.Event(), threading.Event()

    def slow(_: str) -> str:
        started.set()
        release.wait(10)
        return threading.current_thread().name

    blocker = threading.Thread(target=lambda: runner.pair(str.upper, slow, "x", "y", slow))
    blocker.start()
    assert started.wait(10)
    try:
        _, second = runner.pair(where, where, "a", "b", where)
        # Not queued behind the other request's work: computed here, on demand.
        assert second() == threading.current_thread().name
    finally:
        release.set()
        blocker.join(10)


def test_one_thread_never_starts_a_helper() -> None:
    runner = PairRunner(1)
    first, second = runner.pair(lambda s: threading.current_thread().name,
                                lambda s: "helper", "a", "b", where)
    assert first == threading.current_thread().name
    assert second() == threading.current_thread().name


def test_hog_detection_lets_other_python_threads_run(settings: Settings) -> None:
    """The premise: dlib's HOG scan releases the GIL (a Python thread keeps running
    during one long detector call); without it, a helper thread would gain nothing."""
    models = thread_models(LocalEngine(settings)._models)
    pixels = np.ascontiguousarray(image(GROUP, settings).pixels)
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        before = ticks
        start = time.perf_counter()
        models.hog.run(pixels, 1, 0.0)  # one C++ call of a few hundred ms
        elapsed = time.perf_counter() - start
        during = ticks - before
    finally:
        stop.set()
        spinner.join()
    assert elapsed > 0.05
    # With the GIL held for the whole call the spinner would get at most a switch or
    # two; released, it counts on (hundreds of thousands per second here).
    assert during > 1000


def test_a_forked_process_makes_its_own_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn forks workers from a master that built the engine: threads do not survive
    a fork, so each process must start its own helper rather than queue on a dead one."""
    runner = PairRunner(2)
    _, second = runner.pair(where, where, "a", "b", where)
    parent_helper = second()
    monkeypatch.setattr("faceapi.adapters.engines.local.parallel.os.getpid", lambda: -1)
    state_before = runner._state
    _, second = runner.pair(where, where, "a", "b", where)
    assert second().startswith("faceapi-detect")
    assert runner._state is not state_before
    assert parent_helper.startswith("faceapi-detect")


def test_freed_memory_is_given_back_only_after_an_image_larger_than_the_detection_size(
        engines: dict[int, LocalEngine], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A large photo leaves buffers of sizes the next request would add to rather than
    reuse (bench/decode_budget.py: crafted 6300x6300 inputs peaked 60 MB higher one after
    another): detect, embed and compare give them back after such an image, and keep
    them after images at the detection size, for the next scan to reuse."""
    releases: list[str] = []
    monkeypatch.setattr(engine_module, "release_freed_memory",
                        lambda: releases.append(threading.current_thread().name))
    engine = engines[2]
    side = settings.detect_max_side
    at_size = _upscaled(DATASET / "img6.jpg", side, settings)
    larger = _upscaled(DATASET / "img6.jpg", side + 400, settings)
    engine.detect_faces(at_size, Attributes.DEFAULT)
    engine.embed_faces(at_size)
    engine.compare_faces(at_size, at_size, 80.0)
    assert releases == []
    engine.detect_faces(larger, Attributes.DEFAULT)
    assert len(releases) == 1
    engine.embed_faces(larger)
    assert len(releases) == 2
    releases.clear()
    engine.compare_faces(at_size, larger, 80.0)
    assert releases
    assert set(releases) == {threading.current_thread().name}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmRSS")
def test_repeated_compares_reuse_the_memory_the_last_one_freed(
        engines: dict[int, LocalEngine], settings: Settings) -> None:
    """Nothing trims glibc's arenas after a detection (re-faulting the freed pyramids
    cost 3-9% of a compare, docs/engines.md): the next compare reuses them. So memory
    levels off at one compare's working set, at the largest size detection runs at
    (FACEAPI_DETECT_MAX_SIDE), instead of growing with every request."""
    side = settings.detect_max_side
    pair = (_upscaled(DATASET / "img5.jpg", side, settings),
            _upscaled(DATASET / "img6.jpg", side, settings))
    engine = engines[2]
    for _ in range(2):
        engine.compare_faces(*pair, 80.0)
    settled = _resident_mb()
    for _ in range(8):
        engine.compare_faces(*pair, 80.0)
    assert _resident_mb() - settled < 16


@pytest.mark.slow
def test_a_worker_whose_helper_has_worked_still_stops_promptly(tmp_path: Path) -> None:
    """Under gunicorn as deployed (preloaded app, forked worker): after a compare has
    started the worker's helper thread, a graceful stop still ends the worker quickly
    (an idle pool thread must not hold the interpreter's exit)."""
    import os

    from tests.integration.test_onnx_gunicorn import compare, start_server

    server, url, log, key = start_server(tmp_path, 1)
    assert key is not None
    try:
        (worker,) = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        before = len(list(Path(f"/proc/{worker}/task").iterdir()))
        assert compare(url, key)[0] == 200
        # The compare started threads in the worker (the helper among them; which one it
        # is, is checked in-process above).
        assert len(list(Path(f"/proc/{worker}/task").iterdir())) > before
        server.terminate()
        started = time.monotonic()
        server.wait(timeout=40)
        assert time.monotonic() - started < 20, log.read_text()[-2000:]
        left = Path(f"/proc/{worker}").exists()
        if left:  # not ours to leave behind, whatever the verdict
            os.kill(int(worker), 9)
        assert not left
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
