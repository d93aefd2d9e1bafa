"""Issue 12, finding 5: every refusal is in the audit trail, whatever the client sends.

A client chose an X-Request-ID the audit schema refuses (a key-shaped `fa_...` value,
64 mixed-case characters), the `auth.fail` / `authz.deny` write failed, and the refusal
went unrecorded. Here hostile values go, as raw bytes over a real socket, into every
field a refusal records (request id, path, key text, user agent), on 401, 403 and
out-of-scope 404 paths; each refusal must leave exactly one event, stamped with the
request id the server answered with, and no key-shaped value may be stored.
"""

from __future__ import annotations

import json
import secrets
import socket
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from faceapi.adapters.store.tables import audit_events
from faceapi.config import Settings
from faceapi.domain.audit import API_KEY_RE
from tests.conftest import KeyFactory
from tests.emulator_server import LiveServer
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)

KEY_SHAPED = "fa_" + secrets.token_hex(4) + "_" + "Ab3" * 13 + "x"  # 52 characters
MIXED_64 = ("aB3" * 22)[:64]
HOSTILE_VALUES: dict[str, bytes] = {
    "key_shaped": KEY_SHAPED.encode(),
    "mixed_case_64": MIXED_64.encode(),
    "ten_kb": b"r" * 10_240,
    "unicode": "r\u00e9q-\u2603-\U0001f600".encode(),
    "latin1": b"req-\xff\xfe",
    "nul": b"req\x00id",
    "folded_crlf": b"req\r\n id",
    "control": b"req\x1b[31mred",
}
HOSTILE_PATH_SEGMENTS: dict[str, bytes] = {
    "key_shaped": KEY_SHAPED.encode(),
    "mixed_case_64": MIXED_64.encode(),
    "long": b"p" * 4000,
    "raw_high_bytes": b"\xff\xfe\xc3\xa9",
    "encoded_nul_crlf": b"%00%0d%0a%1b",
    "encoded_unicode": b"%E2%98%83%F0%9F%98%80",
    "encoded_key": KEY_SHAPED.replace("_", "%5F").encode(),
}


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # PostgreSQL enforces column lengths SQLite ignores: run with --db=postgresql too.
    return settings.with_overrides(database_url=request.getfixturevalue("database_url"))


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes


def send(live: LiveServer, method: str, path: bytes, headers: dict[str, bytes]) -> Raw:
    """One request written byte for byte, so nothing a client library refuses to send
    (CR/LF, NUL, latin-1, unicode) is cleaned on the way."""
    port = live.server.server_port
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1",
             b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return Raw(int(status_line.split()[1]), parsed, body)


def events(app: Flask) -> list[dict[str, Any]]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        rows = conn.execute(select(audit_events).order_by(audit_events.c.seq)).mappings()
        return [dict(row) for row in rows]


def audit_total(app: Flask) -> int:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def assert_one_event_per_refusal(app: Flask, before: int, reply: Raw, action: str) -> None:
    after = events(app)
    assert len(after) == before + 1, (reply.status, reply.body[:200])
    event = after[-1]
    assert event["action"] == action
    # The id the server answered with is the one recorded: the refusal can be found.
    assert event["request_id"] == reply.headers["x-request-id"]
    stored = json.dumps({k: str(v) for k, v in event.items()})
    assert not API_KEY_RE.search(stored), stored
    assert KEY_SHAPED not in stored
    for control in ("\r", "\n", "\x00"):
        assert control not in stored


@pytest.fixture
def keys(make_key: KeyFactory) -> dict[str, str]:
    return {"app": make_key("app"), "operator_c1": make_key("operator", collections=["c1"])}


def refusals(keys: dict[str, str]) -> list[tuple[str, str, dict[str, bytes], int, str]]:
    """(name, path, headers, status, action) of one refusal of each kind."""
    app_key = f"Bearer {keys['app']}".encode()
    forged = f"Bearer fa_{secrets.token_hex(4)}_{secrets.token_hex(20)}".encode()
    return [
        ("no_key", "/v1/engine", {}, 401, "auth.fail"),
        ("forged_key", "/v1/engine", {"Authorization": forged}, 401, "auth.fail"),
        ("wrong_role", "/v1/keys", {"Authorization": app_key}, 403, "authz.deny"),
    ]


@pytest.mark.parametrize("value", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
def test_a_hostile_request_id_cannot_keep_a_refusal_out_of_the_trail(
        app: Flask, live: LiveServer, keys: dict[str, str], value: bytes) -> None:
    for name, path, headers, status, action in refusals(keys):
        before = audit_total(app)
        reply = send(live, "GET", path.encode(), {**headers, "X-Request-ID": value})
        if reply.status == 400 and audit_total(app) == before:
            # The HTTP server itself refused the header (e.g. a NUL): no app, no refusal.
            continue
        assert reply.status == status, (name, reply.body[:200])
        assert_one_event_per_refusal(app, before, reply, action)
        # A value the audit trail could not hold is replaced, not echoed back.
        assert reply.headers["x-request-id"].encode() != value or len(value) <= 64


@pytest.mark.parametrize("value", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
def test_a_hostile_user_agent_cannot_keep_a_refusal_out_of_the_trail(
        app: Flask, live: LiveServer, keys: dict[str, str], value: bytes) -> None:
    for name, path, headers, status, action in refusals(keys):
        before = audit_total(app)
        reply = send(live, "GET", path.encode(), {**headers, "User-Agent": value})
        if reply.status == 400 and audit_total(app) == before:
            continue
        assert reply.status == status, (name, reply.body[:200])
        assert_one_event_per_refusal(app, before, reply, action)


@pytest.mark.parametrize("segment", HOSTILE_PATH_SEGMENTS.values(),
                         ids=HOSTILE_PATH_SEGMENTS.keys())
def test_a_hostile_path_cannot_keep_a_refusal_out_of_the_trail(
        app: Flask, live: LiveServer, keys: dict[str, str], segment: bytes) -> None:
    app_key = f"Bearer {keys['app']}".encode()
    operator = f"Bearer {keys['operator_c1']}".encode()
    cases = [
        (b"/v1/collections/" + segment, {}, 401, "auth.fail"),
        (b"/v1/keys/" + segment, {"Authorization": app_key}, 403, "authz.deny"),
        # A collection outside the operator's scope answers 404 like a missing one,
        # and the refusal, with the collection id the client chose, is audited.
        (b"/v1/collections/" + segment, {"Authorization": operator}, 404, "authz.deny"),
    ]
    if b"%00" in segment:
        # A NUL is refused after authentication and authorisation (both audited above)
        # but before any view looks the collection up: a 400 that reveals nothing about
        # the collection and, like any malformed request, is logged, not audited.
        reply = send(live, "GET", b"/v1/collections/" + segment, {"Authorization": operator})
        assert reply.status == 400, reply.body[:200]
        cases = cases[:2]
    for path, headers, status, action in cases:
        before = audit_total(app)
        reply = send(live, "GET", path, headers)
        assert reply.status == status, (path[:80], reply.body[:200])
        assert_one_event_per_refusal(app, before, reply, action)


@pytest.mark.parametrize("authorization", [
    b"Bearer " + KEY_SHAPED.encode(),
    b"Bearer " + b"x" * 10_240,
    b"Bearer fa_" + MIXED_64.encode() + b"_" + b"y" * 40,
    b"Bearer fa_Abcd1234_" + "\u00e9".encode() * 20,
    b"Bearer \xff\xfe\xfd",
    b"AWS4-HMAC-SHA256 Credential=" + MIXED_64.encode() + b"/20260101/us-east-1/"
    b"rekognition/aws4_request, SignedHeaders=host, Signature=00",
    b"AWS4-HMAC-SHA256 Credential=" + KEY_SHAPED.encode() + b"/x, Signature=1",
], ids=["key_shaped", "ten_kb", "mixed_case_id", "utf8", "latin1", "sigv4_mixed",
        "sigv4_key_shaped"])
def test_hostile_key_text_is_refused_and_audited_once_without_the_text(
        app: Flask, live: LiveServer, authorization: bytes) -> None:
    before = audit_total(app)
    reply = send(live, "GET", b"/v1/engine", {"Authorization": authorization,
                                                "X-Request-ID": KEY_SHAPED.encode()})
    assert reply.status == 401, reply.body[:200]
    assert_one_event_per_refusal(app, before, reply, "auth.fail")


def test_the_key_shaped_request_id_of_the_finding_is_replaced_by_a_server_id(
        app: Flask, live: LiveServer) -> None:
    reply = send(live, "GET", b"/v1/engine", {"X-Request-ID": KEY_SHAPED.encode()})
    assert reply.status == 401
    assert reply.headers["x-request-id"] != KEY_SHAPED
    assert json.loads(reply.body)["error"]["request_id"] == reply.headers["x-request-id"]
    [event] = [e for e in events(app) if e["action"] == "auth.fail"]
    assert event["request_id"] == reply.headers["x-request-id"]


def test_a_well_formed_request_id_is_kept(app: Flask, live: LiveServer) -> None:
    reply = send(live, "GET", b"/v1/engine", {"X-Request-ID": b"trace-2026.11_abc"})
    assert reply.headers["x-request-id"] == "trace-2026.11_abc"
    [event] = [e for e in events(app) if e["action"] == "auth.fail"]
    assert event["request_id"] == "trace-2026.11_abc"
