"""Text holding a NUL (U+0000) is a 400 before any view runs, on every entry: PostgreSQL
cannot store it in a text column, so `{"description": "\\u0000"}` reached the database
and came back as a DataError, a 500 (found by schemathesis in the PostgreSQL pass).
Nothing is stored by the refused request. The console's forms, the idempotency wrapper
and JSON in UTF-16/32 are below."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from faceapi.adapters.store.tables import audit_events, metadata
from faceapi.config import Settings
from faceapi.entrypoints.web.api.deps import NUL_REFUSED
from tests.conftest import KeyFactory
from tests.emulator_server import api_key, sigv4_headers
from tests.fakes import FakeEngine, unit_vector
from tests.integration.verify_support import b64, enroll, make_collection, scripted, vector_at


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(env="test", data_dir=tmp_path / "data", log_format="json",
                    database_url=database_url)


def _refused(reply: object) -> None:
    assert reply.status_code == 400, reply.get_data()[:300]  # type: ignore[attr-defined]
    assert "NUL" in reply.json["error"]["message"]  # type: ignore[attr-defined]


def test_a_json_string_with_a_nul_is_a_400_and_stores_nothing(
        client: FlaskClient, make_key: KeyFactory) -> None:
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    for body in ('{"collection_id": "c1", "description": "a\\u0000b"}',
                 '{"collection_id": "c\\u0000", "description": ""}',
                 '{"collection_id": "c1", "description": "", "\\u0000": 1}'):
        _refused(client.post("/v1/collections", data=body, headers=admin,
                             content_type="application/json"))
    assert client.get("/v1/collections", headers=admin).json["CollectionIds"] == []
    # An escaped backslash before "u0000" is text, not a NUL: it reaches the service.
    made = client.post("/v1/collections", data='{"collection_id": "c1", "description": '
                       '"C:\\\\u0000"}', headers=admin, content_type="application/json")
    assert made.status_code == 201, made.get_data()[:300]


def test_a_nul_in_the_path_query_or_a_form_field_is_a_400(
        client: FlaskClient, make_key: KeyFactory) -> None:
    app_key = {"Authorization": f"Bearer {make_key('app')}"}
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    _refused(client.get("/v1/collections/a%00b", headers=admin))
    _refused(client.get("/v1/audit/events?actor=a%00b", headers=admin))
    _refused(client.post("/v1/verify", headers=app_key, content_type="multipart/form-data",
                         data={"collection_id": "c1", "subject_id": "al\x00ice",
                               "policy": "login", "image": (io.BytesIO(b"x"), "a.jpg")}))


# --- the console ----------------------------------------------------------------------
# The console parses its own forms (sign-in, review votes, erase, unlock, chain check,
# sign-out): each field, name or value, raw in a urlencoded body (%00) or in multipart,
# is refused on the console's error page with a 400, after the CSRF, session and role
# checks, and before any view reads it.

WATCH = "watch"
ALICE = unit_vector(1)
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """One person's console session over Flask's test client (it keeps the cookie)."""

    def __init__(self, app: Flask, key: str) -> None:
        self.client = app.test_client()
        token = self.csrf("/console/signin")
        signed = self.client.post("/console/signin", data={"api_key": key, "csrf_token": token})
        assert signed.status_code == 302, signed.get_data()[:300]

    def csrf(self, page: str) -> str:
        match = CSRF_RE.search(self.client.get(page).get_data(as_text=True))
        assert match, page
        return match.group(1)

    def post(self, path: str, fields: list[tuple[str, str]], encoding: str) -> TestResponse:
        if encoding == "urlencoded":
            # Written by hand: the NUL travels as the three characters %00.
            body = "&".join(f"{quote(k, safe='%')}={quote(v, safe='%')}" for k, v in fields)
            return self.client.post(path, data=body.encode(),
                                    content_type="application/x-www-form-urlencoded")
        return self.client.post(path, data=dict(fields), content_type="multipart/form-data")


def with_nul(fields: list[tuple[str, str]], target: str, encoding: str) -> list[tuple[str, str]]:
    """`fields` with a NUL in the value of `target` (or, for "<name>", a field named with
    one), written as a urlencoded body or a multipart part carries it."""
    nul = "%00" if encoding == "urlencoded" else "\x00"
    if target == "<name>":
        return [*fields, (f"extra{nul}", "1")]
    return [(k, f"{v[:2]}{nul}{v[2:]}" if k == target else v) for k, v in fields]


def table_counts(app: Flask) -> dict[str, int]:
    """Rows in every table but the audit trail (refusals may be recorded there)."""
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables if t.name != "audit_events"}


def audit_rows(app: Flask) -> list[dict[str, Any]]:
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(audit_events).order_by(audit_events.c.seq)).mappings()]


def assert_console_nul_page(reply: TestResponse) -> None:
    assert reply.status_code == 400, (reply.status_code, reply.get_data()[:300])
    assert reply.mimetype == "text/html"
    assert NUL_REFUSED in reply.get_data(as_text=True)


@pytest.fixture
def pending_review(app: Flask, client: FlaskClient, make_key: KeyFactory,
                   fake_engine: FakeEngine) -> tuple[str, str]:
    """(review id, alice's face id): a watchlist search waiting for its reviewers."""
    make_collection(app, WATCH, policies=("watchlist_search", "login"))
    face_id = enroll(app, WATCH, "alice", ALICE)
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    reply = client.post(f"/v1/collections/{WATCH}/search",
                        headers={"Authorization": f"Bearer {make_key('app')}"},
                        json={"policy": "watchlist_search", "image": b64(probe)})
    assert reply.status_code == 200, reply.get_data()[:300]
    return reply.json["decision"]["review_id"], face_id


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_nul_in_any_console_form_field_is_a_400_page_and_changes_nothing(
        app: Flask, make_key: KeyFactory, pending_review: tuple[str, str],
        encoding: str) -> None:
    review_id, face_id = pending_review
    reviewer = Browser(app, make_key("reviewer"))
    operator = Browser(app, make_key("operator"))
    auditor = Browser(app, make_key("auditor"))
    subject_page = f"/console/collections/{WATCH}/subjects/alice"
    forms = [  # (who, page with the form, action, fields as the page sends them)
        (reviewer, f"/console/reviews/{review_id}", f"/console/reviews/{review_id}/decision",
         [("decision", "confirm"), ("reason", "same person"), ("face_id", face_id)]),
        (operator, subject_page, f"{subject_page}/erase", [("confirm_subject", "alice")]),
        (operator, subject_page, f"{subject_page}/unlock", [("policy", "login")]),
        (auditor, "/console/audit", "/console/audit/verify", [("actor", "anyone")]),
        (auditor, "/console/audit", "/console/signout", []),
    ]
    before_rows, before_audit = table_counts(app), len(audit_rows(app))
    for who, page, action, fields in forms:
        sent = [*fields, ("csrf_token", who.csrf(page))]
        for target in [name for name, _ in fields] + ["<name>"]:
            reply = who.post(action, with_nul(sent, target, encoding), encoding)
            assert_console_nul_page(reply)
    # Nothing was stored, decided, erased, unlocked, verified or audited, and no
    # session was ended: each person still has their page.
    assert table_counts(app) == before_rows
    assert len(audit_rows(app)) == before_audit
    assert reviewer.client.get(f"/console/reviews/{review_id}").status_code == 200
    assert operator.client.get(subject_page).status_code == 200
    assert auditor.client.get("/console/audit").status_code == 200
    # The same forms without the NUL still work (the vote, then the erasure).
    token = reviewer.csrf(f"/console/reviews/{review_id}")
    voted = reviewer.post(f"/console/reviews/{review_id}/decision", [
        ("decision", "confirm"), ("reason", "same person"), ("face_id", face_id),
        ("csrf_token", token)], encoding)
    assert voted.status_code == 302
    assert table_counts(app)["review_votes"] == before_rows["review_votes"] + 1


def test_a_nul_in_a_console_path_or_query_comes_after_the_role_check_and_its_audit(
        app: Flask, make_key: KeyFactory, pending_review: tuple[str, str]) -> None:
    reviewer = Browser(app, make_key("reviewer"))
    auditor = Browser(app, make_key("auditor"))
    operator = Browser(app, make_key("operator"))
    before = len(audit_rows(app))
    # A page the role may not open is refused and audited as without the NUL.
    refused = reviewer.client.get("/console/audit?actor=a%00b")
    assert refused.status_code == 403, refused.get_data()[:300]
    denial = audit_rows(app)[before:]
    assert [(e["action"], e["reason"]) for e in denial] == [("authz.deny", "role_not_allowed")]
    # The roles that may open the page get the console's own 400 page, and nothing is
    # recorded for them (a malformed request, logged with its request id).
    assert_console_nul_page(auditor.client.get("/console/audit?actor=a%00b"))
    assert_console_nul_page(auditor.client.get("/console/audit/export?format=csv&ac%00tor=1"))
    assert_console_nul_page(operator.client.get(f"/console/collections/{WATCH}%00"))
    assert_console_nul_page(operator.client.get(f"/console/collections/{WATCH}/subjects/a%00"))
    assert_console_nul_page(reviewer.client.get("/console/reviews?after=%00"))
    assert len(audit_rows(app)) == before + 1


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
@pytest.mark.parametrize("target", ["api_key", "next", "<name>"])
def test_a_sign_in_form_holding_a_nul_is_a_refused_sign_in_on_record(
        app: Flask, make_key: KeyFactory, encoding: str, target: str) -> None:
    client = app.test_client()
    token = CSRF_RE.search(client.get("/console/signin").get_data(as_text=True))
    assert token is not None
    browser = Browser.__new__(Browser)
    browser.client = client
    fields = [("api_key", make_key("auditor")), ("next", "/console/audit"),
              ("csrf_token", token.group(1))]
    before = len(audit_rows(app))
    reply = browser.post("/console/signin", with_nul(fields, target, encoding), encoding)
    assert_console_nul_page(reply)
    # Not signed in: the console sends the person back to sign in.
    assert client.get("/console/overview").status_code == 302
    (event,) = audit_rows(app)[before:]
    assert (event["action"], event["reason"]) == ("auth.fail", "nul_character")
    details = event["details"]
    assert (json.loads(details) if isinstance(details, str) else details)["channel"] == "console"


# --- the REST API's wrappers and the emulator ------------------------------------------

def test_a_multipart_collection_id_with_a_nul_is_refused_before_the_idempotency_claim(
        app: Flask, client: FlaskClient, make_key: KeyFactory) -> None:
    # Idempotency-Key makes a wrapper record the form's collection_id before the view
    # loads (and checked) the body: on PostgreSQL that insert was a DataError, a 500.
    app_key = make_key("app")
    before = table_counts(app)
    reply = client.post("/v1/verify", content_type="multipart/form-data",
                        headers={"Authorization": f"Bearer {app_key}",
                                 "Idempotency-Key": "retry-1"},
                        data={"collection_id": "c\x00", "subject_id": "alice",
                              "policy": "login", "image": (io.BytesIO(b"x"), "a.jpg")})
    _refused(reply)
    assert table_counts(app) == before


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_json_in_utf16_or_utf32_cannot_carry_a_nul_past_the_guard(
        app: Flask, client: FlaskClient, make_key: KeyFactory, encoding: str) -> None:
    # Flask's parser and the emulator's decode UTF-16 and UTF-32 JSON, where "\u0000"
    # is not the bytes the guard looks for: a NextToken holding one reached
    # PostgreSQL (a 500). A NUL byte in a JSON body is refused, so JSON is UTF-8.
    key = api_key(app, "operator")
    body = '{"NextToken": "a\\u0000b"}'.encode(encoding)
    reply = client.post("/", data=body, headers=sigv4_headers(
        key, body, target="RekognitionService.ListCollections"))
    assert reply.status_code == 400, reply.get_data()[:300]
    error = json.loads(reply.get_data())
    assert error["__type"] == "SerializationException"
    assert "NUL" in error["message"]
    body = ('{"collection_id": "c1", "subject_id": "a\\u0000", "policy": "login", '
            '"image": {"bytes": "eA=="}}').encode(encoding)
    reply = client.post("/v1/verify", data=body, content_type="application/json",
                        headers={"Authorization": f"Bearer {make_key('app')}"})
    _refused(reply)
