"""The pure arithmetic of bench/load.py: what its tables say must follow from the samples."""

from __future__ import annotations

import math

from bench.common import percentile
from bench.load import Sample, floor_growth, summarize


def _sample(route: str, status: int, seconds: float, code: str = "") -> Sample:
    return Sample(route, status, code, seconds, 0.0)


def test_percentile_interpolates_between_ranks_and_is_nan_without_values() -> None:
    values = [0.4, 0.1, 0.3, 0.2]
    assert percentile(values, 0) == 0.1
    assert percentile(values, 100) == 0.4
    assert math.isclose(percentile(values, 50), 0.25)
    assert math.isclose(percentile(values, 95), 0.385)
    assert math.isnan(percentile([], 50))


def test_summary_counts_5xx_and_other_refusals_apart_and_times_only_answers() -> None:
    samples = [_sample("verify", 200, 0.1), _sample("verify", 200, 0.3),
               _sample("verify", 423, 0.02, "locked"),
               _sample("detect", 415, 0.01, "unsupported_image_format"),
               _sample("detect", 503, 0.5, "store_unavailable"),
               _sample("detect", 0, 0.0, "ConnectionRefusedError")]
    summary = summarize(samples, wall=2.0)
    assert summary["requests"] == 6
    assert summary["per_s"] == 3.0
    assert summary["status_5xx"] == 1
    assert summary["connection_errors"] == 1
    assert summary["non_2xx"] == 4
    verify = summary["routes"]["verify"]
    assert verify["non_2xx"] == {"423 locked": 1}
    assert math.isclose(verify["p50_ms"], 100.0)
    detect = summary["routes"]["detect"]
    # A failed connection has no latency: it is counted, not timed.
    assert math.isclose(detect["p99_ms"], percentile([0.01, 0.5], 99) * 1000)
    assert detect["non_2xx"] == {"0 ConnectionRefusedError": 1,
                                 "415 unsupported_image_format": 1, "503 store_unavailable": 1}


def test_floor_growth_follows_the_lowest_samples_not_the_spikes() -> None:
    # Under load the samples swing with the images in flight; a leak lifts the floor.
    steady = [(t, 300_000 + (60_000 if t % 20 else 0)) for t in range(120, 600, 10)]
    assert floor_growth(steady, since_s=120) == 0.0
    leaking = [(t, v + (t - 120) * 100) for t, v in steady]
    growth = floor_growth(leaking, since_s=120)
    assert growth is not None
    assert growth > 0.1
    # Too short after the warm-up to compare a first and a last minute: no number.
    assert floor_growth(steady[:10], since_s=120) is None
