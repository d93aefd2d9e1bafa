"""PNG plots of similarity calibrations (matplotlib, Agg backend: no display, no GUI
toolkit, safe in gunicorn workers and on servers).

Two callers: `faceapi calibrate` (ROC, DET and score distributions of an operator's
labelled set) and the console's calibration page (the shipped calibration.json's
histograms and FMR/FNMR table). Every figure is built with the object API on its own
Figure, never pyplot's global state, so concurrent requests do not share a figure."""

from __future__ import annotations

import io
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before any backend is chosen: no display on a server

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PNG_DPI = 100
ppf = NormalDist().inv_cdf


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=PNG_DPI)
    return out.getvalue()


def _roc_points(genuine: Sequence[float], impostor: Sequence[float]
                ) -> tuple[list[float], list[float]]:
    """(FMR, FNMR) at every distinct score used as threshold (match: score >= t)."""
    thresholds = sorted(set(genuine) | set(impostor) | {101.0})
    g = sorted(genuine)
    im = sorted(impostor)
    fmr, fnmr = [], []
    gi = ii = 0
    for t in thresholds:  # increasing thresholds: counts below t grow
        while gi < len(g) and g[gi] < t:
            gi += 1
        while ii < len(im) and im[ii] < t:
            ii += 1
        fmr.append((len(im) - ii) / len(im))
        fnmr.append(gi / len(g))
    return fmr, fnmr


def roc_png(genuine: Sequence[float], impostor: Sequence[float], title: str) -> bytes:
    """ROC: true-match rate (1 - FNMR) against FMR, FMR on a log axis."""
    fmr, fnmr = _roc_points(genuine, impostor)
    floor = 0.5 / max(len(impostor), 1)
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.plot([max(x, floor) for x in fmr], [1.0 - y for y in fnmr], drawstyle="steps-post")
    ax.set_xscale("log")
    ax.set_xlabel(f"false-match rate (FMR; 0 drawn at {floor:.1g})")
    ax.set_ylabel("true-match rate (1 - FNMR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def det_png(genuine: Sequence[float], impostor: Sequence[float], title: str) -> bytes:
    """DET: FNMR against FMR, both on normal-deviate (probit) axes, as ISO/IEC 19795-1
    draws them; rates of 0 or 1 are drawn at half a pair from the edge."""
    fmr, fnmr = _roc_points(genuine, impostor)

    def probit(rate: float, n: int) -> float:
        edge = 0.5 / max(n, 1)
        return ppf(min(max(rate, edge), 1.0 - edge))

    xs = [probit(x, len(impostor)) for x in fmr]
    ys = [probit(y, len(genuine)) for y in fnmr]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.plot(xs, ys, drawstyle="steps-post")
    ticks = [1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8]
    ax.set_xticks([ppf(t) for t in ticks], [f"{t:g}" for t in ticks])
    ax.set_yticks([ppf(t) for t in ticks], [f"{t:g}" for t in ticks])
    ax.set_xlabel("false-match rate (FMR)")
    ax.set_ylabel("false non-match rate (FNMR)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def distributions_png(genuine: Sequence[float], impostor: Sequence[float], title: str,
                      threshold: float | None = None) -> bytes:
    """Histograms of the similarity of same-identity and different-identity pairs."""
    bins = [i * 2.0 for i in range(51)]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.hist(list(impostor), bins=bins, alpha=0.6, label=f"different identity ({len(impostor)})",
            density=True)
    ax.hist(list(genuine), bins=bins, alpha=0.6, label=f"same identity ({len(genuine)})",
            density=True)
    _finish_distribution(ax, title, threshold)
    fig.tight_layout()
    return _png(fig)


def _finish_distribution(ax: Any, title: str, threshold: float | None) -> None:
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    ax.set_xlabel("similarity")
    ax.set_ylabel("share of pairs per point (log)")
    ax.set_title(title)
    ax.legend(loc="upper center")


def calibration_png(document: dict[str, Any]) -> bytes:
    """The shipped calibration: pair histograms (left) and measured FMR/FNMR per
    threshold with the extrapolated thresholds marked (right)."""
    dist = document["distributions"]
    width = float(dist["bin_width"])
    genuine, impostor = dist["genuine"], dist["impostor"]
    edges = [i * width for i in range(len(genuine) + 1)]
    centres = [e + width / 2 for e in edges[:-1]]
    fig = Figure(figsize=(11, 4.5))
    left = fig.add_subplot(1, 2, 1)
    left.hist(centres, bins=edges, weights=[c / max(sum(impostor), 1) for c in impostor],
              alpha=0.6, label=f"different identity ({sum(impostor)} pairs)")
    left.hist(centres, bins=edges, weights=[c / max(sum(genuine), 1) for c in genuine],
              alpha=0.6, label=f"same identity ({sum(genuine)} pairs)")
    _finish_distribution(left, "Similarity of pairs in the calibration set", 80.0)
    right = fig.add_subplot(1, 2, 2)
    rows = document["similarity_meaning"]
    ts = [r["similarity"] for r in rows]
    floor = 0.5 / max(int(document["impostor_pairs"]), 1)
    right.plot(ts, [max(r["measured_fmr"], floor) for r in rows], marker=".",
               label="measured FMR")
    right.plot(ts, [r["model_fmr"] for r in rows], linestyle=":", label="curve FMR")
    right.plot(ts, [max(r["fnmr"] or 0.0, floor) for r in rows], marker=".",
               label="measured FNMR")
    extrapolated = [r["similarity"] for r in rows if r["extrapolated"]]
    if extrapolated:
        right.axvspan(min(extrapolated) - 0.5, max(extrapolated) + 0.5, color="grey",
                      alpha=0.15, label="extrapolated FMR")
    right.set_yscale("log")
    right.set_xlabel("similarity threshold")
    right.set_ylabel(f"rate (0 drawn at {floor:.1g})")
    right.set_title("FMR and FNMR per threshold")
    right.grid(True, which="both", alpha=0.3)
    right.legend(loc="lower left")
    fig.tight_layout()
    return _png(fig)
