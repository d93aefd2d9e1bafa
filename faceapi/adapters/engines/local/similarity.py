"""Similarity 0-100 as a calibrated, strictly decreasing map of descriptor distance.

The map goes through the false-match rate (FMR): the share of different-identity pairs
whose euclidean descriptor distance is at most d. bench/accuracy.py measures the
distance of every different-identity pair of the shared data set and stores anchors
(d_q, log10 q): the empirical q-quantile of those distances for q = 0.5 ... 1e-3 (only
levels with at least MIN_PAIRS_PER_ANCHOR impostor pairs below them).

    log10 FMR(d) is piecewise linear through the anchors. Below the first anchor
    (FMR under about 1e-3, where the data set has too few impostor pairs to measure)
    it continues as a normal tail: FMR(d) = Phi(z_a + (d - d_a) / sigma), z_a =
    Phi^-1(FMR at the first anchor), sigma from a probit fit (least squares of d_q on
    Phi^-1(q)) over the anchors with q <= 0.01. This is the usual Gaussian impostor
    model, fitted on the measured tail and continuous with it; it is an extrapolation.
    Above the last anchor (FMR 0.5) it continues with the last segment's slope.

With L = -log10 FMR(d) (the "number of nines" of false-match protection), scale
version 2 keeps Rekognition's reading of the numbers (80 is the CompareFaces and
SearchFacesByImage default, higher is stricter, 99 the strictest setting):
    S = 100 - 20 * 20 ** (-(L - 3) / 2)          for L >= 3     (approaches 100)
    S = 80 - K * (3 - L),  K = 10 ln 20 = 29.96  for L20 <= L <= 3
    S = 20 * exp(K * (L - L20) / 20)             for L < L20    (approaches 0)
with L20 = 3 - 60 / K (FMR about 0.1). So S 80 = FMR 1e-3 (the first measured anchor
of the shared set, where its measured FMR is at most 1e-3), S 99 = FMR 1e-5, S 50 is
about FMR 1e-2 and S 20 about 1e-1. 99 is the strictest point the engine offers
honestly: the normal tail extrapolates two decades past the last measured anchor
(1e-3) and no further; stricter points would mostly separate near-copies of one photo
(descriptor noise: the JPEG/PNG/GIF/WebP copies in tests/data lie within d 0.14,
similarity 99.5+, and d 0.2 is 99.0), not people. The joins have equal slopes, so S
is strictly monotone and smooth, always in (0, 100) (in floating point, values closer
than about 1e-13 to 0 or 100 can tie). Version 1 (S = 20 L, so 60 = FMR 1e-3) is gone;
calibration.json records the scale version its tables were computed with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
SCALE_VERSION = 2
ANCHOR_NINES = 3.0  # FMR 1e-3 ...
ANCHOR_SIMILARITY = 80.0  # ... is Rekognition's default threshold
TOP_NINES = 5.0  # FMR 1e-5 ...
TOP_SIMILARITY = 99.0  # ... is the strictest honest setting
# The upper branch 100 - S = 20 * 20 ** (-(L - 3) / 2) has slope K at L = 3; the middle
# branch keeps that slope so the join is smooth.
_UPPER_BASE = math.log(100.0 - ANCHOR_SIMILARITY) / (TOP_NINES - ANCHOR_NINES)  # ln 20 / 2
SLOPE = (100.0 - ANCHOR_SIMILARITY) * _UPPER_BASE  # 10 ln 20, points per decade
LOW_SIMILARITY = 20.0
LOW_NINES = ANCHOR_NINES - (ANCHOR_SIMILARITY - LOW_SIMILARITY) / SLOPE  # about FMR 0.1
SCALE_DESCRIPTION = (
    "calibrated on false-match rate (scale version 2, Rekognition-like): 80 = FMR 1e-3 "
    "(measured), 50 about FMR 1e-2, 99 = FMR 1e-5 (extrapolated); higher is stricter "
    "(docs/accuracy.md)")
MIN_PAIRS_PER_ANCHOR = 5
ANCHOR_LEVELS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001,
                 0.0005, 0.0002, 0.0001)
TAIL_FIT_MAX_FMR = 0.01
_LN10 = math.log(10.0)


def _log_normal_cdf(z: float) -> float:
    """ln Phi(z), accurate far into the lower tail where Phi underflows."""
    if z > -30.0:
        return math.log(max(0.5 * math.erfc(-z / math.sqrt(2.0)), 1e-300))
    # Asymptotic series: Phi(z) ~ phi(z) / |z| * (1 - 1/z^2 + 3/z^4).
    return (-0.5 * z * z - math.log(-z) - 0.5 * math.log(2.0 * math.pi)
            + math.log1p(-1.0 / (z * z) + 3.0 / z ** 4))


def nines_to_similarity(nines: float) -> float:
    """L = -log10 FMR -> similarity, strictly increasing, in (0, 100)."""
    if nines >= ANCHOR_NINES:
        gap = (100.0 - ANCHOR_SIMILARITY) * math.exp(-_UPPER_BASE * (nines - ANCHOR_NINES))
        return 100.0 - gap
    if nines >= LOW_NINES:
        return ANCHOR_SIMILARITY - SLOPE * (ANCHOR_NINES - nines)
    return LOW_SIMILARITY * math.exp(max(SLOPE * (nines - LOW_NINES) / LOW_SIMILARITY, -700.0))


def similarity_to_nines(similarity: float) -> float:
    """Inverse of nines_to_similarity for 0 < similarity < 100."""
    if similarity >= ANCHOR_SIMILARITY:
        return ANCHOR_NINES + math.log((100.0 - ANCHOR_SIMILARITY) / (100.0 - similarity)) \
            / _UPPER_BASE
    if similarity >= LOW_SIMILARITY:
        return ANCHOR_NINES - (ANCHOR_SIMILARITY - similarity) / SLOPE
    return LOW_NINES + LOW_SIMILARITY * math.log(similarity / LOW_SIMILARITY) / SLOPE


@dataclass(frozen=True)
class SimilarityMap:
    """The calibrated distance -> similarity map of one descriptor model."""

    anchors: tuple[tuple[float, float], ...]  # (distance, log10 FMR), both increasing
    sigma_low: float  # normal-tail scale below the first anchor (distance units)
    slope_high: float  # d(log10 FMR)/d(distance) above the last anchor
    model: str

    def log10_fmr(self, distance: float) -> float:
        """Modelled log10 false-match rate at a distance (strictly increasing)."""
        first_d, first_l = self.anchors[0]
        last_d, last_l = self.anchors[-1]
        if distance <= first_d:
            z_first = NormalDist().inv_cdf(math.pow(10.0, first_l))
            z = z_first + (distance - first_d) / self.sigma_low
            return _log_normal_cdf(z) / _LN10
        if distance >= last_d:
            return last_l + self.slope_high * (distance - last_d)
        for (d0, l0), (d1, l1) in zip(self.anchors, self.anchors[1:], strict=False):
            if distance <= d1:
                return l0 + (l1 - l0) * (distance - d0) / (d1 - d0)
        return last_l  # not reached: distance < last_d here

    def fmr(self, distance: float) -> float:
        return math.pow(10.0, self.log10_fmr(distance))

    def similarity(self, distance: float) -> float:
        """Similarity 0-100; strictly decreasing in distance."""
        return nines_to_similarity(-self.log10_fmr(distance))

    def distance_at(self, similarity: float) -> float:
        """The distance at which the similarity equals `similarity` (bisection)."""
        lo, hi = -10.0, 10.0
        for _ in range(200):
            mid = (lo + hi) / 2.0
            if self.similarity(mid) > similarity:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2.0

    @classmethod
    def from_document(cls, data: dict[str, Any]) -> SimilarityMap:
        # Tables and policies computed on another scale would be read with the wrong
        # meaning: refuse (the engine then reports not ready) rather than guess.
        scale = data.get("scale", {}).get("version", 1)
        if scale != SCALE_VERSION:
            raise ValueError(f"calibration made for similarity scale {scale}, "
                             f"this code uses scale {SCALE_VERSION}")
        curve = data["curve"]
        return cls(anchors=tuple((float(d), float(lg)) for d, lg in curve["anchors"]),
                   sigma_low=float(curve["sigma_low"]), slope_high=float(curve["slope_high"]),
                   model=str(data["model"]))

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> SimilarityMap:
        return cls.from_document(json.loads(path.read_text(encoding="utf-8")))


def fit_curve(impostor_distances: list[float]) -> dict[str, Any]:
    """Anchors and tail slopes from the impostor distances (see the module doc)."""
    ds = sorted(impostor_distances)
    n = len(ds)
    anchors: list[tuple[float, float]] = []
    for q in sorted(ANCHOR_LEVELS):
        k = round(q * n)  # impostor pairs at or below the anchor
        if k < MIN_PAIRS_PER_ANCHOR or k >= n:
            continue
        d = (ds[k - 1] + ds[k]) / 2.0  # FMR(d) = k / n exactly
        point = (d, math.log10(k / n))
        if anchors and (point[0] <= anchors[-1][0] or point[1] <= anchors[-1][1]):
            continue  # ties: keep the curve strictly increasing
        anchors.append(point)
    if len(anchors) < 3:
        raise ValueError("too few different-identity pairs to calibrate")
    tail = [(d, lg) for d, lg in anchors if lg <= math.log10(TAIL_FIT_MAX_FMR) + 1e-9]
    if len(tail) < 2:
        tail = anchors[:2]
    # Probit fit: d = mu + sigma * z with z = Phi^-1(q).
    zs = [NormalDist().inv_cdf(math.pow(10.0, lg)) for _, lg in tail]
    mz = sum(zs) / len(zs)
    md = sum(d for d, _ in tail) / len(tail)
    szz = sum((z - mz) ** 2 for z in zs)
    sigma_low = sum((z - mz) * (d - md) for z, (d, _) in zip(zs, tail, strict=True)) / szz
    (d0, l0), (d1, l1) = anchors[-2], anchors[-1]
    slope_high = (l1 - l0) / (d1 - d0)
    if sigma_low <= 0 or slope_high <= 0:
        raise ValueError("impostor distances do not give an increasing FMR curve")
    return {"anchors": [[round(d, 6), round(lg, 6)] for d, lg in anchors],
            "sigma_low": round(sigma_low, 6), "slope_high": round(slope_high, 6),
            "tail_fit_max_fmr": TAIL_FIT_MAX_FMR, "min_pairs_per_anchor": MIN_PAIRS_PER_ANCHOR}


MEANING_THRESHOLDS = (20, 40, *range(50, 100))
HISTOGRAM_BIN = 2.0  # similarity points per histogram bin (50 bins over 0-100)


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    out = {}
    for q in (5, 10, 25, 50, 75, 90, 95):
        pos = (len(ordered) - 1) * q / 100.0
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        out[f"p{q}"] = round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 2)
    return out


def _histogram(values: list[float]) -> list[int]:
    bins = round(100.0 / HISTOGRAM_BIN)
    counts = [0] * bins
    for v in values:
        counts[min(int(v / HISTOGRAM_BIN), bins - 1)] += 1
    return counts


def calibration_document(model: str, impostor_distances: list[float],
                         genuine_distances: list[float], source: str) -> dict[str, Any]:
    """The content of calibration.json: the curve plus the measured tables.

    `similarity_meaning` gives, for every threshold 50-99 (and 20, 40), the curve's FMR
    and the measured FMR and FNMR; `extrapolated` marks thresholds reached by fewer than
    MIN_PAIRS_PER_ANCHOR impostor pairs, where the FMR the threshold stands for comes
    from the curve's normal tail rather than from a count. `distributions` holds
    histograms of the similarity of the genuine and impostor pairs (the console's
    calibration plot is drawn from them)."""
    doc: dict[str, Any] = {
        "model": model,
        "source": source,
        "scale": {"version": SCALE_VERSION, "description": SCALE_DESCRIPTION,
                  "anchor": {"similarity": ANCHOR_SIMILARITY, "fmr": 10.0 ** -ANCHOR_NINES},
                  "top": {"similarity": TOP_SIMILARITY, "fmr": 10.0 ** -TOP_NINES}},
        "impostor_pairs": len(impostor_distances),
        "genuine_pairs": len(genuine_distances),
        "map": ("log10 FMR(d) piecewise linear through impostor-distance quantiles; normal "
                "tail below the first anchor, linear above the last; L = -log10 FMR; "
                "S = 100 - 20 * 20^(-(L - 3)/2) for L >= 3 (80 = FMR 1e-3, 99 = FMR 1e-5), "
                "linear with the same slope (29.96 points per decade) down to S 20, "
                "compressed toward 0 below"),
        "curve": fit_curve(impostor_distances),
    }
    fitted = SimilarityMap.from_document(doc)
    ds = sorted(impostor_distances)
    gs = sorted(genuine_distances)
    n = len(ds)
    table = []
    for fmr in ANCHOR_LEVELS:
        k = int(fmr * n)
        if k < 1:
            continue
        threshold = ds[k]  # pairs strictly closer than this match: at most k impostors
        table.append({
            "target_fmr": fmr,
            "distance": round(threshold, 4),
            "measured_fmr": round(sum(1 for d in ds if d < threshold) / n, 6),
            "model_fmr": float(f"{fitted.fmr(threshold):.3g}"),
            "similarity": round(fitted.similarity(threshold), 2),
            "fnmr": round(sum(1 for g in gs if g >= threshold) / len(gs), 4) if gs else None,
        })
    doc["table"] = table
    doc["similarity_meaning"] = [
        {"similarity": t, "distance": round(fitted.distance_at(t), 4),
         "model_fmr": float(f"{10.0 ** -similarity_to_nines(t):.3g}"),
         "measured_fmr": round(sum(1 for d in ds if fitted.similarity(d) >= t) / n, 6),
         "false_matches": sum(1 for d in ds if fitted.similarity(d) >= t),
         "fnmr": round(sum(1 for g in gs if fitted.similarity(g) < t) / len(gs), 4) if gs else None,
         # Fewer counted impostor pairs than an anchor needs: the FMR this threshold
         # stands for comes from the curve's normal tail, not from a count.
         "extrapolated": sum(1 for d in ds if fitted.similarity(d) >= t)
         < MIN_PAIRS_PER_ANCHOR}
        for t in MEANING_THRESHOLDS
    ]
    genuine_scores = [fitted.similarity(g) for g in gs]
    impostor_scores = [fitted.similarity(d) for d in ds]
    if genuine_scores:
        doc["genuine_similarity"] = _quantiles(genuine_scores)
    doc["impostor_similarity"] = _quantiles(impostor_scores)
    doc["distributions"] = {"bin_width": HISTOGRAM_BIN,
                            "genuine": _histogram(genuine_scores),
                            "impostor": _histogram(impostor_scores)}
    return doc
