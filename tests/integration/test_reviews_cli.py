"""`faceapi reviews sweep` expires overdue reviews without anyone reading them."""

from __future__ import annotations

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from faceapi.config import Settings
from faceapi.entrypoints.cli import cli
from tests.conftest import HeadersFactory
from tests.fakes import FakeEngine
from tests.integration.test_review_api import identity_check, people

__all__ = ["people"]  # the autouse fixture that enrolls alice and bob


def test_the_sweep_command_expires_an_overdue_review_as_rejected(
        app: Flask, client: FlaskClient, fake_engine: FakeEngine, settings: Settings,
        auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    # The app's fake clock stands at 2026-01-01; the command runs on the wall clock,
    # long past identity_check's 72-hour wait.
    body = identity_check(client, fake_engine, app_key)
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir), "FACEAPI_ENV": "test",
           "FACEAPI_BLOB_DIR": str(settings.resolved_blob_dir)}
    if settings.database_url:
        env["FACEAPI_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(cli, ["reviews", "sweep"], env=env)
    assert result.exit_code == 0, result.output
    assert "expired 1 review(s)" in result.output
    store = app.extensions["faceapi"].store
    with store.read_uow() as uow:
        decision = uow.decisions.get(body["decision_id"])
    assert decision is not None
    assert decision.outcome.value == "rejected"
