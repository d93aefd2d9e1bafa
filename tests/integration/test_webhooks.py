"""Review callbacks end to end (issue 17, item 1): the API on a live werkzeug server, a
real receiver on 127.0.0.1, the outbox in the selected database, and the deliverer both
in process and as the `faceapi webhooks deliver` command (killed -9 mid-delivery)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from faceapi.adapters.store.tables import webhook_deliveries
from faceapi.config import Settings
from faceapi.entrypoints.web.api.verify import render_decision
from tests.conftest import KeyFactory
from tests.fakes import FakeClock, FakeEngine
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.integration.verify_support import b64, enroll, make_collection, scripted, vector_at
from tests.integration.webhook_support import Receiver, serve_receiver
from tests.security.conftest import Http, serve
from tests.security.support import ALICE, audit_rows

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_SETTINGS: dict[str, Any] = {
    "webhook_allowed_hosts": ("127.0.0.1",), "webhook_allowed_networks": ("127.0.0.1/32",),
    "webhook_allow_http_loopback": True, "webhook_timeout_seconds": 2.0,
    "webhook_lease_seconds": 6, "webhook_backoff_seconds": 10, "webhook_max_attempts": 2}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**WEBHOOK_SETTINGS)


@pytest.fixture
def api(app: Flask) -> Iterator[Http]:
    """The app on a live werkzeug server."""
    server = serve(app)
    try:
        yield Http(server.url)
    finally:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


@pytest.fixture(autouse=True)
def watch(app: Flask) -> None:
    make_collection(app, "watch", ("identity_check", "login"))
    enroll(app, "watch", "alice", ALICE)


def register(api: Http, key: str, url: str) -> dict[str, Any]:
    reply = api.request("PUT", "/v1/webhook", key=key, json_body={"url": url})
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


def verify(api: Http, key: str, engine: FakeEngine, policy: str = "identity_check") -> Any:
    probe = scripted(engine, [vector_at(ALICE, 99.0)])
    reply = api.post("/v1/verify", key=key, json_body={
        "collection_id": "watch", "subject_id": "alice", "policy": policy,
        "image": b64(probe)})
    assert reply.status == 200, reply.body
    return reply.json()


def confirm(api: Http, reviewer: str, review_id: str) -> None:
    reply = api.post(f"/v1/reviews/{review_id}/decision", key=reviewer,
                      json_body={"decision": "confirm", "reason": "same person"})
    assert reply.status == 200, reply.body


def deliver(app: Flask) -> Any:
    return app.extensions["faceapi"].use_cases.deliver_webhooks(render_decision)


def outbox(app: Flask) -> list[dict[str, Any]]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(webhook_deliveries))]


def test_a_reviewed_decision_is_called_back_once_signed_with_what_its_requester_reads(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        receiver: Receiver) -> None:
    key = make_key("app")
    secret = register(api, key, receiver.url)["secret"]
    pending = verify(api, key, fake_engine)
    assert pending["outcome"] == "pending_review"

    # Pending: nothing is queued, nothing is sent.
    assert deliver(app).delivered == 0
    assert receiver.requests == []
    assert outbox(app) == []

    confirm(api, make_key("reviewer"), pending["review_id"])
    report = deliver(app)
    assert (report.delivered, report.retrying, report.failed) == (1, 0, 0)
    assert len(receiver.requests) == 1
    got = receiver.requests[0]
    assert got.path == "/hooks/faceapi"
    assert got.signed_with(secret)
    assert not got.signed_with("whsec_" + "0" * 64)
    assert got.headers["Faceapi-Event"] == "decision.final"
    # The body is the decision as GET /v1/decisions/{id} shows it to this key.
    read = api.get(f"/v1/decisions/{pending['decision_id']}", key=key).json()
    assert got.json() == read
    assert read["outcome"] == "match"
    assert read["final"] is True

    # Run again: nothing more is sent.
    assert deliver(app).delivered == 0
    assert len(receiver.requests) == 1

    log = api.get("/v1/webhook/deliveries", key=key).json()["deliveries"]
    assert [(d["delivery_id"], d["decision_id"], d["status"], d["attempts"],
             d["last_status_code"]) for d in log] == [
        (got.delivery_id, pending["decision_id"], "delivered", 1, 200)]
    outcomes = [r["outcome"] for r in audit_rows(app, "webhook.delivery")]
    assert outcomes == ["queued", "delivered"]
    assert [r["outcome"] for r in audit_rows(app, "webhook.register")] == ["registered"]
    # The audit trail names the host, never the URL's path (it can carry a token).
    assert "hooks" not in str(audit_rows(app, "webhook.register"))


def test_a_review_that_expires_is_called_back_as_rejected(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        clock: FakeClock, receiver: Receiver) -> None:
    key = make_key("app")
    secret = register(api, key, receiver.url)["secret"]
    pending = verify(api, key, fake_engine)
    clock.advance(hours=73)
    app.extensions["faceapi"].use_cases.sweep_reviews()
    assert deliver(app).delivered == 1
    (got,) = receiver.requests
    assert got.signed_with(secret)
    assert got.json()["decision_id"] == pending["decision_id"]
    assert got.json()["outcome"] == "rejected"
    assert "review_expired" in got.json()["reasons"]


def test_a_decision_final_in_its_own_answer_is_not_called_back(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        receiver: Receiver) -> None:
    key = make_key("app")
    register(api, key, receiver.url)
    decision = verify(api, key, fake_engine, policy="login")
    assert decision["final"] is True
    assert deliver(app).delivered == 0
    assert outbox(app) == []
    assert receiver.requests == []


def test_a_failing_receiver_is_retried_after_a_backoff_then_given_up_and_audited(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        clock: FakeClock, receiver: Receiver) -> None:
    receiver.status = 500
    key = make_key("app")
    register(api, key, receiver.url)
    confirm(api, make_key("reviewer"), verify(api, key, fake_engine)["review_id"])
    assert deliver(app).retrying == 1
    assert deliver(app).retrying == 0  # not due before its backoff
    assert len(receiver.requests) == 1
    clock.advance(seconds=11)
    assert deliver(app).failed == 1  # max attempts 2
    assert len(receiver.requests) == 2
    assert {r.delivery_id for r in receiver.requests} == {receiver.requests[0].delivery_id}
    (row,) = api.get("/v1/webhook/deliveries", key=key).json()["deliveries"]
    assert (row["status"], row["attempts"], row["last_status_code"], row["last_error"]) == \
        ("failed", 2, 500, "http_status")
    assert [r["outcome"] for r in audit_rows(app, "webhook.delivery")] == \
        ["queued", "retrying", "failed"]


def test_a_redirect_is_not_followed(app: Flask, api: Http, *, make_key: KeyFactory,
                                    fake_engine: FakeEngine, receiver: Receiver) -> None:
    receiver.status = 302
    key = make_key("app")
    register(api, key, receiver.url)
    confirm(api, make_key("reviewer"), verify(api, key, fake_engine)["review_id"])
    assert deliver(app).retrying == 1
    (row,) = api.get("/v1/webhook/deliveries", key=key).json()["deliveries"]
    assert (row["last_status_code"], row["last_error"]) == (302, "redirect_not_followed")


def _deliver_command(settings: Settings) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update({
        "FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(settings.data_dir),
        "FACEAPI_DATABASE_URL": settings.resolved_database_url,
        "FACEAPI_LOG_FORMAT": "json",
        "FACEAPI_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "FACEAPI_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "FACEAPI_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
        "FACEAPI_WEBHOOK_TIMEOUT_SECONDS": "2", "FACEAPI_WEBHOOK_LEASE_SECONDS": "6"})
    return subprocess.Popen([sys.executable, "-m", "faceapi", "webhooks", "deliver"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_a_deliverer_killed_mid_delivery_leaves_it_to_the_next_run_same_delivery_id(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        settings: Settings, receiver: Receiver) -> None:
    key = make_key("app")
    secret = register(api, key, receiver.url)["secret"]
    decision = verify(api, key, fake_engine)
    confirm(api, make_key("reviewer"), decision["review_id"])

    receiver.stall_first = True
    first = _deliver_command(settings)
    try:
        assert receiver.got_request.wait(30), first.communicate(timeout=5)
        os.kill(first.pid, signal.SIGKILL)  # while the receiver holds the request
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=10)  # reaps it and closes its pipes
    assert first.returncode == -signal.SIGKILL
    receiver.release.set()
    (row,) = outbox(app)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["lease_until"] is not None

    # Until the lease runs out no other run sends it; then the next run does, once.
    time.sleep(6.5)
    second = _deliver_command(settings)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()[-2000:]
    assert b"delivered 1;" in out
    again = _deliver_command(settings)
    out, _ = again.communicate(timeout=60)
    assert b"delivered 0;" in out

    assert len(receiver.requests) == 2  # at least once on the wire ...
    assert len({r.delivery_id for r in receiver.requests}) == 1
    assert len(receiver.applied) == 1  # ... exactly once for a receiver keeping ids
    assert all(r.signed_with(secret) for r in receiver.requests)
    assert receiver.requests[0].body == receiver.requests[1].body
    (row,) = outbox(app)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 2, 200)


def test_the_outbox_row_commits_with_the_final_decision_or_not_at_all(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from faceapi.domain.decisions import Vote
    from faceapi.services import review as review_svc
    from faceapi.services.review import VoteRequest

    key = make_key("app")
    register(api, key, receiver.url)
    pending = verify(api, key, fake_engine)
    real = review_svc.enqueue_final

    def crash_after_queueing(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise RuntimeError("the process dies before the commit")

    monkeypatch.setattr(review_svc, "enqueue_final", crash_after_queueing)
    reviewer = app.extensions["faceapi"].use_cases.authenticate(make_key("reviewer"))
    vote = VoteRequest(review_id=pending["review_id"], vote=Vote.CONFIRM, reason="same")
    with pytest.raises(RuntimeError):
        app.extensions["faceapi"].use_cases.decide_review(vote, actor=reviewer)
    assert outbox(app) == []
    assert api.get(f"/v1/decisions/{pending['decision_id']}", key=key).json()["final"] \
        is False

    monkeypatch.setattr(review_svc, "enqueue_final", real)
    app.extensions["faceapi"].use_cases.decide_review(vote, actor=reviewer)
    assert [r["decision_id"] for r in outbox(app)] == [pending["decision_id"]]


def test_a_reviewed_search_is_called_back_once_after_its_second_reviewer(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        receiver: Receiver) -> None:
    make_collection(app, "list", ("watchlist_search",))
    enroll(app, "list", "alice", ALICE)
    key = make_key("app")
    secret = register(api, key, receiver.url)["secret"]
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    pending = api.post("/v1/collections/list/search", key=key, json_body={
        "policy": "watchlist_search", "image": b64(probe)}).json()["decision"]
    confirm(api, make_key("reviewer"), pending["review_id"])
    assert deliver(app).delivered == 0  # one of two reviewers: still pending
    confirm(api, make_key("reviewer"), pending["review_id"])
    assert deliver(app).delivered == 1
    (got,) = receiver.requests
    assert got.signed_with(secret)
    read = api.get(f"/v1/decisions/{pending['decision_id']}", key=key).json()
    assert got.json() == read
    assert (read["outcome"], read["matched_subject_id"]) == ("match", "alice")


def test_a_subject_erased_while_its_review_waits_is_called_back_without_its_ids(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        receiver: Receiver) -> None:
    key = make_key("app")
    register(api, key, receiver.url)
    pending = verify(api, key, fake_engine)
    erased = api.delete("/v1/collections/watch/subjects/alice", key=make_key("admin"))
    assert erased.status == 200, erased.body
    assert deliver(app).delivered == 1
    body = receiver.requests[0].json()
    assert body["decision_id"] == pending["decision_id"]
    assert (body["outcome"], body["reasons"][-1]) == ("rejected", "subject_erased")
    assert "alice" not in receiver.requests[0].body.decode()
    assert body == api.get(f"/v1/decisions/{pending['decision_id']}", key=key).json()


def test_a_worker_whose_lease_ran_out_mid_send_does_not_overwrite_the_next_workers_outcome(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        clock: FakeClock, receiver: Receiver) -> None:
    from faceapi.services.ports import SendResult

    key = make_key("app")
    register(api, key, receiver.url)
    confirm(api, make_key("reviewer"), verify(api, key, fake_engine)["review_id"])
    container = app.extensions["faceapi"]
    real_sender = container.webhook_sender

    class SlowThenOvertaken:
        """The first worker's send outlives its lease; meanwhile a second worker
        claims the delivery and delivers it."""

        def send(self, url: str, body: bytes, headers: Any) -> SendResult:
            clock.advance(seconds=WEBHOOK_SETTINGS["webhook_lease_seconds"] + 1)
            container.webhook_sender = real_sender
            assert deliver(app).delivered == 1  # the second worker
            return SendResult(500, "http_status")  # what the first one saw, late

    container.webhook_sender = SlowThenOvertaken()
    first = deliver(app)
    assert (first.delivered, first.retrying) == (0, 0)  # its outcome was not recorded
    (row,) = outbox(app)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 2, 200)
    assert [r["outcome"] for r in audit_rows(app, "webhook.delivery")] == \
        ["queued", "delivered"]
