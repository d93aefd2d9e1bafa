"""Finding 6: scopes apply to reads. A key limited to some collections or policies reads
only the audit events, reviews and console figures its scope covers; anything else
answers exactly like a missing object, and that refusal is in the audit trail."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask

from tests.conftest import KeyFactory
from tests.fakes import FakeEngine, unit_vector
from tests.integration.verify_support import b64, enroll, scripted, vector_at
from tests.security.conftest import Http, Reply

ALICE = unit_vector(1)
BASE = unit_vector(5)
MINE, THEIRS = "scope-mine", "scope-theirs"


def make_collection(http: Http, operator: str, collection_id: str) -> None:
    reply = http.post("/v1/collections", key=operator, json_body={
        "collection_id": collection_id, "consent_required": False,
        "policies": ["identity_check", "login"]})
    assert reply.status == 201, reply.body[:300]


def pending_verify(http: Http, engine: FakeEngine, app_key: str, collection_id: str) -> str:
    """An identity_check verify (always reviewed): its decision id."""
    probe = scripted(engine, [vector_at(ALICE, 99.0)])
    reply = http.post("/v1/verify", key=app_key, json_body={
        "collection_id": collection_id, "subject_id": "alice", "policy": "identity_check",
        "image": b64(probe)})
    assert reply.status == 200, reply.body[:300]
    return str(reply.json()["decision_id"])


def pending_compare(http: Http, engine: FakeEngine, app_key: str) -> str:
    """A dataset_cleaning compare in its review band (a review of no collection)."""
    source = scripted(engine, [BASE])
    target = scripted(engine, [vector_at(BASE, 86.0)])
    reply = http.post("/v1/compare", key=app_key, json_body={
        "policy": "dataset_cleaning", "source": b64(source), "target": b64(target)})
    assert reply.status == 200, reply.body[:300]
    return str(reply.json()["decision_id"])


@pytest.fixture
def world(app: Flask, http: Http, make_key: KeyFactory,
          fake_engine: FakeEngine) -> dict[str, str]:
    """Two collections with a pending identity_check review each, and a pending compare;
    the review ids, found by an unscoped reviewer."""
    operator, app_key = make_key("operator"), make_key("app")
    for cid in (MINE, THEIRS):
        make_collection(http, operator, cid)
        enroll(app, cid, "alice", ALICE)
    decisions = {"mine": pending_verify(http, fake_engine, app_key, MINE),
                 "theirs": pending_verify(http, fake_engine, app_key, THEIRS),
                 "compare": pending_compare(http, fake_engine, app_key)}
    listed = http.get("/v1/reviews?status=all", key=make_key("reviewer")).json()["reviews"]
    by_decision = {r["decision_id"]: r["review_id"] for r in listed}
    return {name: by_decision[d] for name, d in decisions.items()}


# --- reading the trail -------------------------------------------------------------

def collection_of(event: dict[str, Any]) -> str | None:
    """The collection an exported or listed event names (resource, else details)."""
    resource = event.get("resource") or ""
    if resource.startswith("collections/"):
        return str(resource.split("/")[1])
    named = (event.get("details") or {}).get("collection_id")
    return named if isinstance(named, str) else None


def all_events(http: Http, key: str, query: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        reply = http.get(f"/v1/audit/events?limit=500{query}{cursor}", key=key)
        assert reply.status == 200, reply.body[:300]
        out += reply.json()["events"]
        if reply.json()["next_cursor"] is None:
            return out
        cursor = "&cursor=" + reply.json()["next_cursor"]


def denials(http: Http, auditor: str, key_of: str) -> list[dict[str, Any]]:
    """The out-of-scope refusals on record for one key (read by an unscoped auditor)."""
    key_id = key_of.split("_")[1]
    return [e for e in all_events(http, auditor, "&action=authz.deny")
            if e["actor"]["key_id"] == key_id and e["outcome"] == "out_of_scope"]


def test_a_collection_scoped_auditor_lists_only_its_own_collections_events(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    everything = all_events(http, make_key("auditor"))
    assert {collection_of(e) for e in everything} >= {MINE, THEIRS, None}
    scoped = make_key("auditor", collections=[MINE])
    seen = all_events(http, scoped)
    assert {e["action"] for e in seen} >= {"verify.decision", "review.create"}
    assert {collection_of(e) for e in seen} == {MINE}
    # Asking for the other collection by filter finds nothing either.
    assert all_events(http, scoped, f"&resource=collections/{THEIRS}") == []


def test_a_policy_scoped_auditor_lists_only_its_policys_events(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    scoped = make_key("auditor", policies=["dataset_cleaning"])
    seen = all_events(http, scoped)
    assert {e["action"] for e in seen} >= {"face.compare", "review.create"}
    assert {e["policy"]["name"] for e in seen} == {"dataset_cleaning"}


def test_another_collections_event_answers_a_scoped_auditor_as_missing_and_is_audited(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    auditor = make_key("auditor")
    theirs = next(e for e in all_events(http, auditor) if collection_of(e) == THEIRS)
    scoped = make_key("auditor", collections=[MINE])
    refused = http.get(f"/v1/audit/events/{theirs['id']}", key=scoped)
    unknown_id = "0" * 8 + theirs["id"][8:]
    missing = http.get(f"/v1/audit/events/{unknown_id}", key=scoped)
    assert refused.status == missing.status == 404
    refused_error, missing_error = refused.json()["error"], missing.json()["error"]
    assert refused_error["code"] == missing_error["code"] == "not_found"
    assert refused_error["message"] == missing_error["message"].replace(unknown_id, theirs["id"])
    assert refused_error.get("details") == {"event_id": theirs["id"]}
    (denial,) = denials(http, auditor, scoped)
    assert denial["details"]["event_id"] == theirs["id"]
    assert denial["resource"] == "endpoint/audit.get_event"


def export(http: Http, key: str, fmt: str) -> Reply:
    reply = http.get(f"/v1/audit/export?format={fmt}", key=key)
    assert reply.status == 200, reply.body[:300]
    return reply


def test_a_collection_scoped_auditor_exports_only_its_own_collections_events(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    scoped = make_key("auditor", collections=[MINE])
    lines = [json.loads(line) for line in export(http, scoped, "jsonl").body.splitlines()]
    header, events = lines[0], [r for r in lines if r["type"] == "event"]
    assert header["complete"] is False
    assert header["filters"]["scope_collections"] == [MINE]
    assert events
    assert {collection_of(e) for e in events} == {MINE}
    rows = list(csv.DictReader(io.StringIO(export(http, scoped, "csv").body.decode())))
    event_rows = [r for r in rows if r["type"] == "event"]
    assert event_rows
    assert {collection_of({"resource": r["resource"],
                                          "details": json.loads(r["details"])})
                           for r in event_rows} == {MINE}


def tamper_with_an_event_of(app: Flask, http: Http, auditor: str, collection_id: str) -> int:
    from sqlalchemy import text

    from tests.integration.audit_support import drop_append_only_triggers

    victim = next(e for e in all_events(http, auditor) if collection_of(e) == collection_id)
    engine = app.extensions["faceapi"].store.engine
    drop_append_only_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET outcome = 'forged' WHERE seq = :seq"),
                     {"seq": victim["seq"]})
    return int(victim["seq"])


def test_a_scoped_auditor_verifies_the_whole_chain_but_learns_only_where_it_broke(
        app: Flask, world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    auditor, scoped = make_key("auditor"), make_key("auditor", collections=[MINE])
    intact = http.get("/v1/audit/verify", key=scoped).json()
    assert intact["ok"] is True
    # The whole chain was walked, not only the events the key may read.
    assert intact["events_checked"] == intact["head_seq"] > len(all_events(http, scoped))
    seq = tamper_with_an_event_of(app, http, auditor, THEIRS)
    report = http.get("/v1/audit/verify", key=scoped).json()
    assert report["ok"] is False
    assert report["problem"]["kind"] == "edited"
    assert report["problem"]["seq"] == seq
    assert report["problem"]["event_id"] is None
    full = http.get("/v1/audit/verify", key=auditor).json()
    assert full["problem"]["event_id"] is not None
    assert full["problem"]["message"] != report["problem"]["message"]


# --- reviews -------------------------------------------------------------------------

def review_calls(http: Http, key: str, review_id: str) -> dict[str, Reply]:
    return {
        "open": http.get(f"/v1/reviews/{review_id}", key=key),
        "evidence": http.get(f"/v1/reviews/{review_id}/evidence/probe.jpg", key=key),
        "decide": http.post(f"/v1/reviews/{review_id}/decision", key=key,
                            json_body={"decision": "confirm", "reason": "faces agree"}),
    }


SCOPES: dict[str, tuple[dict[str, Any], set[str]]] = {
    # scope -> the reviews (of the world fixture) it covers
    "collection-scoped": ({"collections": [MINE]}, {"mine"}),
    "policy-scoped": ({"policies": ["dataset_cleaning"]}, {"compare"}),
    "both": ({"collections": [MINE], "policies": ["dataset_cleaning"]}, set()),
}


@pytest.mark.parametrize("case", sorted(SCOPES))
def test_a_scoped_reviewer_neither_lists_nor_opens_nor_decides_reviews_outside_its_scope(
        world: dict[str, str], http: Http, make_key: KeyFactory, case: str) -> None:
    scope, visible = SCOPES[case]
    hidden = set(world) - visible
    reviewer, auditor = make_key("reviewer", **scope), make_key("auditor")
    listed = {r["review_id"] for r in
              http.get("/v1/reviews?status=all", key=reviewer).json()["reviews"]}
    assert listed == {world[name] for name in visible}
    for name in sorted(hidden):
        review_id = world[name]
        missing_id = "00000000" + review_id[8:]
        for call, reply in review_calls(http, reviewer, review_id).items():
            like = review_calls(http, reviewer, missing_id)[call]
            assert reply.status == like.status == 404, (name, call, reply.body[:200])
            assert reply.json()["error"]["code"] == like.json()["error"]["code"]
    refused = denials(http, auditor, reviewer)
    assert len(refused) == 3 * len(hidden)
    assert {e["details"]["review_id"] for e in refused} == {world[n] for n in hidden}
    # Nothing was decided: every hidden review still waits.
    unscoped = make_key("reviewer")
    for name in hidden:
        assert http.get(f"/v1/reviews/{world[name]}", key=unscoped).json()["status"] == "pending"


def test_a_scoped_reviewer_still_works_its_own_reviews(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    reviewer = make_key("reviewer", collections=[MINE])
    calls = review_calls(http, reviewer, world["mine"])
    assert [calls[c].status for c in ("open", "evidence", "decide")] == [200, 200, 200]


def test_a_collection_scoped_key_cannot_read_a_compare_decision(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    unscoped = make_key("reviewer")
    decision_id = http.get(f"/v1/reviews/{world['compare']}", key=unscoped).json()["decision_id"]
    assert http.get(f"/v1/decisions/{decision_id}", key=unscoped).status == 200
    scoped = make_key("auditor", collections=[MINE])
    assert http.get(f"/v1/decisions/{decision_id}", key=scoped).status == 404


# --- the console ---------------------------------------------------------------------

class Console:
    """A browser's share of the console over the live server: the session cookie and
    the form's CSRF token."""

    def __init__(self, http: Http, key: str) -> None:
        self.http = http
        self.cookie = ""
        token = self._token(self.get("/console/signin"))
        reply = self.post("/console/signin", {"api_key": key, "csrf_token": token})
        assert reply.status == 302, reply.body[:300]

    def _keep(self, reply: Reply) -> Reply:
        raw = reply.headers.get("Set-Cookie") or reply.headers.get("set-cookie")
        if raw:
            self.cookie = raw.split(";", 1)[0]
        return reply

    @staticmethod
    def _token(reply: Reply) -> str:
        match = re.search(rb'name="csrf_token" value="([^"]+)"', reply.body)
        assert match, reply.body[:300]
        return match.group(1).decode()

    def get(self, path: str) -> Reply:
        return self._keep(self.http.get(path, headers={"Cookie": self.cookie}))

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self._keep(self.http.post(path, body=urlencode(form).encode(), headers={
            "Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded"}))

    def csrf(self, path: str) -> str:
        return self._token(self.get(path))


def test_the_console_audit_pages_show_a_scoped_auditor_only_its_own_collection(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    auditor = make_key("auditor")
    events = all_events(http, auditor)
    theirs = next(e for e in events if collection_of(e) == THEIRS)
    mine = next(e for e in events if collection_of(e) == MINE)
    scoped = make_key("auditor", collections=[MINE])
    console = Console(http, scoped)
    page = console.get("/console/audit").body.decode()
    assert f"collections/{MINE}" in page
    assert THEIRS not in page
    assert console.get(f"/console/audit/events/{mine['id']}").status == 200
    refused = console.get(f"/console/audit/events/{theirs['id']}")
    assert refused.status == 404
    assert THEIRS.encode() not in refused.body
    exported = console.get("/console/audit/export?format=jsonl").body.decode()
    assert MINE in exported
    assert THEIRS not in exported
    (denial,) = denials(http, auditor, scoped)
    assert denial["details"]["channel"] == "console"


def test_the_console_overview_counts_only_the_keys_collections(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    def figures(key: str) -> tuple[str, dict[str, int]]:
        page = Console(http, key).get("/console/overview").body.decode()
        pending = re.search(r'id="stat-pending"><span>Pending reviews</span>\s*<b>([^<]*)</b>',
                            page)
        assert pending, page[:500]
        rows = re.findall(r'<tr><td>([a-z_]+)</td><td><span class="badge [a-z_]+">'
                          r'[a-z_: ]+</span></td><td>(\d+)</td></tr>', page)
        per_policy: dict[str, int] = {}
        for name, count in rows:
            per_policy[name] = per_policy.get(name, 0) + int(count)
        return pending.group(1), per_policy

    assert figures(make_key("reviewer")) == ("3", {"identity_check": 2, "dataset_cleaning": 1})
    # Collection-scoped: its own identity_check decision; the other collection's and the
    # compare (no collection) are not counted.
    assert figures(make_key("reviewer", collections=[MINE])) == ("1", {"identity_check": 1})
    assert figures(make_key("auditor", policies=["dataset_cleaning"])) == (
        "1", {"dataset_cleaning": 1})


def test_the_console_review_pages_refuse_a_scoped_reviewer_other_reviews_as_missing(
        world: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    auditor, scoped = make_key("auditor"), make_key("reviewer", collections=[MINE])
    console = Console(http, scoped)
    queue = console.get("/console/reviews").body.decode()
    assert world["mine"] in queue
    assert world["theirs"] not in queue
    assert world["compare"] not in queue
    for name in ("theirs", "compare"):
        review_id = world[name]
        assert console.get(f"/console/reviews/{review_id}").status == 404
        assert console.get(f"/console/reviews/{review_id}/evidence/probe.jpg").status == 404
        token = console.csrf(f"/console/reviews/{world['mine']}")
        decided = console.post(f"/console/reviews/{review_id}/decision", {
            "csrf_token": token, "decision": "confirm", "reason": "faces agree"})
        assert decided.status == 404
    assert len(denials(http, auditor, scoped)) == 6
    unscoped = make_key("reviewer")
    for name in ("theirs", "compare"):
        assert http.get(f"/v1/reviews/{world[name]}", key=unscoped).json()["status"] == "pending"
