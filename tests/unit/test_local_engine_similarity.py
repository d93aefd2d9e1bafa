"""The local engine's similarity calibration math (pure Python, no dlib)."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import pytest

from faceapi.adapters.engines.local.similarity import (
    ANCHOR_NINES,
    LOW_NINES,
    SCALE_VERSION,
    SimilarityMap,
    calibration_document,
    fit_curve,
    nines_to_similarity,
    similarity_to_nines,
)


def synthetic_impostors(n: int = 5000, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0.85, 0.08) for _ in range(n)]


def test_the_scale_keeps_rekognitions_reading_of_80_and_99() -> None:
    # 80, the CompareFaces / SearchFacesByImage default, is FMR 1e-3; 99, the
    # strictest setting, is FMR 1e-5; about 30 points per decade between 20 and 80.
    assert nines_to_similarity(3.0) == pytest.approx(80.0)
    assert nines_to_similarity(5.0) == pytest.approx(99.0)
    assert nines_to_similarity(2.0) == pytest.approx(50.0, abs=0.1)
    assert nines_to_similarity(1.0) == pytest.approx(20.0, abs=0.1)
    assert nines_to_similarity(4.0) > 95.0


def test_the_scale_is_continuous_smooth_and_strictly_increasing_across_its_joins() -> None:
    grid = [i / 1000.0 for i in range(-3000, 12001)]
    values = [nines_to_similarity(x) for x in grid]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert all(0.0 < v < 100.0 for v in values)
    for join in (LOW_NINES, ANCHOR_NINES):
        below, above = nines_to_similarity(join - 1e-9), nines_to_similarity(join + 1e-9)
        assert above - below == pytest.approx(0.0, abs=1e-6)
        # Smooth: the slope is the same on both sides of the join.
        h = 1e-6
        left = (nines_to_similarity(join - h) - nines_to_similarity(join - 2 * h)) / h
        right = (nines_to_similarity(join + 2 * h) - nines_to_similarity(join + h)) / h
        assert left == pytest.approx(right, rel=1e-4)


@pytest.mark.parametrize("similarity", [1.0, 6.0, 20.0, 50.0, 79.5, 80.0, 90.0, 95.0, 99.0,
                                        99.9])
def test_similarity_to_nines_inverts_the_scale(similarity: float) -> None:
    assert nines_to_similarity(similarity_to_nines(similarity)) == pytest.approx(similarity)


def test_a_calibration_made_for_another_scale_version_is_refused() -> None:
    doc = calibration_document("test", synthetic_impostors(), [0.4], "synthetic")
    assert doc["scale"]["version"] == SCALE_VERSION
    old = {k: v for k, v in doc.items() if k != "scale"}  # version 1 files had no scale
    with pytest.raises(ValueError, match="scale 1"):
        SimilarityMap.from_document(old)


def test_a_fitted_curve_passes_through_the_measured_false_match_rates() -> None:
    impostors = synthetic_impostors()
    doc = calibration_document("test", impostors, [0.3, 0.4, 0.5], "synthetic")
    for row in doc["table"]:
        if row["target_fmr"] >= 0.005:
            assert row["model_fmr"] == pytest.approx(row["measured_fmr"], rel=0.1, abs=2e-4)
    curve = SimilarityMap.from_document(doc)
    assert curve.fmr(curve.distance_at(80.0)) == pytest.approx(1e-3, rel=1e-3)
    assert curve.fmr(curve.distance_at(99.0)) == pytest.approx(1e-5, rel=1e-3)


def test_a_fitted_curve_gives_a_strictly_decreasing_similarity() -> None:
    curve = SimilarityMap.from_document(
        calibration_document("test", synthetic_impostors(), [0.4], "synthetic"))
    distances = [i / 500.0 for i in range(0, 1001)]
    values = [curve.similarity(d) for d in distances]
    # Strict in exact arithmetic; doubles tie only within 1e-12 of the ends.
    inner = [v for v in values if 1e-12 < v < 100.0 - 1e-12]
    assert len(inner) > 900
    assert all(a > b for a, b in itertools.pairwise(inner))
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[0] > 99.0
    assert values[-1] < 1.0


def test_too_few_impostor_pairs_cannot_be_calibrated() -> None:
    with pytest.raises(ValueError, match="too few"):
        fit_curve([0.8, 0.9, 1.0, 1.1])


def test_the_calibration_math_does_not_load_dlib() -> None:
    probe = ("import sys, faceapi.adapters.engines.local.similarity; "
             "print('dlib' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
