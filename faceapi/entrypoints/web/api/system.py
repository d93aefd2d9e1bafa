"""Health, readiness, engine capabilities and the API docs page."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from faceapi.domain.errors import NotFound
from faceapi.entrypoints.web.api.deps import use_cases
from faceapi.entrypoints.web.api.schemas import CapabilitiesSchema, HealthSchema

blp = Blueprint("system", __name__, description="Health, readiness and engine facts")


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthSchema)
def healthz() -> Any:
    """Liveness: the process answers."""
    return {"status": "ok", "checks": {}}


@blp.route("/readyz", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="not ready; checks say why")
def readyz() -> Any:
    """Readiness: the engine, the store (a real query, schema at head), Redis when
    configured, the blob directory and the signing key; a failing check makes it 503 and
    says which one and why."""
    results = use_cases().readiness()
    checks = {name: why for name, (_, why) in results.items()}
    ok = all(passed for passed, _ in results.values())
    body = {"status": "ready" if ok else "not_ready", "checks": checks}
    return body, (200 if ok else 503)


@blp.route("/v1/engine", methods=["GET"])
@blp.response(200, CapabilitiesSchema)
def engine_info() -> Any:
    """The active engine: what it computes and what it never returns."""
    return use_cases().engine_capabilities()


class CalibrationSchema(Schema):
    """calibration.json as shipped: pair statistics only, no image or descriptor."""

    model = fields.String()
    source = fields.String()
    scale = fields.Dict(metadata={"description": "scale version and its fixed points"})
    impostor_pairs = fields.Integer()
    genuine_pairs = fields.Integer()
    map = fields.String()
    curve = fields.Dict()
    table = fields.List(fields.Dict())
    similarity_meaning = fields.List(fields.Dict(), metadata={
        "description": "per threshold: curve FMR, measured FMR and FNMR, extrapolated"})
    genuine_similarity = fields.Dict()
    impostor_similarity = fields.Dict()
    distributions = fields.Dict()


@blp.route("/v1/engine/calibration", methods=["GET"])
@blp.response(200, CalibrationSchema)
def engine_calibration() -> Any:
    """What the local engine's similarity thresholds mean: the calibration it loaded
    (measured FMR and FNMR per threshold, score histograms). 404 for an engine without
    a local calibration (Rekognition)."""
    document = use_cases().similarity_calibration()
    if document is None:
        raise NotFound("this engine publishes no local similarity calibration")
    return document


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>faceapi API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{border-bottom:1px solid #ccc}code,pre{background:#f4f4f4;padding:.1rem .3rem}
.m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}</style></head>
<body><h1>faceapi API</h1><p>The machine-readable spec is at
<a href="/openapi.json">/openapi.json</a>. Every error is
<code>{"error": {"code", "message", "request_id"}}</code>.</p><div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const out = document.getElementById('ops'); out.textContent = '';
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (typeof op !== 'object' || !op.responses) continue;
      const h = document.createElement('h2');
      const m = document.createElement('span'); m.className = 'm'; m.textContent = method;
      h.append(m, document.createTextNode(path)); out.append(h);
      const p = document.createElement('p'); p.textContent = op.summary || ''; out.append(p);
      const pre = document.createElement('pre');
      pre.textContent = 'responses: ' + Object.keys(op.responses).join(', ');
      out.append(pre);
    }
  }
});
</script></body></html>"""


@blp.route("/docs", methods=["GET"])
@blp.doc(hide=True)
def docs_page() -> Response:
    """Human-readable API reference rendered from /openapi.json (no CDN needed)."""
    return Response(_DOCS_PAGE, mimetype="text/html")
