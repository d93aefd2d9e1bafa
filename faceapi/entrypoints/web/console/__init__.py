"""The web console: server-rendered pages for reviewers, compliance staff and operators."""

from __future__ import annotations

from flask import Flask

from faceapi.config import Settings
from faceapi.entrypoints.web.console.session import configure_cookie, load_or_create_secret_key


def init_app(app: Flask, settings: Settings) -> None:
    """Register the console blueprint with its session secret and cookie settings."""
    # The page modules add their routes to the blueprint when imported.
    from faceapi.entrypoints.web.console import (  # noqa: F401
        audit_pages,
        calibration_pages,
        collection_pages,
        overview,
        review_pages,
    )
    from faceapi.entrypoints.web.console.views import bp

    app.secret_key = load_or_create_secret_key(settings)
    configure_cookie(app, settings)
    app.register_blueprint(bp)
