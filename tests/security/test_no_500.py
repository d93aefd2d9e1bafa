"""Issue 12, finding 8 (all but the audit cursor): hostile input is a 4xx, never a 500.

Deeply nested JSON made Python's JSON parsers raise RecursionError (a 500) on every
route parsed by webargs; `older_than_minutes=1e12` overflowed a date; a console
sign-in `next=` holding CR/LF broke the Location header. Every JSON route is found
from the URL map, so a route added later is covered without editing this file.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from flask import Flask

from faceapi.domain import access
from tests.conftest import KeyFactory
from tests.emulator_server import LiveServer, api_key, sigv4_headers
from tests.security.conftest import Http
from tests.security.raw_http import exchange

DEEP = 100_000
NESTINGS = {"arrays": b"[" * DEEP + b"]" * DEEP, "objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
            "unclosed": b"[" * DEEP, "mixed": b'[{"a":' * (DEEP // 2)}
_CONVERTER_RE = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def json_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(method, path, endpoint) of every route that may read a body, console excluded
    (it takes forms and is tested separately below)."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/console"):
            continue
        for method in sorted(set(rule.methods or ()) & set(BODY_METHODS)):
            found.append((method, _CONVERTER_RE.sub("c1", rule.rule), rule.endpoint))
    return found


def test_the_url_map_walk_finds_the_routes_of_the_finding(app: Flask) -> None:
    endpoints = {endpoint for _m, _p, endpoint in json_routes(app)}
    assert {"keys.create_key", "collections.create_collection",
            "collections.record_subject_consent", "collections.delete_faces",
            "reviews.decide_review_item", "rekognition.dispatch"} <= endpoints


@pytest.mark.parametrize("nesting", NESTINGS.values(), ids=NESTINGS.keys())
def test_deeply_nested_json_is_a_400_envelope_on_every_json_route(
        app: Flask, http: Http, make_key: KeyFactory, nesting: bytes) -> None:
    keys: dict[str, str] = {}
    for method, path, endpoint in json_routes(app):
        if endpoint == "rekognition.dispatch":
            continue  # signed with SigV4: the next test
        rule = access.rule_for(endpoint)
        headers = {"Content-Type": "application/json"}
        if rule is not access.Access.PUBLIC:
            # A role the route admits, so the request gets past authorisation to the body.
            role = sorted(access.roles_allowed(endpoint))[0]
            keys.setdefault(role, make_key(role))
            headers["Authorization"] = f"Bearer {keys[role]}"
        started = time.monotonic()
        reply = http.request(method, path, body=nesting, headers=headers)
        took = time.monotonic() - started
        assert reply.status == 400, (method, path, reply.status, reply.body[:300])
        error = reply.json()["error"]
        assert error["code"] == "bad_request", (method, path, error)
        assert error["request_id"]
        assert took < 2, (method, path, took)


@pytest.mark.parametrize("nesting", NESTINGS.values(), ids=NESTINGS.keys())
def test_deeply_nested_json_to_the_rekognition_endpoint_is_a_400(
        app: Flask, http: Http, nesting: bytes) -> None:
    key = api_key(app, "operator")
    headers = sigv4_headers(key, nesting, target="RekognitionService.ListCollections",
                            url=http.url + "/")
    reply = http.post("/", body=nesting, headers=headers)
    assert reply.status == 400, reply.body[:300]


def test_json_nested_within_the_limit_still_reaches_validation(
        http: Http, make_key: KeyFactory) -> None:
    body = {"name": "nested", "role": "app", "extra": json.loads("[" * 60 + "]" * 60)}
    reply = http.post("/v1/keys", key=make_key("admin"), json_body=body)
    # Refused by the schema (unknown field), not by the nesting guard.
    assert reply.status == 422, reply.body[:300]
    assert reply.json()["error"]["code"] == "validation_error"


def test_brackets_inside_strings_do_not_count_as_nesting(
        http: Http, make_key: KeyFactory) -> None:
    body = {"name": "nested", "role": "app", "extra": '\\"' + "[" * 500 + "{" * 500}
    reply = http.post("/v1/keys", key=make_key("admin"), json_body=body)
    assert reply.status == 422, reply.body[:300]
    assert reply.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("value", ["1e12", "inf", "-inf", "nan", "-1", "1e309", "Infinity",
                                   "1" + "0" * 400])
def test_an_out_of_range_review_age_is_a_4xx(http: Http, make_key: KeyFactory,
                                              value: str) -> None:
    reply = http.get(f"/v1/reviews?older_than_minutes={quote(value)}",
                     key=make_key("reviewer"))
    assert reply.status == 422, reply.body[:300]
    assert reply.json()["error"]["code"] == "validation_error"


def test_a_sensible_review_age_is_accepted(http: Http, make_key: KeyFactory) -> None:
    reply = http.get("/v1/reviews?older_than_minutes=90", key=make_key("reviewer"))
    assert reply.status == 200, reply.body[:300]


# ------------------------------------------------------------------ console sign-in next=

HOSTILE_NEXT = ["/console\r\nSet-Cookie: stolen=1", "/console/\r\n\r\n<script>", "//evil.example",
                "/\\evil.example", "https://evil.example/console", "/console//evil.example",
                "/console/../v1/keys", "javascript:alert(1)",
                "/console" + "a" * 5000, " /console", "/console\t/x"]
NEXT_IDS = ["crlf_header", "crlf_body", "scheme_relative", "backslash", "absolute",
            "double_slash", "dot_dot", "javascript", "too_long", "leading_space", "tab"]


def _signin_form(http: Http) -> tuple[str, str]:
    page = http.get("/console/signin")
    cookie = (page.headers.get("Set-Cookie") or "").split(";", 1)[0]
    match = re.search(rb'name="csrf_token" value="([^"]+)"', page.body)
    assert match, page.body[:300]
    return cookie, match.group(1).decode()


@pytest.mark.parametrize("target", HOSTILE_NEXT, ids=NEXT_IDS)
def test_a_hostile_next_after_sign_in_sends_the_person_to_the_console_home(
        http: Http, make_key: KeyFactory, target: str) -> None:
    page = http.get("/console/signin?" + urlencode({"next": target}))
    assert page.status == 200
    assert b"evil" not in page.body
    cookie, csrf = _signin_form(http)
    reply = http.post("/console/signin", body=urlencode({
        "api_key": make_key("reviewer"), "csrf_token": csrf, "next": target}).encode(),
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 302, reply.body[:300]
    assert reply.headers["Location"] in ("/console/", "/console"), reply.headers["Location"]


def test_a_nul_in_next_is_refused_before_any_sign_in(http: Http, make_key: KeyFactory) -> None:
    # A NUL in the query or in any form field is the console's 400 page (console/views.py,
    # after the CSRF check): the page is not served and nobody is signed in.
    assert http.get("/console/signin?" + urlencode({"next": "\x00/console"})).status == 400
    cookie, csrf = _signin_form(http)
    reply = http.post("/console/signin", body=urlencode({
        "api_key": make_key("reviewer"), "csrf_token": csrf, "next": "\x00/console"}).encode(),
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 400, reply.body[:300]
    assert "Location" not in reply.headers
    assert b"NUL" in reply.body


def test_a_console_path_is_still_a_valid_next(http: Http, make_key: KeyFactory) -> None:
    cookie, csrf = _signin_form(http)
    reply = http.post("/console/signin", body=urlencode({
        "api_key": make_key("reviewer"), "csrf_token": csrf,
        "next": "/console/reviews?status=pending"}).encode(),
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 302
    assert reply.headers["Location"] == "/console/reviews?status=pending"


# ------------------------------------------------------------------------ hostile headers

@dataclass
class Raw:
    status: int
    body: bytes


def send_raw(live: LiveServer, head: bytes, body: bytes = b"", *,
             half_close: bool = False) -> Raw:
    """Bytes on a socket, as no client library would send them."""
    status, _, received = exchange(live.server.server_port, head + b"\r\n\r\n" + body,
                                   timeout=20, half_close=half_close)
    return Raw(status, received)


def _head(*lines: bytes) -> bytes:
    return b"\r\n".join([*lines, b"Host: 127.0.0.1", b"Connection: close"])


@pytest.mark.parametrize("authorization", [
    b"Bearer " + b"A" * 30_000,
    b"Bearer fa_" + b"\xe9" * 8 + b"_" + b"\xff" * 40,
    b"Bearer \xc3\xa9\xe2\x98\x83",
    b"AWS4-HMAC-SHA256 Credential=\xff\xfe/x/y/z/aws4_request, Signature=" + b"\x80" * 64,
    b"\x00\x01\x02",
    b"Basic " + b"=" * 5000,
], ids=["huge", "latin1_key", "utf8", "sigv4_binary", "control", "basic_padding"])
def test_hostile_authorization_headers_are_refused_never_a_500(
        live: LiveServer, authorization: bytes) -> None:
    reply = send_raw(live, _head(b"GET /v1/engine HTTP/1.1", b"Authorization: " + authorization))
    assert 400 <= reply.status < 500, reply.body[:300]


def test_an_authorization_header_too_large_for_the_server_is_not_a_500(live: LiveServer) -> None:
    reply = send_raw(live, _head(b"GET /v1/engine HTTP/1.1",
                                 b"Authorization: Bearer " + b"A" * 70_000))
    assert 400 <= reply.status < 500


@pytest.mark.parametrize(("content_length", "body", "half_close"), [
    (b"5", b'{"name": "x", "role": "app"}', False),   # shorter than the body
    (b"500", b'{"name": "x"}', True),                   # longer: the client stops sending
    (b"-1", b'{"name": "x"}', False),
    (b"abc", b'{"name": "x"}', False),
    (b"99999999999999999999", b'{"name": "x"}', False),
    (b"0", b'{"name": "x", "role": "app"}', False),
], ids=["short", "long", "negative", "not_a_number", "huge", "zero"])
def test_a_content_length_that_lies_is_never_a_500(
        live: LiveServer, make_key: KeyFactory, content_length: bytes, body: bytes,
        half_close: bool) -> None:
    head = _head(b"POST /v1/keys HTTP/1.1", b"Authorization: Bearer " + make_key("admin").encode(),
                 b"Content-Type: application/json", b"Content-Length: " + content_length)
    reply = send_raw(live, head, body, half_close=half_close)
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])


# --------------------------------------------------------------- lone UTF-16 surrogates

LONE_SURROGATES = {"high": b'"\\ud800"', "low": b'"\\udc00x"', "high_then_text": b'"\\uD83Dx"',
                   "escaped_backslash_first": b'"\\\\\\ud800"'}


@pytest.mark.parametrize("text", LONE_SURROGATES.values(), ids=LONE_SURROGATES.keys())
def test_a_lone_surrogate_in_json_is_a_400_on_every_json_route(
        app: Flask, http: Http, make_key: KeyFactory, text: bytes) -> None:
    # Python's JSON parsers accept "\ud800" into a str that UTF-8 cannot encode: the
    # first database call holding it raised UnicodeEncodeError, a 500 on SQLite and
    # PostgreSQL (found by the hostile sweep, tests/security/test_hostile_sweep.py).
    keys: dict[str, str] = {}
    body = b'{"collection_id": "c1", "description": ' + text + b"}"
    for method, path, endpoint in json_routes(app):
        if endpoint == "rekognition.dispatch":
            continue
        headers = {"Content-Type": "application/json"}
        if access.rule_for(endpoint) is not access.Access.PUBLIC:
            role = sorted(access.roles_allowed(endpoint))[0]
            keys.setdefault(role, make_key(role))
            headers["Authorization"] = f"Bearer {keys[role]}"
        reply = http.request(method, path, body=body, headers=headers)
        assert reply.status == 400, (method, path, reply.status, reply.body[:300])
        assert "surrogate" in reply.json()["error"]["message"]
    key = api_key(app, "operator")
    body = b'{"NextToken": ' + text + b"}"
    reply = http.post("/", body=body, headers=sigv4_headers(
        key, body, target="RekognitionService.ListCollections", url=http.url + "/"))
    assert reply.status == 400, reply.body[:300]
    assert reply.json()["__type"] == "SerializationException"


def test_a_surrogate_pair_and_an_escaped_backslash_are_text_that_is_kept(
        http: Http, make_key: KeyFactory) -> None:
    admin = make_key("admin")
    body = '{"collection_id": "c1", "description": "\\ud83d\\ude00 C:\\\\ud800"}'
    made = http.post("/v1/collections", key=admin, body=body.encode(),
                     headers={"Content-Type": "application/json"})
    assert made.status == 201, made.body[:300]
    described = http.get("/v1/collections/c1", key=admin).json()
    assert described["Description"] == "\U0001f600 C:\\ud800"
