"""`/metrics` (Prometheus text format) and the per-request observations behind it.

Who may read it (docs/operations.md, "Metrics"): on the API's own address, a key of a
role the permission table gives `metrics.scrape` (faceapi/domain/access.py); with
FACEAPI_METRICS_BIND set, gunicorn also listens on that address, where `/metrics`
answers without a key and every other path is 404, so a scraper on an internal network
needs no secret and reaches nothing else.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from faceapi.adapters.metrics import PrometheusMetrics
from faceapi.bootstrap import Container
from faceapi.entrypoints.web.api.errors import error_response

ENDPOINT = "metrics.scrape"
PATH = "/metrics"


def init_metrics(app: Flask, container: Container) -> None:
    """Time every request and serve /metrics. Register before the rate limiter and
    authentication, so the separate metrics address is answered before either runs."""
    settings = container.settings
    if not settings.metrics_enabled:
        return
    metrics = container.metrics
    metrics_port = settings.metrics_bind.rpartition(":")[2] if settings.metrics_bind else ""

    blp = Blueprint("metrics", __name__)

    @blp.route(PATH, methods=["GET"])
    def scrape() -> Response:
        """Every metric in the Prometheus text format, summed over the workers."""
        return _exposition(container)

    app.register_blueprint(blp)

    @app.before_request
    def _start_timer() -> Response | None:
        g.metrics_started = time.perf_counter()
        if metrics_port and request.environ.get("SERVER_PORT") == metrics_port:
            # The metrics address serves /metrics alone, without a key.
            if request.path == PATH and request.method == "GET":
                return _exposition(container)
            return error_response("not_found", "only /metrics is served on this address",
                                  404)
        return None

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is None:
            return response
        # The URL rule, never the raw path: paths carry collection and subject ids.
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.observe_request(route, request.method, response.status_code,
                                time.perf_counter() - started)
        if response.status_code == 429:
            metrics.count_rate_limited(route)
        return response


def _exposition(container: Container) -> Response:
    metrics = container.metrics
    if not isinstance(metrics, PrometheusMetrics):
        return error_response("not_found", "metrics are not enabled", 404)
    body, content_type = metrics.exposition()
    return Response(body, status=200, content_type=content_type)
