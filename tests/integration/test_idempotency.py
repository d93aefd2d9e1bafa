"""Idempotency-Key on verify, compare, search, index faces and review votes, through HTTP
on the real store (SQLite, and PostgreSQL with --db=postgresql): a replay gets the
first answer and writes nothing; the key is the caller's own; a different body is 422;
refusals are not kept; two at once run once (on a real threaded server)."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from faceapi.adapters.store.idempotency_repo import ActiveClaim, active_claim
from faceapi.adapters.store.tables import (
    audit_events,
    decisions,
    faces,
    idempotency_records,
    lockouts,
    review_votes,
    reviews,
)
from faceapi.domain.audit import Action, AuditEvent
from faceapi.domain.errors import IdempotencyInProgress
from faceapi.services import idempotency as idem
from tests.conftest import HeadersFactory
from tests.emulator_server import serve
from tests.fakes import FakeClock, FakeEngine, unit_vector
from tests.integration.verify_support import (
    OPERATOR,
    b64,
    enroll,
    make_collection,
    scripted,
    vector_at,
)

ALICE = unit_vector(1)
TABLES = (decisions, reviews, review_votes, audit_events, faces, lockouts, idempotency_records)


@pytest.fixture(autouse=True)
def people(app: Flask) -> None:
    make_collection(app, "staff")
    enroll(app, "staff", "alice", ALICE)


def counts(app: Flask) -> dict[str, int]:
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in TABLES}


def lockout_failures(app: Flask) -> int:
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(lockouts.c.failures), 0)))
                   .scalar_one())


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def verify_body(engine: FakeEngine, similarity: float = 10.0, **extra: Any) -> dict[str, Any]:
    probe = scripted(engine, [vector_at(ALICE, similarity)])
    return {"collection_id": "staff", "subject_id": "alice", "policy": "login",
            "image": b64(probe), **extra}


def test_a_replayed_verify_gets_the_first_answer_and_writes_nothing(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    headers = keyed(auth_headers("app"), "retry-1")
    body = verify_body(fake_engine)  # a no_match: it counts towards the lockout
    first = client.post("/v1/verify", json=body, headers=headers)
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["outcome"] == "no_match"
    after_first, failures = counts(app), lockout_failures(app)
    assert failures == 1

    again = client.post("/v1/verify", json=body, headers=headers)
    assert again.status_code == 200
    assert again.get_data() == first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    # No second decision, review, audit event or lockout count.
    assert counts(app) == after_first
    assert lockout_failures(app) == 1


def test_the_same_key_with_another_body_is_422_and_writes_nothing(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    headers = keyed(auth_headers("app"), "k-reuse")
    assert client.post("/v1/verify", json=verify_body(fake_engine),
                       headers=headers).status_code == 200
    before = counts(app)
    other = client.post("/v1/verify", json=verify_body(fake_engine, 99.0), headers=headers)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    # Another route with the same key and body is another request too.
    assert client.post("/v1/compare", json={"policy": "dataset_cleaning"},
                       headers=headers).get_json()["error"]["code"] == "idempotency_key_reused"
    assert counts(app) == before


def test_another_apps_same_key_is_its_own_and_never_sees_the_first_answer(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    body = verify_body(fake_engine)
    mine = client.post("/v1/verify", json=body, headers=keyed(auth_headers("app"), "shared"))
    assert mine.status_code == 200
    before = counts(app)
    # The attacker guesses the key and sends the very same body under its own API key:
    # it gets a decision of its own, not a replay of the victim's answer.
    theirs = client.post("/v1/verify", json=body,
                         headers=keyed(auth_headers("app", name="attacker"), "shared"))
    assert theirs.status_code == 200
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["decision_id"] != mine.get_json()["decision_id"]
    assert counts(app)["decisions"] == before["decisions"] + 1


def test_multipart_retries_with_a_new_boundary_are_the_same_request(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [vector_at(ALICE, 10.0)])
    other = scripted(fake_engine, [vector_at(ALICE, 10.0)])
    headers = keyed(auth_headers("app"), "multipart-1")

    def send(image: bytes) -> Any:
        fields = {"collection_id": "staff", "subject_id": "alice", "policy": "login",
                  "image": (io.BytesIO(image), "probe.png")}
        return client.post("/v1/verify", data=fields, headers=headers,
                           content_type="multipart/form-data")

    first = send(probe)
    assert first.status_code == 200, first.get_json()
    before = counts(app)
    again = send(probe)  # werkzeug draws a new boundary for every request
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    changed = send(other)  # only the image part differs
    assert changed.status_code == 422
    assert changed.get_json()["error"]["code"] == "idempotency_key_reused"
    assert counts(app) == before


@pytest.mark.parametrize("key", ["", " padded", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_400_before_anything_runs(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory, key: str) -> None:
    headers = keyed(auth_headers("app"), key)
    before = counts(app)
    response = client.post("/v1/verify", json=verify_body(fake_engine), headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"
    assert counts(app) == before


def test_two_key_headers_are_400(client: FlaskClient, app: Flask, fake_engine: FakeEngine,
                                 auth_headers: HeadersFactory) -> None:
    headers = [*auth_headers("app").items(), ("Idempotency-Key", "a"),
               ("Idempotency-Key", "b")]
    response = client.post("/v1/verify", json=verify_body(fake_engine), headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"


def test_a_refused_request_is_not_kept_so_the_corrected_retry_runs(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    headers = keyed(auth_headers("app"), "fix-and-retry")
    refused = client.post("/v1/verify", json=verify_body(fake_engine, policy="nope"),
                          headers=headers)
    assert refused.status_code == 422
    assert counts(app)["idempotency_records"] == 0
    # The same refused body again is refused again (judged again, not replayed) ...
    assert client.post("/v1/verify", json=verify_body(fake_engine, policy="nope"),
                       headers=headers).headers.get("Idempotent-Replayed") is None
    # ... and a corrected body under the same key is not "reused": it runs.
    fixed = client.post("/v1/verify", json=verify_body(fake_engine), headers=headers)
    assert fixed.status_code == 200, fixed.get_json()


def test_a_locked_refusal_is_audited_each_time_and_never_replayed(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    for _ in range(5):  # login locks after 5 consecutive failures
        client.post("/v1/verify", json=verify_body(fake_engine), headers=headers)
    body = verify_body(fake_engine)
    first = client.post("/v1/verify", json=body, headers=keyed(headers, "locked-1"))
    assert first.status_code == 423
    events = counts(app)["audit_events"]
    second = client.post("/v1/verify", json=body, headers=keyed(headers, "locked-1"))
    assert second.status_code == 423
    assert "Idempotent-Replayed" not in second.headers
    assert counts(app)["audit_events"] == events + 1  # the new refusal, audited
    assert counts(app)["idempotency_records"] == 0


def test_compare_search_enrolment_and_votes_replay_without_writing(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    app_headers = auth_headers("app")
    a = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    b = scripted(fake_engine, [vector_at(ALICE, 98.0)])
    calls: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("/v1/compare", {"policy": "dataset_cleaning", "source": b64(a), "target": b64(b)},
         app_headers),
        ("/v1/collections/staff/search", {"policy": "watchlist_search", "image": b64(a)},
         app_headers),
        ("/v1/collections/staff/faces",
         {"subject_id": "carol", "image": b64(scripted(fake_engine, [unit_vector(3)]))},
         auth_headers("operator")),
    ]
    for n, (path, body, headers) in enumerate(calls):
        first = client.post(path, json=body, headers=keyed(headers, f"call-{n}"))
        assert first.status_code == 200, (path, first.get_json())
        before = counts(app)
        again = client.post(path, json=body, headers=keyed(headers, f"call-{n}"))
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true", path
        assert again.get_data() == first.get_data(), path
        assert counts(app) == before, path

    review_id = client.post("/v1/collections/staff/search", headers=app_headers, json={
        "policy": "watchlist_search", "image": b64(a)}).get_json()["decision"]["review_id"]
    assert review_id
    reviewer = keyed(auth_headers("reviewer"), "vote-1")
    vote = {"decision": "confirm", "reason": "faces agree"}
    first = client.post(f"/v1/reviews/{review_id}/decision", json=vote, headers=reviewer)
    assert first.status_code == 200, first.get_json()
    before = counts(app)
    again = client.post(f"/v1/reviews/{review_id}/decision", json=vote, headers=reviewer)
    # Without the key a second vote is 409 already_voted; with it, the first answer.
    assert again.status_code == 200
    assert again.get_data() == first.get_data()
    assert counts(app) == before


def test_after_24_hours_the_key_is_new_again_and_retention_deletes_it(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine, clock: FakeClock,
        auth_headers: HeadersFactory) -> None:
    headers = keyed(auth_headers("app"), "daily")
    body = verify_body(fake_engine)
    client.post("/v1/verify", json=body, headers=headers)
    clock.advance(hours=23, minutes=59)
    assert client.post("/v1/verify", json=body,
                       headers=headers).headers.get("Idempotent-Replayed") == "true"
    clock.advance(minutes=2)
    before = counts(app)
    fresh = client.post("/v1/verify", json=body, headers=headers)
    assert "Idempotent-Replayed" not in fresh.headers
    assert counts(app)["decisions"] == before["decisions"] + 1
    clock.advance(hours=24, seconds=1)
    use_cases = app.extensions["faceapi"].use_cases
    assert use_cases.purge_idempotency_records() == 1
    assert counts(app)["idempotency_records"] == 0


def test_a_write_that_rolls_back_leaves_no_claim_and_the_retry_runs(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = keyed(auth_headers("app"), "rolled-back")
    body = verify_body(fake_engine)
    blobs = app.extensions["faceapi"].blobs
    before = counts(app)
    from faceapi.services import decision_pipeline

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the decision's transaction fails")

    monkeypatch.setattr(decision_pipeline, "record_decision", broken)
    assert client.post("/v1/verify", json=body, headers=headers).status_code == 500
    assert counts(app) == before  # no decision, and no claim left behind
    monkeypatch.undo()
    assert blobs is app.extensions["faceapi"].blobs
    retried = client.post("/v1/verify", json=body, headers=headers)
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers


def test_a_lost_answer_is_never_done_twice(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The process dies after the decision committed, before its answer was saved.
    use_cases = app.extensions["faceapi"].use_cases

    def crash(*_: Any, **__: Any) -> bool:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(use_cases, "save_idempotent_response", crash)
    headers = keyed(auth_headers("app"), "lost")
    body = verify_body(fake_engine)
    assert client.post("/v1/verify", json=body, headers=headers).status_code == 500
    monkeypatch.undo()
    after = counts(app)
    assert after["decisions"] == 1
    assert after["idempotency_records"] == 1
    retry = client.post("/v1/verify", json=body, headers=headers)
    assert retry.status_code == 409
    assert retry.get_json()["error"]["code"] == "idempotency_response_unavailable"
    assert counts(app) == after


def test_a_claim_taken_over_cannot_commit_a_second_result(app: Flask, clock: FakeClock) -> None:
    use_cases = app.extensions["faceapi"].use_cases
    store = app.extensions["faceapi"].store
    req = idem.IdempotentRequest(key_id="k1", key="slow", fingerprint="f" * 64)
    slow = use_cases.claim_idempotency(req)
    assert isinstance(slow, idem.Claim)
    clock.advance(seconds=idem.LEASE.total_seconds() + 1)
    taker = use_cases.claim_idempotency(req)  # the slow one looks dead: taken over
    assert isinstance(taker, idem.Claim)
    assert taker.claim_token != slow.claim_token
    before = counts(app)
    with active_claim(ActiveClaim(slow.key_id, slow.key, slow.claim_token)), \
            store.uow() as uow:
        uow.audit.append(AuditEvent(action=Action.AUDIT_VERIFY, outcome="ok",
                                    actor=OPERATOR, resource="test"))
        with pytest.raises(IdempotencyInProgress):
            uow.commit()
    assert counts(app) == before  # the slow request's write rolled back


def test_an_erasure_drops_the_saved_answers_of_its_collection(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    headers = keyed(auth_headers("app"), "erased")
    body = verify_body(fake_engine)
    client.post("/v1/verify", json=body, headers=headers)
    erased = client.delete("/v1/collections/staff/subjects/alice",
                           headers=auth_headers("admin"))
    assert erased.status_code == 200, erased.get_json()
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        row = conn.execute(select(idempotency_records)).one()
    assert row.body is None
    assert row.state == "erased"
    retry = client.post("/v1/verify", json=body, headers=headers)
    assert retry.status_code == 409
    assert retry.get_json()["error"]["code"] == "idempotency_response_unavailable"


class SlowEngine:
    """Delays similarity so that two requests overlap on the server."""

    def __init__(self, engine: FakeEngine, delay: float) -> None:
        self._engine, self._delay = engine, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def similarity(self, a: Any, b: Any) -> Any:
        time.sleep(self._delay)
        return self._engine.similarity(a, b)


def test_two_requests_with_one_key_at_once_run_once_on_a_real_server(
        app: Flask, fake_engine: FakeEngine, auth_headers: HeadersFactory) -> None:
    import requests

    app.extensions["faceapi"].engine = SlowEngine(fake_engine, 0.5)
    live = serve(app)
    try:
        headers = keyed(auth_headers("app"), "race")
        body = verify_body(fake_engine)
        before = counts(app)
        barrier = threading.Barrier(2)
        answers: list[requests.Response] = []

        def send() -> None:
            barrier.wait()
            answers.append(requests.post(f"{live.url}/v1/verify", json=body,
                                         headers=headers, timeout=30))

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 409], [a.text for a in answers]
        busy = next(a for a in answers if a.status_code == 409)
        assert busy.json()["error"]["code"] == "idempotency_in_progress"
        assert busy.headers["Retry-After"] == "1"
        assert counts(app)["decisions"] == before["decisions"] + 1
        # Afterwards the loser's retry gets the winner's answer.
        winner = next(a for a in answers if a.status_code == 200)
        replay = requests.post(f"{live.url}/v1/verify", json=body, headers=headers,
                               timeout=30)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.content == winner.content
    finally:
        live.stop()


def test_faceapi_retention_run_deletes_records_older_than_24_hours(
        app: Flask, settings: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from click.testing import CliRunner

    from faceapi.entrypoints.cli import cli
    from faceapi.services.ports import IdempotencyRecord

    # The command runs on the wall clock.
    now = datetime.now(UTC)
    store = app.extensions["faceapi"].store
    with store.uow() as uow:
        for key, age in (("old", timedelta(hours=25)), ("young", timedelta(hours=23))):
            uow.idempotency.claim(IdempotencyRecord(
                key_id="k1", key=key, fingerprint="f" * 64, state="pending",
                claim_token=key, created_at=now - age, claimed_at=now - age))
        uow.commit()
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir), "FACEAPI_ENV": "test",
           "FACEAPI_BLOB_DIR": str(settings.resolved_blob_dir)}
    if settings.database_url:
        env["FACEAPI_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(cli, ["retention", "run"], env=env)
    assert result.exit_code == 0, result.output
    assert "deleted 1 expired idempotency record(s)" in result.output
    with store.engine.connect() as conn:
        keys = conn.execute(select(idempotency_records.c.idempotency_key)).scalars().all()
    assert keys == ["young"]
