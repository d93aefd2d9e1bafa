"""Attacks on the review callbacks (issue 17, item 1), through the live server.

- a callback to the metadata service, a private network or localhost when not allowed:
  refused at registration (422, audited, nothing stored) and, for a name that resolves
  there later (DNS rebinding), refused at delivery without connecting;
- another key cannot read, change or remove my webhook, nor read my delivery log;
- a pending decision is never sent, even from an outbox row that names it;
- a receiver that stalls cannot hold the deliverer past its deadline.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from faceapi.adapters.webhook_sender import HttpWebhookSender
from faceapi.config import Settings
from faceapi.domain.webhooks import AddressRules, Delivery, DeliveryStatus
from faceapi.entrypoints.web.api.verify import render_decision
from tests.conftest import KeyFactory
from tests.fakes import FakeEngine
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.integration.verify_support import b64, enroll, make_collection, scripted, vector_at
from tests.integration.webhook_support import Receiver, serve_receiver
from tests.security.conftest import Http
from tests.security.support import ALICE, audit_rows
from tests.security.support import settings as _backend_settings  # noqa: F401


@pytest.fixture
def settings(_backend_settings: Settings) -> Settings:  # noqa: F811
    return _backend_settings.with_overrides(
        webhook_allowed_hosts=("127.0.0.1", "hooks.example.com", "*.example.org"),
        webhook_allowed_networks=("127.0.0.1/32",), webhook_allow_http_loopback=True,
        webhook_timeout_seconds=1.0, webhook_lease_seconds=4)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


def pending_verify(app: Flask, http: Http, fake_engine: FakeEngine, *, key: str) -> Any:
    """Alice enrolled in `watch` (identity_check) and a verify of her own face by `key`:
    a decision pending review, as JSON."""
    make_collection(app, "watch", ("identity_check",))
    enroll(app, "watch", "alice", ALICE)
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    return http.post("/v1/verify", key=key, json_body={
        "collection_id": "watch", "subject_id": "alice", "policy": "identity_check",
        "image": b64(probe)}).json()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata: http, not allowed
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/hook",
    "https://localhost/hook",
    "https://[::1]/hook",
    "https://127.0.0.2/hook",  # loopback, but not the allowed host
    "http://hooks.example.com/hook",  # allowed host, but plain http
    "https://hooks.example.com.evil.net/hook",
    "https://user:pw@hooks.example.com/hook",
    "https://example.org/hook",  # "*.example.org" is subdomains only
    "ftp://hooks.example.com/hook",
    "https://hooks.example.com:0/hook",
    "https://hooks.example.com/hook\r\nX-Injected: 1",
])
def test_a_webhook_to_a_host_that_is_not_allowed_is_refused_audited_and_not_stored(
        app: Flask, http: Http, make_key: KeyFactory, url: str) -> None:
    key = make_key("app")
    reply = http.request("PUT", "/v1/webhook", key=key, json_body={"url": url})
    assert reply.status == 422, reply.body
    assert reply.json()["error"]["code"] in ("webhook_url_refused", "validation_error")
    assert http.get("/v1/webhook", key=key).status == 404
    if reply.json()["error"]["code"] == "webhook_url_refused":
        (event,) = audit_rows(app, "webhook.register")
        assert event["outcome"] == "refused"
        assert "meta-data" not in str(event)
        assert "pw" not in str(event["details"])


def test_allowed_hosts_and_subdomains_are_accepted(http: Http, make_key: KeyFactory) -> None:
    for url in ("https://hooks.example.com/a?token=x", "https://api.example.org/hook"):
        reply = http.request("PUT", "/v1/webhook", key=make_key("app"), json_body={"url": url})
        assert reply.status == 200, reply.body
        assert reply.json()["secret"].startswith("whsec_")


def fake_resolver(*addresses: str) -> Any:
    def resolve(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]
    return resolve


@pytest.mark.parametrize("addresses", [
    ("169.254.169.254",), ("10.1.2.3",), ("127.0.0.1",), ("192.168.0.10",),
    ("93.184.215.14", "169.254.169.254"),  # one bad answer among good ones is enough
    ("::ffff:169.254.169.254",), ("fd00::1",), ("0.0.0.0",),  # noqa: S104
])
def test_a_name_that_resolves_to_a_private_address_at_delivery_is_never_connected_to(
        addresses: tuple[str, ...]) -> None:
    rules = AddressRules(hosts=("hooks.example.com",))
    sender = HttpWebhookSender(rules, timeout_seconds=1.0,
                               resolver=fake_resolver(*addresses))
    connected: list[Any] = []
    original = socket.create_connection
    socket.create_connection = lambda *a, **k: connected.append(a)  # type: ignore[assignment]
    try:
        result = sender.send("https://hooks.example.com/hook", b"{}", {})
    finally:
        socket.create_connection = original
    assert (result.status_code, result.error) == (None, "address_not_allowed")
    assert connected == []


def test_a_url_no_longer_allowed_by_the_settings_is_not_sent() -> None:
    sender = HttpWebhookSender(AddressRules(hosts=("other.example.com",)),
                               timeout_seconds=1.0, resolver=fake_resolver("93.184.215.14"))
    assert sender.send("https://hooks.example.com/hook", b"{}", {}).error == \
        "url_not_allowed"


def test_a_stalling_receiver_cannot_hold_the_sender_past_its_deadline(
        receiver: Receiver) -> None:
    receiver.stall_first = True
    rules = AddressRules(hosts=("127.0.0.1",), networks=("127.0.0.1/32",),
                         http_loopback=True)
    started = time.monotonic()
    result = HttpWebhookSender(rules, timeout_seconds=1.0).send(
        receiver.url, b"{}", {"Faceapi-Delivery-Id": "d1"})
    assert result.error == "timeout"
    assert time.monotonic() - started < 3


def test_another_key_can_neither_read_change_nor_remove_my_webhook(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        receiver: Receiver) -> None:
    mine, theirs = make_key("app"), make_key("app")
    http.request("PUT", "/v1/webhook", key=mine, json_body={"url": receiver.url})
    # Their reads and writes touch their own webhook only: /v1/webhook names no key.
    assert http.get("/v1/webhook", key=theirs).status == 404
    assert http.delete("/v1/webhook", key=theirs).status == 404
    http.request("PUT", "/v1/webhook", key=theirs,
                 json_body={"url": "https://hooks.example.com/theirs"})
    assert http.get("/v1/webhook", key=mine).json()["url"] == receiver.url
    # Roles that request no decision have no webhook; a key id in the path is no route.
    for role in ("reviewer", "auditor"):
        reply = http.request("PUT", "/v1/webhook", key=make_key(role),
                             json_body={"url": receiver.url})
        assert reply.status == 403
    assert http.request("PUT", "/v1/keys/x/webhook", key=theirs,
                        json_body={"url": receiver.url}).status in (404, 405)

    # My reviewed decision is delivered to me and listed for me only.
    decision = pending_verify(app, http, fake_engine, key=mine)
    http.post(f"/v1/reviews/{decision['review_id']}/decision", key=make_key("reviewer"),
              json_body={"decision": "reject", "reason": "not the same"})
    app.extensions["faceapi"].use_cases.deliver_webhooks(render_decision)
    assert [r.json()["decision_id"] for r in receiver.requests] == [decision["decision_id"]]
    assert http.get("/v1/webhook/deliveries", key=theirs).json()["deliveries"] == []
    assert len(http.get("/v1/webhook/deliveries", key=mine).json()["deliveries"]) == 1


def test_a_pending_decision_is_never_sent_even_from_an_outbox_row_naming_it(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        receiver: Receiver) -> None:
    key = make_key("app")
    http.request("PUT", "/v1/webhook", key=key, json_body={"url": receiver.url})
    pending = pending_verify(app, http, fake_engine, key=key)
    container = app.extensions["faceapi"]
    now = container.clock.now()
    key_id = http.get("/v1/webhook", key=key).json()["key_id"]
    # A bug (or a hand-made row) queues a pending decision: the deliverer refuses it.
    with container.store.uow() as uow:
        uow.webhooks.enqueue(Delivery(
            id=str(uuid.uuid4()), key_id=key_id, decision_id=pending["decision_id"],
            status=DeliveryStatus.PENDING, attempts=0,
            next_attempt_at=now - timedelta(seconds=1), created_at=now))
        uow.audit.append(audit_rows_event())
        uow.commit()
    report = container.use_cases.deliver_webhooks(render_decision)
    assert (report.delivered, report.cancelled) == (0, 1)
    assert receiver.requests == []
    (row,) = http.get("/v1/webhook/deliveries", key=key).json()["deliveries"]
    assert (row["status"], row["last_error"]) == ("cancelled", "not_final")


def audit_rows_event() -> Any:
    from faceapi.domain.audit import Action, Actor, AuditEvent
    return AuditEvent(action=Action.WEBHOOK_DELIVERY, outcome="queued",
                      actor=Actor.system("tests"))


def test_a_sender_that_crashes_records_a_failed_attempt_instead_of_wedging_the_outbox(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        receiver: Receiver) -> None:
    class Crashing:
        def send(self, url: str, body: bytes, headers: Any) -> Any:
            raise RuntimeError("a bug in the sender")

    key = make_key("app")
    http.request("PUT", "/v1/webhook", key=key, json_body={"url": receiver.url})
    decision = pending_verify(app, http, fake_engine, key=key)
    http.post(f"/v1/reviews/{decision['review_id']}/decision", key=make_key("reviewer"),
              json_body={"decision": "confirm", "reason": "same person"})
    container = app.extensions["faceapi"]
    container.webhook_sender = Crashing()
    assert container.use_cases.deliver_webhooks(render_decision).retrying == 1
    (row,) = http.get("/v1/webhook/deliveries", key=key).json()["deliveries"]
    assert (row["status"], row["attempts"], row["last_error"]) == \
        ("pending", 1, "internal_error")
