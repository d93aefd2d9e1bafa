"""Similarity 0-100 as a calibrated, strictly decreasing map of descriptor distance.

The map goes through the false-match rate (FMR): the share of different-identity pairs
whose euclidean descriptor distance is at most d. bench/accuracy.py measures the
distances of every different-identity pair of the shared data set and fits the lower
tail of their distribution with a normal model, FMR(d) = Phi((d - mu) / sigma)
(a probit fit through the empirical tail quantiles; the table of measured FMRs is kept
beside it in calibration.json and compared in docs/accuracy.md). A smooth model is
needed because the measured FMR is a step function that is zero below the closest
impostor pair, and the map must stay strictly monotone everywhere.

With L = -log10 FMR(d) (the "number of nines" of false-match protection):
    S = 20 * L                              for L <= 4.5   (S <= 90)
    S = 100 - 10 * exp(-(20 * L - 90) / 10) for L >  4.5   (approaches 100)
so S 20 = FMR 1e-1, S 40 = 1e-2, S 60 = 1e-3, S 80 = 1e-4, S 90 = 10^-4.5; above 90
the scale compresses smoothly (same slope at 90) and never reaches 100.
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
_LOG10 = math.log(10.0)


def _log_normal_cdf(z: float) -> float:
    """ln Phi(z), accurate far into the lower tail where Phi underflows."""
    if z > -30.0:
        return math.log(max(0.5 * math.erfc(-z / math.sqrt(2.0)), 1e-300))
    # Asymptotic series: Phi(z) ~ phi(z) / |z| * (1 - 1/z^2 + 3/z^4).
    return (-0.5 * z * z - math.log(-z) - 0.5 * math.log(2.0 * math.pi)
            + math.log1p(-1.0 / (z * z) + 3.0 / z ** 4))


def nines_to_similarity(nines: float) -> float:
    """L = -log10 FMR -> similarity (strictly increasing)."""
    s = POINTS_PER_DECADE * nines
    if s <= KNEE:
        return max(0.0, s)
    return 100.0 - (100.0 - KNEE) * math.exp(-(s - KNEE) / (100.0 - KNEE))


def similarity_to_nines(similarity: float) -> float:
    """Inverse of nines_to_similarity, for similarity in [0, 100)."""
    if similarity <= KNEE:
        return similarity / POINTS_PER_DECADE
    s = KNEE - (100.0 - KNEE) * math.log((100.0 - similarity) / (100.0 - KNEE))
    return s / POINTS_PER_DECADE


@dataclass(frozen=True)
class SimilarityMap:
    """The calibrated distance -> similarity map of one descriptor model."""

    mu: float
    sigma: float
    model: str

    def fmr(self, distance: float) -> float:
        """Modelled false-match rate at a distance."""
        return math.exp(_log_normal_cdf((distance - self.mu) / self.sigma))

    def similarity(self, distance: float) -> float:
        """Similarity 0-100; strictly decreasing in distance."""
        nines = -_log_normal_cdf((distance - self.mu) / self.sigma) / _LOG10
        return min(100.0, max(0.0, nines_to_similarity(nines)))

    def distance_at(self, similarity: float) -> float:
        """The distance at which the similarity equals `similarity` (0 < s < 100)."""
        fmr = 10.0 ** -similarity_to_nines(similarity)
        return self.mu + self.sigma * NormalDist().inv_cdf(min(max(fmr, 1e-300), 1 - 1e-16))

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> SimilarityMap:
        data = json.loads(path.read_text(encoding="utf-8"))
        fit = data["tail_fit"]
        return cls(mu=float(fit["mu"]), sigma=float(fit["sigma"]), model=str(data["model"]))


def fit_tail(impostor_distances: list[float], max_fmr: float = 0.1) -> tuple[float, float]:
    """Probit fit of the lower tail: least squares of d_(i) on Phi^-1((i + 0.5) / n)
    over the sorted impostor distances whose empirical FMR is at most max_fmr."""
    ds = sorted(impostor_distances)
    n = len(ds)
    if n < 20:
        raise ValueError("need at least 20 different-identity pairs to calibrate")
    std = NormalDist()
    xs: list[float] = []
    ys: list[float] = []
    for i, d in enumerate(ds):
        p = (i + 0.5) / n
        if p > max_fmr:
            break
        xs.append(std.inv_cdf(p))
        ys.append(d)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    sigma = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    mu = my - sigma * mx
    if sigma <= 0:
        raise ValueError("degenerate impostor distance distribution")
    return mu, sigma


def calibration_document(model: str, impostor_distances: list[float],
                         genuine_distances: list[float], source: str) -> dict[str, Any]:
    """The content of calibration.json: the fit plus the measured table."""
    mu, sigma = fit_tail(impostor_distances)
    fitted = SimilarityMap(mu=mu, sigma=sigma, model=model)
    ds = sorted(impostor_distances)
    gs = sorted(genuine_distances)
    n = len(ds)
    table = []
    for fmr in (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001):
        k = int(fmr * n)  # pairs allowed to match falsely
        if k < 1:
            continue
        # Largest distance threshold that lets at most k impostor pairs through
        # (pairs at distance <= threshold match).
        threshold = ds[k] if k < n else ds[-1]
        measured = sum(1 for d in ds if d < threshold) / n
        genuine_fnmr = sum(1 for g in gs if g >= threshold) / len(gs) if gs else float("nan")
        table.append({
            "target_fmr": fmr,
            "distance": round(threshold, 4),
            "measured_fmr": round(measured, 6),
            "model_fmr": float(f"{fitted.fmr(threshold):.3g}"),
            "similarity": round(fitted.similarity(threshold), 2),
            "fnmr": round(genuine_fnmr, 4),
        })
    return {
        "model": model,
        "source": source,
        "impostor_pairs": n,
        "genuine_pairs": len(gs),
        "map": ("FMR(d) = Phi((d - mu) / sigma); L = -log10 FMR; S = 20 L for S <= 90, "
                "S = 100 - 10 exp(-(20 L - 90) / 10) above"),
        "tail_fit": {"mu": round(mu, 6), "sigma": round(sigma, 6), "max_fmr_fitted": 0.1},
        "table": table,
        "similarity_meaning": [
            {"similarity": s, "distance": round(fitted.distance_at(s), 4),
             "model_fmr": float(f"{10.0 ** -similarity_to_nines(s):.3g}")}
            for s in (50, 60, 70, 80, 90, 95, 99)
        ],
    }
