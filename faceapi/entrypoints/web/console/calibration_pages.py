"""The calibration page: what a similarity threshold means for the engine in use.

Operators set policy thresholds from it, auditors check them against it. It shows the
plot of the shipped calibration (pair histograms, measured FMR/FNMR per threshold),
drawn from calibration.json at the first request and kept, and the table 50-99 with
the extrapolated thresholds marked. Only pair statistics: no image, no descriptor."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, render_template

from faceapi.entrypoints.web.api.deps import use_cases
from faceapi.entrypoints.web.console.views import bp


@bp.route("/calibration", methods=["GET"])
def calibration() -> Any:
    """The calibration in force: scale, plot, measured table, genuine-score quantiles."""
    document = use_cases().similarity_calibration()
    capabilities = use_cases().engine_capabilities()
    rows = [r for r in (document or {}).get("similarity_meaning", [])
            if r["similarity"] >= 50]
    return render_template("calibration.html", title="Calibration", document=document,
                           rows=rows, capabilities=capabilities)


@bp.route("/calibration.png", methods=["GET"])
def calibration_plot() -> Any:
    png = use_cases().similarity_calibration_png()
    if png is None:
        abort(404, description="This engine has no local calibration.")
    response = Response(png, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=300"
    return response
