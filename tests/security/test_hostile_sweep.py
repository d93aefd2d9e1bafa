"""A hostile sweep of the two surfaces that parse their own input: the console's forms
and queries, and the Rekognition-compatible endpoint. Hand-written cases, over a real
HTTP server: oversized and repeated fields, invalid UTF-8, a Content-Type or
Content-Length that lies about the body, X-Amz-Target values naming no operation or
holding unicode, members of the wrong JSON type. Every answer must be a 4xx (or the
page itself), never a 5xx, and come within seconds; nothing may be stored."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask

from faceapi.config import Settings
from tests.conftest import KeyFactory
from tests.emulator_server import LiveServer, api_key, sigv4_headers
from tests.fakes import unit_vector
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.integration.verify_support import enroll, make_collection
from tests.security.conftest import Http
from tests.security.raw_http import exchange

SECONDS = 10.0
CSRF_RE = re.compile(rb'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # PostgreSQL refuses what SQLite stores (NULs, over-long text): run with --db too.
    # Thousands of requests a minute: rate limits are tested elsewhere, and werkzeug's
    # test server (not gunicorn) leaves a 429 whose body it did not read hanging.
    return settings.with_overrides(database_url=request.getfixturevalue("database_url"),
                                   rate_limit_default="100000/minute")


@dataclass
class Raw:
    status: int
    head: bytes
    body: bytes
    seconds: float


def send(live: LiveServer, head: bytes, body: bytes = b"", *,
         half_close: bool = False) -> Raw:
    """Bytes on a socket, byte for byte as written (no client library cleans them)."""
    started = time.monotonic()
    host = f"Host: 127.0.0.1:{live.server.server_port}".encode()
    status, head_out, body_out = exchange(
        live.server.server_port,
        head.replace(b"\r\nHost: -\r\n", b"\r\n" + host + b"\r\n", 1) + b"\r\n\r\n" + body,
        timeout=SECONDS * 2, half_close=half_close)
    return Raw(status, head_out, body_out, time.monotonic() - started)


def request_head(method: str, path: str, headers: dict[str, bytes]) -> bytes:
    # The Host line is filled in by send(): SigV4 signs it with the server's port.
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: -", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines)


@dataclass
class Session:
    cookie: bytes
    csrf: bytes


def sign_in(http: Http, key: str) -> Session:
    page = http.get("/console/signin")
    cookie = (page.headers.get("Set-Cookie") or "").split(";", 1)[0]
    token = CSRF_RE.search(page.body)
    assert token, page.body[:300]
    reply = http.post("/console/signin", body=f"api_key={key}&csrf_token={token.group(1).decode()}"
                      .encode(), headers={"Cookie": cookie,
                                          "Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 302, reply.body[:300]
    cookie = (reply.headers.get("Set-Cookie") or "").split(";", 1)[0]
    # Every page carries the session's token (in its sign-out form).
    page = http.get("/console/overview", headers={"Cookie": cookie})
    token = CSRF_RE.search(page.body)
    assert token, page.body[:300]
    return Session(cookie.encode(), token.group(1))


@dataclass
class Outcome:
    case: str
    status: int
    seconds: float


def judge(outcomes: list[Outcome]) -> None:
    bad = [o for o in outcomes if o.status >= 500 or o.seconds > SECONDS]
    assert not bad, bad


# ------------------------------------------------------------------------ the console

@pytest.fixture
def world(app: Flask) -> None:
    make_collection(app, "c1")
    enroll(app, "c1", "alice", unit_vector(1))


def hostile_form_bodies(csrf: bytes) -> dict[str, tuple[bytes, bytes]]:
    """name -> (Content-Type, body); every body but the lying ones carries the token."""
    token = b"csrf_token=" + csrf
    form = b"application/x-www-form-urlencoded"
    boundary = b"b0undary"
    multipart = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="csrf_token"'
                 b"\r\n\r\n" + csrf + b"\r\n--" + boundary + b"--\r\n")
    return {
        "field_400kb": (form, token + b"&reason=" + b"x" * 400_000
                        + b"&confirm_subject=" + b"y" * 400_000),
        "field_over_form_memory": (form, token + b"&reason=" + b"x" * 1_000_000),
        "fields_repeated_5000": (form, token + b"&policy=login" * 5000),
        "names_5000": (form, token + b"".join(b"&f%d=1" % i for i in range(5000))),
        "csrf_repeated_bad_first": (form, b"csrf_token=wrong&" + token),
        "csrf_repeated_good_first": (form, token + b"&csrf_token=wrong"),
        "invalid_utf8_values": (form, token + b"&reason=%FF%FE&decision=%C0%AF&face_id=%ED%A0%80"
                                b"&confirm_subject=%FF&policy=%FE&actor=%FF&since=%FF"),
        "invalid_utf8_raw": (form, token + b"&reason=\xff\xfe&policy=\xc0"),
        "invalid_utf8_name": (form, token + b"&%FF%FE=1"),
        "overlong_percent": (form, token + b"&reason=%&policy=%G1&actor=%%%"),
        "multipart_without_boundary": (b"multipart/form-data", token),
        "multipart_garbage": (b"multipart/form-data; boundary=" + boundary, b"\x00\xff" * 500),
        "multipart_unterminated": (b"multipart/form-data; boundary=" + boundary,
                                   multipart[:-12]),
        "multipart_1000_parts": (b"multipart/form-data; boundary=" + boundary, b"".join(
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="p"\r\n\r\nv\r\n'
            for _ in range(1100)) + multipart),
        "json_said_form": (form, b'{"csrf_token": "' + csrf + b'"}'),
        "form_said_json": (b"application/json", token),
        "form_said_utf16": (form + b"; charset=utf-16", token),
        "binary_said_form": (form, bytes(range(256)) * 40),
        "text_plain": (b"text/plain", token),
    }


CONSOLE_POSTS = ("/console/signin", "/console/audit/verify",
                 "/console/collections/c1/subjects/alice/erase",
                 "/console/collections/c1/subjects/alice/unlock",
                 "/console/reviews/r1/decision", "/console/signout")


@pytest.mark.usefixtures("world")
def test_hostile_console_form_bodies_are_never_a_5xx_nor_slow(
        app: Flask, live: LiveServer, http: Http, make_key: KeyFactory) -> None:
    admin = sign_in(http, make_key("admin"))
    reviewer = sign_in(http, make_key("reviewer"))
    outcomes = []
    for path in CONSOLE_POSTS:
        who = reviewer if "/reviews/" in path else admin
        for name, (ctype, body) in hostile_form_bodies(who.csrf).items():
            reply = send(live, request_head("POST", path, {
                "Cookie": who.cookie, "Content-Type": ctype,
                "Content-Length": str(len(body)).encode()}), body)
            outcomes.append(Outcome(f"{path} {name}", reply.status, reply.seconds))
    judge(outcomes)
    # Nothing was erased: alice and her face are still there.
    faces = http.get("/v1/collections/c1/faces", key=make_key("operator")).json()["Faces"]
    assert [f["UserId"] for f in faces] == ["alice"]


CONSOLE_QUERIES = [
    "/console/audit?since=%FF&until=99999-01-01T00:00&after=" + "9" * 30,
    "/console/audit?since=0001-01-01T00:00%2B05:00&action=%FF&role=" + "r" * 5000,
    "/console/audit?after=%C2%B2&resource=" + quote("\u2603" * 1000),
    "/console/audit/export?format=csv&since=%FF",
    "/console/audit/export?format=%FF",
    "/console/audit/export?format=jsonl&format=csv&actor=a&actor=b",
    "/console/audit/events/" + "e" * 5000,
    "/console/audit/events/%FF%FE",
    "/console/collections?after=%FF",
    "/console/collections?after=" + "a" * 10_000,
    "/console/collections/%FF/subjects/%FE",
    "/console/collections/" + "c" * 4000,
    "/console/overview?policy=%FF&policy=login",
    "/console/signin?next=%FF",
    "/console/signin?next=/console/%FF%0d%0a",
    "/console/calibration?x=%FF",
]


@pytest.mark.usefixtures("world")
def test_hostile_console_queries_and_paths_are_never_a_5xx_nor_slow(
        live: LiveServer, http: Http, make_key: KeyFactory) -> None:
    admin = sign_in(http, make_key("admin"))
    reviewer = sign_in(http, make_key("reviewer"))
    outcomes = []
    for path in [*CONSOLE_QUERIES, "/console/reviews?status=%FF&after=%FF&policy=" + "p" * 3000,
                 "/console/reviews/" + "r" * 5000, "/console/reviews/%FF/evidence/probe.jpg"]:
        who = reviewer if path.startswith("/console/reviews") else admin
        reply = send(live, request_head("GET", path, {"Cookie": who.cookie}))
        outcomes.append(Outcome(path[:80], reply.status, reply.seconds))
    judge(outcomes)


LYING_LENGTHS = {
    "huge": (b"99999999999999999999", False),  # over the app's limit: refused unread
    "long_then_closed": (b"1000000", True),    # within it, the client stops sending
    "negative": (b"-5", False), "hex": (b"0x10", False), "list": (b"1, 2", False),
}


@pytest.mark.parametrize("lie", LYING_LENGTHS.values(), ids=LYING_LENGTHS.keys())
def test_a_lying_content_length_on_a_console_form_or_the_emulator_is_never_a_5xx(
        app: Flask, live: LiveServer, http: Http, make_key: KeyFactory,
        lie: tuple[bytes, bool]) -> None:
    # A stalled body on gunicorn: tests/integration/test_slow_clients.py.
    content_length, half_close = lie
    admin = sign_in(http, make_key("admin"))
    key = api_key(app, "operator")
    body = b'{"MaxResults": 1}'
    signed = sigv4_headers(key, body, target="RekognitionService.ListCollections",
                           url=http.url + "/")
    for path, headers, sent in [
        ("/console/audit/verify", {"Cookie": admin.cookie,
                                   "Content-Type": b"application/x-www-form-urlencoded"},
         b"csrf_token=" + admin.csrf),
        ("/", {k: v.encode() for k, v in signed.items() if k.lower() != "content-length"}, body),
    ]:
        reply = send(live, request_head("POST", path, {**headers,
                                                        "Content-Length": content_length}),
                     sent, half_close=half_close)
        assert 400 <= reply.status < 500 or reply.status == 302, (path, reply.status,
                                                                  reply.body[:200])
        assert reply.seconds < SECONDS


# ----------------------------------------------------------------------- the emulator

TARGETS: dict[str, bytes] = {
    "unknown": b"RekognitionService.DetectLabels",
    "prefix_only": b"RekognitionService.",
    "no_prefix": b"DetectFaces",
    "lower_case": b"rekognitionservice.detectfaces",
    "trailing_space_inside": b"RekognitionService.DetectFaces\t",
    "dunder": b"RekognitionService.__class__",
    "utf8": "RekognitionService.D\u00e9tect\u2603".encode(),
    "latin1": b"RekognitionService.D\xe9tect",
    "long": b"RekognitionService." + b"A" * 8000,
    "other_service": b"AmazonS3.ListBuckets",
}


def signed_raw(key: Any, body: bytes, target: bytes | None, url: str,
               content_type: str = "application/x-amz-json-1.1") -> dict[str, bytes]:
    """botocore's headers, signed over the target as text where botocore can sign it
    (latin-1 decodable); the raw target bytes go on the wire."""
    text = None if target is None else target.decode("latin-1")
    headers = sigv4_headers(key, body, target=text, url=url, content_type=content_type)
    out = {k: v.encode("latin-1") if isinstance(v, str) else v for k, v in headers.items()
           if k.lower() != "content-length"}
    if target is not None:
        out["X-Amz-Target"] = target
    out["Content-Length"] = str(len(body)).encode()
    return out


def test_an_x_amz_target_naming_no_operation_is_a_4xx_signed_or_not(
        app: Flask, live: LiveServer, http: Http) -> None:
    key = api_key(app, "admin")
    body = b"{}"
    outcomes = []
    for name, target in TARGETS.items():
        for signed in (True, False):
            headers = signed_raw(key, body, target, http.url + "/") if signed else {
                "X-Amz-Target": target, "Content-Type": b"application/x-amz-json-1.1",
                "Content-Length": b"2"}
            reply = send(live, request_head("POST", "/", headers), body)
            outcomes.append(Outcome(f"{name} signed={signed}", reply.status, reply.seconds))
            if signed and reply.status < 500:
                # Rekognition's error shape, whatever the target said.
                assert b"__type" in reply.body, (name, reply.body[:200])
    judge(outcomes)
    assert {o.status for o in outcomes} <= {400, 403}, outcomes


def _image() -> dict[str, str]:
    return {"Bytes": base64.b64encode(b"not an image").decode()}


WRONG_VALUES: list[Any] = [None, True, -1, 2**63, 1e308, "", "x" * 5000, "\u2603\ud7ff",
                           [], ["x"] * 2000, {}, {"Bytes": 5}, {"S3Object": "x"}, [[[[]]]]]
MEMBERS = ("CollectionId", "Image", "SourceImage", "TargetImage", "FaceId", "FaceIds",
           "MaxResults", "MaxFaces", "NextToken", "ExternalImageId", "FaceMatchThreshold",
           "SimilarityThreshold", "QualityFilter", "Attributes", "DetectionAttributes",
           "Tags")


def test_every_emulator_operation_refuses_members_of_the_wrong_type_with_a_4xx(
        app: Flask, live: LiveServer, http: Http) -> None:
    """Each operation the emulator serves, with each member it may read set to each of
    a list of wrong values (one at a time, on an otherwise plausible request)."""
    from faceapi.entrypoints.web.emulator.operations import HANDLERS

    make_collection(app, "c1")
    key = api_key(app, "admin")
    outcomes = []
    plausible = {"CollectionId": "c1", "Image": _image(), "SourceImage": _image(),
                 "TargetImage": _image(), "FaceId": "0" * 36, "FaceIds": ["0" * 36]}
    for operation in sorted(HANDLERS):
        for member in MEMBERS:
            for value in WRONG_VALUES:
                body = json.dumps({**plausible, member: value}).encode()
                headers = signed_raw(key, body, f"RekognitionService.{operation}".encode(),
                                     http.url + "/")
                reply = send(live, request_head("POST", "/", headers), body)
                outcomes.append(Outcome(f"{operation} {member}={str(value)[:20]}",
                                        reply.status, reply.seconds))
    judge(outcomes)


EMULATOR_BODIES: dict[str, tuple[str, bytes]] = {
    "array": ("application/x-amz-json-1.1", b"[]"),
    "string": ("application/x-amz-json-1.1", b'"x"'),
    "number": ("application/x-amz-json-1.1", b"1e999"),
    "null": ("application/x-amz-json-1.1", b"null"),
    "invalid_utf8": ("application/x-amz-json-1.1", b'{"NextToken": "\xff\xfe"}'),
    "lone_surrogate": ("application/x-amz-json-1.1", b'{"NextToken": "\\ud800"}'),
    "duplicate_keys": ("application/x-amz-json-1.1", b'{"MaxResults": 1, "MaxResults": "x"}'),
    "huge_int": ("application/x-amz-json-1.1", b'{"MaxResults": ' + b"9" * 5000 + b"}"),
    "nan": ("application/x-amz-json-1.1", b'{"MaxResults": NaN}'),
    "trailing_garbage": ("application/x-amz-json-1.1", b'{"MaxResults": 1} xyz'),
    "empty": ("application/x-amz-json-1.1", b""),
    "charset_utf16": ("application/x-amz-json-1.1; charset=utf-16", b"{}"),
    "json_type": ("application/json", b"{}"),
    "form_type": ("application/x-www-form-urlencoded", b"MaxResults=1"),
    "multipart_type": ("multipart/form-data; boundary=x", b"--x--\r\n"),
}


@pytest.mark.parametrize("operation", ["ListCollections", "ListFaces", "DetectFaces"])
def test_emulator_bodies_that_are_not_a_json_object_are_a_4xx(
        app: Flask, live: LiveServer, http: Http, operation: str) -> None:
    key = api_key(app, "admin")
    outcomes = []
    for name, (ctype, body) in EMULATOR_BODIES.items():
        headers = signed_raw(key, body, f"RekognitionService.{operation}".encode(),
                             http.url + "/", content_type=ctype)
        reply = send(live, request_head("POST", "/", headers), body)
        outcomes.append(Outcome(name, reply.status, reply.seconds))
    judge(outcomes)
