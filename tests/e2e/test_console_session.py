"""Session rules that need a clock under the test's control: idle expiry, the absolute
lifetime, the secret key file. Flask's test client, a fake clock, the real store."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.entrypoints.web.app import create_app
from faceapi.entrypoints.web.console.session import SIGNING_FILE_NAME, load_or_create_secret_key
from faceapi.services import keys
from tests.fakes import FakeClock, FakeEngine
from tests.support.production_keys import write_production_keys

pytestmark = pytest.mark.e2e


@pytest.fixture
def console_app(tmp_path: Path, clock: FakeClock) -> Flask:
    settings = Settings(env="test", data_dir=tmp_path / "data", log_format="json",
                        session_idle_minutes=30)
    return create_app(settings, engine=FakeEngine(), clock=clock)


def new_key(app: Flask, clock: FakeClock, role: str) -> str:
    store = app.extensions["faceapi"].store
    created = keys.create_key(keys.NewKey(name=f"session {role}", role=role), uow=store.uow(),
                              clock=clock, actor=Actor.system("test"))
    return created.secret


def token_of(client: FlaskClient, path: str = "/console/signin") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def sign_in(client: FlaskClient, key: str) -> None:
    response = client.post("/console/signin", data={"api_key": key,
                                                    "csrf_token": token_of(client)})
    assert response.status_code == 302


def test_an_idle_session_ends_after_the_configured_minutes(
        console_app: Flask, clock: FakeClock) -> None:
    client = console_app.test_client()
    sign_in(client, new_key(console_app, clock, "auditor"))
    assert client.get("/console/audit").status_code == 200
    # Activity keeps it alive: 25 minutes, a click, 25 minutes more.
    clock.advance(minutes=25)
    assert client.get("/console/audit").status_code == 200
    clock.advance(minutes=25)
    assert client.get("/console/audit").status_code == 200
    # 31 idle minutes end it; the next page is the sign-in form with a notice.
    clock.advance(minutes=31)
    response = client.get("/console/audit")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/signin")
    assert "idle" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_a_session_ends_after_twelve_hours_however_active(
        console_app: Flask, clock: FakeClock) -> None:
    client = console_app.test_client()
    sign_in(client, new_key(console_app, clock, "auditor"))
    for _ in range(12 * 4 + 1):
        clock.advance(minutes=15)
        response = client.get("/console/policies")
    assert response.status_code == 302


def test_sign_in_issues_a_new_csrf_token(console_app: Flask, clock: FakeClock) -> None:
    client = console_app.test_client()
    before = token_of(client)
    client.post("/console/signin", data={"api_key": new_key(console_app, clock, "auditor"),
                                         "csrf_token": before})
    after = token_of(client, "/console/audit")
    assert after != before


def test_the_cookie_is_secure_when_served_over_https(
        console_app: Flask, clock: FakeClock) -> None:
    client = console_app.test_client()
    response = client.get("/console/signin", base_url="https://console.example")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    plain = console_app.test_client().get("/console/signin").headers["Set-Cookie"]
    assert "Secure" not in plain


def test_the_session_secret_is_generated_once_and_readable_by_its_owner_only(
        tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path)
    first = load_or_create_secret_key(settings)
    assert load_or_create_secret_key(settings) == first
    mode = stat.S_IMODE((tmp_path / SIGNING_FILE_NAME).stat().st_mode)
    assert mode == 0o600
    assert load_or_create_secret_key(settings.with_overrides(secret_key="configured")) == \
        "configured"


def test_console_pages_answer_html_not_json_errors(console_app: Flask, clock: FakeClock) -> None:
    client = console_app.test_client()
    sign_in(client, new_key(console_app, clock, "reviewer"))
    response = client.get("/console/audit")
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_the_cookie_is_always_secure_in_production(tmp_path: Path) -> None:
    settings = Settings(env="production", data_dir=tmp_path / "data", log_format="json",
                        **write_production_keys(tmp_path / "secrets"))
    app = create_app(settings, engine=FakeEngine(), clock=FakeClock())
    cookie = app.test_client().get("/console/signin").headers["Set-Cookie"]
    assert "Secure" in cookie


@pytest.mark.parametrize("query", ["after=99999999999999999999999", "after=%C2%B2",
                                   "since=0001-01-01T00:00%2B05:00",
                                   "until=9999-12-31T23:59-05:00"])
def test_odd_audit_filters_are_a_page_or_a_422_never_a_500(
        console_app: Flask, clock: FakeClock, query: str) -> None:
    client = console_app.test_client()
    sign_in(client, new_key(console_app, clock, "auditor"))
    assert client.get(f"/console/audit?{query}").status_code == 200
    assert client.get(f"/console/audit/export?{query}").status_code in (200, 422)
