"""A HOG scan split over two threads (hog_split.py) gives dlib's own answer: the same
boxes, scores and filter indices, in the same order, as one `run` of dlib's detector."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlib
import numpy as np
import pytest

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local import hog_split as split_module
from faceapi.adapters.engines.local.hog_split import SPLIT_LEVEL, HogSplitUnavailable, SplitHog
from faceapi.adapters.engines.local.parallel import PairRunner
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, Settings

FACES = Path(__file__).resolve().parent.parent / "data" / "faces"
IMAGES = sorted(p for p in FACES.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                and p.name not in ("corrupted.png", "empty.png", "truncated.jpg"))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(env="test", image_formats=KNOWN_FORMATS,
                    data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def runner() -> PairRunner:
    return PairRunner(2)


@pytest.fixture(scope="module")
def split(runner: PairRunner) -> SplitHog:
    return SplitHog(dlib.get_frontal_face_detector(), threading.Lock(), runner.helper)


def pixels(path: Path, settings: Settings) -> Any:
    return np.ascontiguousarray(decode_image(path.read_bytes(), settings).pixels)


def dlib_hits(image: Any, upsample: int, adjust: float) -> list[Any]:
    rects, scores, filters = dlib.get_frontal_face_detector().run(image, upsample, adjust)
    return [((r.left(), r.top(), r.right(), r.bottom()), float(s), int(f))
            for r, s, f in zip(rects, scores, filters, strict=True)]


def test_the_fixture_set_has_images_to_check() -> None:
    assert len(IMAGES) >= 15


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_the_split_scan_is_dlibs_scan_at_upsample_1(
        split: SplitHog, settings: Settings, path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    image = pixels(path, settings)
    used_halves: list[bool] = []
    real = split.merged

    def spy(*args: Any) -> Any:
        used_halves.append(True)
        return real(*args)

    monkeypatch.setattr(split, "merged", spy)
    # -0.5 keeps many weak windows, so the suppression between the halves is exercised.
    for adjust in (0.0, -0.5):
        assert split.run(image, 1, adjust) == dlib_hits(image, 1, adjust)
    if split.splits(split.upsampled(image, 1)):  # the halves ran, not the full scan
        assert used_halves == [True, True]


@pytest.mark.parametrize("upsample", [0, 2])
def test_other_upsamplings_are_dlibs_too(split: SplitHog, settings: Settings,
                                         upsample: int) -> None:
    for path in IMAGES[:4]:
        image = pixels(path, settings)
        if upsample == 2:  # keep the 4x image small
            image = np.ascontiguousarray(image[: image.shape[0] // 2, : image.shape[1] // 2])
        assert split.run(image, upsample, -0.3) == dlib_hits(image, upsample, -0.3)


def test_an_image_too_small_to_split_is_scanned_whole(split: SplitHog) -> None:
    tiny = np.zeros((70, 90, 3), dtype=np.uint8)
    assert not split.splits(tiny)
    assert split.levels(70, 90) <= SPLIT_LEVEL
    assert split.run(tiny, 0, 0.0) == dlib_hits(tiny, 0, 0.0) == []


def test_a_busy_helper_means_the_full_scan_on_the_calling_thread(
        settings: Settings) -> None:
    calls: list[str] = []

    @contextmanager
    def busy() -> Iterator[None]:
        yield None

    lonely = SplitHog(dlib.get_frontal_face_detector(), threading.Lock(), busy)
    real = lonely.full

    def full(*args: Any) -> Any:
        calls.append(threading.current_thread().name)
        return real(*args)

    lonely.full = full  # type: ignore[method-assign]
    image = pixels(IMAGES[0], settings)
    assert lonely.run(image, 1, 0.0) == dlib_hits(image, 1, 0.0)
    assert calls == [threading.current_thread().name]


def test_the_lower_half_runs_on_the_helper_thread(split: SplitHog, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    threads: dict[str, str] = {}
    for name in ("top", "bottom"):
        real = getattr(split, name)

        def spy(*args: Any, _real: Any = real, _name: str = name) -> Any:
            threads[_name] = threading.current_thread().name
            return _real(*args)

        monkeypatch.setattr(split, name, spy)
    split.run(pixels(IMAGES[0], settings), 1, 0.0)
    assert threads["top"] == threading.current_thread().name
    assert threads["bottom"].startswith("faceapi-detect")


def test_a_window_on_no_single_level_falls_back_to_the_full_scan(
        split: SplitHog, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # A rectangle off the 8-pixel corner lattice at every level cannot be placed.
    assert split._to_level0((0, 0, 1, 1)) is None
    monkeypatch.setattr(split, "_to_level0", lambda rect: None)
    image = pixels(IMAGES[0], settings)
    assert split.run(image, 1, -0.5) == dlib_hits(image, 1, -0.5)


def test_the_helper_is_free_again_after_a_failing_half(
        split: SplitHog, runner: PairRunner, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: Any) -> Any:
        raise RuntimeError("top half")

    monkeypatch.setattr(split, "top", fail)
    with pytest.raises(RuntimeError, match="top half"):
        split.run(pixels(IMAGES[0], settings), 1, 0.0)
    with runner.helper() as submit:
        assert submit is not None
        future: Future[Any] = submit(lambda: threading.current_thread().name)
        assert future.result().startswith("faceapi-detect")


def test_a_detector_of_another_layout_is_refused() -> None:
    with pytest.raises(HogSplitUnavailable):
        split_module._layout(split_module._pack_int(3) + b"\x01\x01")


def test_the_engine_splits_single_image_scans_only_with_two_detect_threads(
        settings: Settings) -> None:
    assert LocalEngine(settings)._models.split is not None
    assert LocalEngine(settings.with_overrides(detect_threads=1))._models.split is None


def test_detection_through_the_engine_is_the_same_split_or_not(settings: Settings) -> None:
    two = LocalEngine(settings)
    one = LocalEngine(settings.with_overrides(detect_threads=1))
    for path in IMAGES:
        image = decode_image(path.read_bytes(), settings)
        assert two.embed_faces(image)[0] == one.embed_faces(image)[0]


def test_std_lround_rounds_halves_away_from_zero() -> None:
    assert [split_module._lround(v) for v in (1.5, 2.5, -1.5, -2.5, 0.49, -0.49)] == [
        2, 3, -2, -3, 0, 0]


@pytest.mark.parametrize(("loadavg", "idle"), [
    ("0.52 0.61 0.70 1/213 4242\n", True),  # only the reading thread runs
    ("1.90 1.20 0.90 2/213 4242\n", False),  # another thread holds the second core
    ("3.10 2.00 1.00 5/213 4242\n", False),
    ("garbage\n", True),  # unreadable: a core counts as free
])
def test_a_core_counts_as_idle_from_the_kernels_runnable_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loadavg: str, idle: bool) -> None:
    from faceapi.adapters.engines.local import parallel

    path = tmp_path / "loadavg"
    path.write_text(loadavg, encoding="ascii")
    assert parallel.core_idle(str(path), lambda: 2) is idle
    assert parallel.core_idle(str(tmp_path / "missing"), lambda: 2) is True


@pytest.mark.parametrize(("cpu_max", "cap"), [
    ("max 100000\n", None),  # no limit: the affinity's cores
    ("150000 100000\n", 2),  # 1.5 CPUs rounds up to 2
    ("50000 100000\n", 1),
    ("nonsense\n", None),
])
def test_a_container_cpu_limit_caps_the_usable_cores(
        tmp_path: Path, cpu_max: str, cap: int | None) -> None:
    import os

    from faceapi.adapters.engines.local import parallel

    path = tmp_path / "cpu.max"
    path.write_text(cpu_max, encoding="ascii")
    affinity = len(os.sched_getaffinity(0))
    assert parallel.usable_cores(str(path)) == (affinity if cap is None else min(affinity, cap))
    assert parallel.usable_cores(str(tmp_path / "missing")) == affinity


def test_busy_cores_mean_the_full_scan_without_the_helper(
        runner: PairRunner, settings: Settings) -> None:
    busy = SplitHog(dlib.get_frontal_face_detector(), threading.Lock(), runner.helper,
                    lambda: False)
    halves: list[str] = []
    busy.top = lambda *a: halves.append("top") or []  # type: ignore[method-assign]
    image = pixels(IMAGES[0], settings)
    assert busy.run(image, 1, 0.0) == dlib_hits(image, 1, 0.0)
    assert halves == []


def test_windows_with_equal_scores_are_left_to_dlibs_own_scan(
        split: SplitHog, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """dlib sorts hits with an unstable sort, so between two windows of exactly the same
    score only its own scan says which one non-max suppression keeps."""
    tied = [((10, 10, 82, 82), 0.5, 0), ((18, 10, 90, 82), 0.5, 1)]
    assert split.merged(tied[:1], tied[1:], 0) is None
    assert split.merged(tied[:1], [], 0) == tied[:1]
    image = pixels(IMAGES[0], settings)
    monkeypatch.setattr(split, "top", lambda *a: tied[:1])
    monkeypatch.setattr(split, "bottom", lambda *a: tied[1:])
    assert split.run(image, 1, 0.0) == dlib_hits(image, 1, 0.0)


def test_no_writable_temporary_directory_means_one_thread_scans_not_a_failed_start(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(split_module.tempfile, "mkstemp", refuse)
    engine = LocalEngine(settings)
    assert engine._models.split is None
    image = decode_image(IMAGES[0].read_bytes(), settings)
    assert engine.embed_faces(image)[0] == LocalEngine(
        settings.with_overrides(detect_threads=1)).embed_faces(image)[0]
