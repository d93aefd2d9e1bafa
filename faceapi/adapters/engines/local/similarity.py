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

With L = -log10 FMR(d) (the "number of nines" of false-match protection):
    S = 20 * L                                   for log10(2) <= L <= 4.5
    S = 100 - 10 * exp(-(20 * L - 90) / 10)      for L > 4.5    (approaches 100)
    S = 20 * l0 * exp((L - l0) / l0), l0=log10 2 for L < log10(2) (approaches 0)
so S 20 = FMR 1e-1, S 40 = 1e-2, S 60 = 1e-3, S 80 = 1e-4, S 90 = 10^-4.5. Both ends
are compressed with the same slope at the joins, so S is strictly monotone and smooth
(in floating point, values closer than about 1e-13 to 0 or 100 can tie; with the
shipped calibration S stays below 99.9 for every distance >= 0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
POINTS_PER_DECADE = 20.0
KNEE = 90.0
LOW_NINES = math.log10(2.0)  # FMR 0.5
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
    if nines < LOW_NINES:
        low = POINTS_PER_DECADE * LOW_NINES
        return low * math.exp(max((nines - LOW_NINES) / LOW_NINES, -700.0))
    s = POINTS_PER_DECADE * nines
    if s <= KNEE:
        return s
    return 100.0 - (100.0 - KNEE) * math.exp(-(s - KNEE) / (100.0 - KNEE))


def similarity_to_nines(similarity: float) -> float:
    """Inverse of nines_to_similarity for 0 < similarity < 100."""
    low = POINTS_PER_DECADE * LOW_NINES
    if similarity < low:
        return LOW_NINES + LOW_NINES * math.log(similarity / low)
    if similarity <= KNEE:
        return similarity / POINTS_PER_DECADE
    s = KNEE - (100.0 - KNEE) * math.log((100.0 - similarity) / (100.0 - KNEE))
    return s / POINTS_PER_DECADE


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


def calibration_document(model: str, impostor_distances: list[float],
                         genuine_distances: list[float], source: str) -> dict[str, Any]:
    """The content of calibration.json: the curve plus the measured table."""
    doc: dict[str, Any] = {
        "model": model,
        "source": source,
        "impostor_pairs": len(impostor_distances),
        "genuine_pairs": len(genuine_distances),
        "map": ("log10 FMR(d) piecewise linear through impostor-distance quantiles; normal "
                "tail below the first anchor, linear above the last; L = -log10 FMR; "
                "S = 20 L for 0.5 >= FMR >= 10^-4.5, smoothly compressed toward 0 and 100"),
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
        {"similarity": s, "distance": round(fitted.distance_at(s), 4),
         "model_fmr": float(f"{10.0 ** -similarity_to_nines(s):.3g}"),
         "measured_fmr": round(sum(1 for d in ds if fitted.similarity(d) >= s) / n, 6),
         "fnmr": round(sum(1 for g in gs if fitted.similarity(g) < s) / len(gs), 4) if gs else None}
        for s in (20, 40, 50, 60, 70, 80, 90, 95, 99)
    ]
    return doc
