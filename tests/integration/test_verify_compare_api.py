"""POST /v1/compare: two images under a compare policy (dataset_cleaning's review band)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import HeadersFactory
from tests.fakes import FakeEngine, unit_vector
from tests.integration.verify_support import b64, row_counts, scripted, vector_at

BASE = unit_vector(5)


def compare(client: FlaskClient, engine: FakeEngine, headers: dict[str, str],
            similarity: float, *, target_faces: int = 1,
            policy: str = "dataset_cleaning") -> tuple[int, dict[str, Any]]:
    source = scripted(engine, [BASE])
    target = scripted(engine, [vector_at(BASE, similarity)] * target_faces)
    response = client.post("/v1/compare", headers=headers, json={
        "policy": policy, "source": b64(source), "target": b64(target)})
    return response.status_code, response.get_json()


@pytest.mark.parametrize(("similarity", "outcome"), [
    # dataset_cleaning: threshold 80, review band [50, 87) (measured; see its file).
    (95.0, "match"), (88.0, "match"), (86.0, "pending_review"), (80.0, "pending_review"),
    (60.0, "pending_review"), (45.0, "no_match")])
def test_scores_in_the_band_wait_for_a_reviewer_and_others_are_final(
        client: FlaskClient, fake_engine: FakeEngine, auth_headers: HeadersFactory,
        similarity: float, outcome: str) -> None:
    status, body = compare(client, fake_engine, auth_headers("operator"), similarity)
    assert status == 200, body
    assert body["outcome"] == outcome
    assert body["kind"] == "compare"
    assert body["threshold"] == 80.0
    assert (body["review_id"] is not None) == (outcome == "pending_review")


def test_a_reviewer_settles_a_pair_in_the_band(client: FlaskClient, fake_engine: FakeEngine,
                                             auth_headers: HeadersFactory) -> None:
    operator = auth_headers("operator")
    _, body = compare(client, fake_engine, operator, 86.0)
    reviewer = auth_headers("reviewer")
    item = client.get(f"/v1/reviews/{body['review_id']}", headers=reviewer).get_json()
    assert {e["name"] for e in item["evidence"]} >= {"probe.jpg", "target.jpg"}
    response = client.post(f"/v1/reviews/{body['review_id']}/decision", headers=reviewer,
                           json={"decision": "reject", "reason": "different people"})
    assert response.status_code == 200
    final = client.get(f"/v1/decisions/{body['decision_id']}", headers=reviewer).get_json()
    assert final["outcome"] == "no_match"


def test_a_target_with_two_faces_is_rejected_with_a_target_reason(
        client: FlaskClient, fake_engine: FakeEngine, auth_headers: HeadersFactory) -> None:
    _, body = compare(client, fake_engine, auth_headers("app"), 95.0, target_faces=2)
    assert body["outcome"] == "rejected"
    assert body["reasons"] == ["target_multiple_faces"]


def test_a_verify_policy_cannot_be_used_to_compare(client: FlaskClient,
                                                   fake_engine: FakeEngine,
                                                   auth_headers: HeadersFactory) -> None:
    status, body = compare(client, fake_engine, auth_headers("app"), 95.0, policy="login")
    assert status == 422
    assert body["error"]["code"] == "wrong_policy_operation"


@pytest.mark.parametrize("case", [
    ({"policy": "no_such_policy"}, (422, "unknown_policy")),
    ({"target": None}, (422, "missing_image")),
    ({"target": b64(b"GIF89a-not-allowed")}, (415, "unsupported_image_format")),
    ({"source": b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)}, (422, "invalid_image")),
    ({"extra": 1}, (422, "validation_error")),
])
def test_a_rejected_compare_gets_its_code_and_writes_nothing(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory,
        case: tuple[dict[str, Any], tuple[int, str]]) -> None:
    change, expected = case
    body: dict[str, Any] = {"policy": "dataset_cleaning",
                            "source": b64(scripted(fake_engine, [BASE])),
                            "target": b64(scripted(fake_engine, [BASE]))}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    headers = auth_headers("app")
    before = row_counts(app)
    response = client.post("/v1/compare", headers=headers, json=body)
    assert (response.status_code, response.get_json()["error"]["code"]) == expected
    assert row_counts(app) == before
