"""The web app: `create_app` takes the adapters from the composition root
(faceapi/bootstrap.py) and wires Flask: blueprints, error handlers, access control."""

from __future__ import annotations

import time

import structlog
from flask import Flask, Response, g, request
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from faceapi import __version__
from faceapi.adapters.policy_files import check_default_binding
from faceapi.bootstrap import bootstrap
from faceapi.config import Settings
from faceapi.domain.clock import Clock
from faceapi.entrypoints.web import console, emulator
from faceapi.entrypoints.web.api import (
    audit,
    auth,
    collections,
    errors,
    faces,
    keys,
    limits,
    policies,
    reviews,
    search,
    system,
    verify,
    webhooks,
)
from faceapi.entrypoints.web.api.deps import EXTENSION_KEY, refuse_deep_json
from faceapi.entrypoints.web.api.openapi_doc import document_truth
from faceapi.entrypoints.web.logging import bind_request, configure_logging, new_request_id
from faceapi.entrypoints.web.metrics import init_metrics
from faceapi.entrypoints.web.slow_clients import ClientIdleTimeout
from faceapi.services.ports import FaceEngine, S3ImageReader

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None, *, engine: FaceEngine | None = None,
               clock: Clock | None = None) -> Flask:
    """Build the Flask app. Tests pass their own settings and fakes of our ports."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    app = Flask("faceapi")
    # A client that stops sending frees its gunicorn worker (entrypoints/web/slow_clients.py).
    app.wsgi_app = ClientIdleTimeout(app.wsgi_app)  # type: ignore[method-assign]
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)
    app.config.update(
        API_TITLE="faceapi",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        # Two images plus base64 overhead and form fields; larger bodies are refused
        # by werkzeug before they are read into memory.
        MAX_CONTENT_LENGTH=3 * settings.max_image_bytes + 64 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]

    # The adapters and use cases come from the composition root; what follows is the
    # web process's own start-up: the schema check and the checkpoint timer.
    container = bootstrap(settings, engine=engine, clock=clock)
    engine = container.engine
    store = container.store
    if settings.env == "test" or store.dialect == "sqlite":
        # Zero set-up for SQLite and tests; production PostgreSQL is migrated by
        # `faceapi db upgrade` (make serve) before the workers start.
        store.upgrade()
    else:
        # A worker must not serve from a schema older than its code.
        store.require_current_schema()
    if settings.env != "test":
        # Signs the chain head every audit_checkpoint_seconds even when no event arrives,
        # so the newest events do not stay unsigned through a quiet period.
        store.start_checkpoint_timer()
    # Built now, before gunicorn forks and before threads race to build them; a bad
    # policy file raises PolicyError here: the app does not start.
    for adapter in ("policies", "blobs", "decoder", "index", "erasers", "liveness",
                    "use_cases"):
        getattr(container, adapter)
    app.extensions[EXTENSION_KEY] = container
    # FACEAPI_DEFAULT_COLLECTION_POLICIES must name loaded verify/search policies.
    check_default_binding(settings, container.policies)
    # The text of every policy version this start loads is kept (policy.load), once
    # however many workers start together: any decision's version can be read back.
    container.use_cases.record_policy_versions()

    api = Api()
    # /openapi.json describes our error envelope (api/errors.py), not smorest's default.
    api.ERROR_SCHEMA = errors.ErrorSchema
    api.init_app(app)
    api.register_blueprint(system.blp)
    api.register_blueprint(faces.blp)
    api.register_blueprint(collections.blp)
    api.register_blueprint(keys.blp)
    api.register_blueprint(policies.blp)
    api.register_blueprint(verify.blp)
    api.register_blueprint(verify.lockouts_blp)
    api.register_blueprint(search.blp)
    api.register_blueprint(reviews.blp)
    api.register_blueprint(audit.blp)
    api.register_blueprint(webhooks.blp)
    # Rekognition-compatible endpoint for AWS SDKs (POST /); kept out of the OpenAPI spec.
    emulator.init_app(app, enabled_faults=settings.env == "test")
    console.init_app(app, settings)
    errors.register_error_handlers(app)
    _register_request_logging(app)
    # Before the rate limiter and authentication: see entrypoints/web/metrics.py.
    init_metrics(app, container)
    # Access control last: rate limit per address, authenticate, then rate limit per
    # verified key (see api/limits.py for why this order).
    limits.init_limiter(app, settings)
    auth.register_auth(app)
    limits.init_key_limits(app, settings)
    # Before any view parses a body (webargs, Flask, the emulator): see api/deps.py.
    app.before_request(refuse_deep_json)
    metrics_rule = next((r for r in app.url_map.iter_rules()
                         if r.endpoint == "metrics.scrape"), None)
    if metrics_rule is not None:  # served outside flask-smorest: described here
        api.spec.path(rule=metrics_rule, operations={"get": {
            "summary": "Prometheus metrics, summed over the workers (docs/operations.md)",
            "tags": ["system"],
            "responses": {"200": {"description": "Prometheus text exposition format",
                                  "content": {"text/plain": {}}},
                          "404": {"description": "metrics are switched off"}}}})
    auth.document_security(api, app)
    document_truth(api, app, policies=container.policies,
                   engine_reads_s3=isinstance(engine, S3ImageReader))
    log.info("app_created", engine=engine.name, model_version=engine.model_version,
             env=settings.env)
    return app


def _register_request_logging(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = new_request_id(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()
        bind_request(g.request_id, method=request.method, path=request.path)

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        started = getattr(g, "started", None)
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
        route = request.url_rule.rule if request.url_rule is not None else None
        log.info("request", route=route, status=response.status_code, duration_ms=duration_ms)
        return response

    @app.teardown_request
    def _forget(_exc: BaseException | None) -> None:
        # Work done after the request on this thread (a CLI call, a test helper) must
        # not carry this request's id into its logs or audit events.
        structlog.contextvars.clear_contextvars()
