"""Issue 12 acceptance: a generated walk over every route and emulator operation.

Every endpoint of the app's URL map and every operation of the Rekognition-compatible
endpoint (faceapi/domain/access.py PERMISSIONS / REKOGNITION_OPERATIONS and the
emulator's HANDLERS) is classified below: either it can reveal an identity or a
candidate about a probe (then it is attacked here), or it is named with the reason it
cannot. A new route or operation that nobody classified fails the build.

The attack: a consequential collection (identity_check + watchlist_search) holding
alice; every revealing path is called with a probe of alice (similarity 99), under
every verify and search policy there is, by every role that may call it. Before a
reviewer decides, no answer may carry alice's subject id (except the one a verify
caller claimed itself), an enrolled face id, a similarity or a reason that tells the
side of the threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from faceapi.domain.access import PERMISSIONS, REKOGNITION_OPERATIONS
from faceapi.domain.policies import Operation
from faceapi.entrypoints.web.emulator.operations import HANDLERS
from tests.conftest import KeyFactory
from tests.emulator_server import IssuedKey, LiveServer, api_key, rekognition_client
from tests.fakes import FakeEngine
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.integration.verify_support import b64, enroll, make_collection, scripted, vector_at
from tests.security.conftest import Http
from tests.security.support import ALICE, settings  # noqa: F401 (the --db backend)

# Endpoints that can reveal an identity or a candidate about a probe: attacked below.
REVEALING = {
    "verify.verify_subject": "1:1 decision about a claimed subject",
    "search.search_faces_by_image": "1:N decision: candidates from the collection",
    "collections.search_by_face_id": "1:N decision: a stored face as the probe",
    "verify.get_decision_view": "a decision read back by its requester",
    "rekognition.dispatch": "the emulator: its operations are classified below",
}
# Endpoints that cannot, and why.
NOT_REVEALING = {
    "api-docs.openapi_json": "API description",
    "static": "Flask's static route; serves no files",
    "system.healthz": "probe", "system.readyz": "probe", "system.docs_page": "docs page",
    "system.engine_info": "engine name and model version",
    "metrics.scrape": "aggregate counts by route, policy and outcome, no subject, face, "
                      "collection or key id (tests/integration/test_metrics.py checks labels); "
                      "a consequential policy's decisions all count as pending_review",
    "faces.detect_faces": "faces in the caller's own image; no collection",
    "faces.compare_faces": "two images the caller sent; no collection",
    "verify.compare_pair": "two images the caller sent, under a compare policy; no "
                           "collection (a compare policy cannot be bound to one)",
    "keys.create_key": "key management", "keys.list_keys": "key management",
    "keys.get_key": "key management", "keys.revoke_key": "key management",
    "keys.get_own_key": "the caller's own key",
    "policies.list_policies": "policies are public", "policies.get_policy": "public",
    "policies.get_policy_version": "a policy's rules as text: no subject, face or probe",
    # Enrollment: operators manage the people they enrolled; no probe is compared.
    "collections.create_collection": "enrollment", "collections.list_collections": "ids",
    "collections.describe_collection": "counts", "collections.delete_collection": "erasure",
    "collections.index_collection_faces": "enrollment (faces of the image indexed)",
    "collections.list_faces": "enrollment listing, no probe",
    "collections.delete_faces": "erasure", "collections.get_subject": "enrollment, no probe",
    "collections.erase_collection_subject": "erasure",
    "collections.record_subject_consent": "consent record",
    "collections.set_collection_policies": "binding change (unscoped admin)",
    "lockouts.get_lockout": "lock state of a subject the operator names",
    "lockouts.unlock_subject": "unlock",
    # Reviewers and auditors see everything by design: that is their job.
    "reviews.list_review_queue": "reviewers", "reviews.get_review_item": "reviewers",
    "reviews.get_review_evidence": "reviewers", "reviews.decide_review_item": "reviewers",
    "audit.list_events": "auditors", "audit.get_event": "auditors",
    "audit.verify_chain": "auditors", "audit.export_events": "auditors",
    "audit.list_checkpoints": "auditors", "audit.create_checkpoint": "auditors",
    "audit.public_key": "auditors",
    # The caller's own webhook: its URL, and delivery ids, statuses and HTTP codes of
    # its decisions once final; the callbacks themselves carry only final decisions
    # (tests/security/test_webhook_attacks.py).
    "webhooks.put_webhook": "the caller's own webhook",
    "webhooks.get_webhook": "the caller's own webhook",
    "webhooks.delete_webhook": "the caller's own webhook",
    "webhooks.list_webhook_deliveries": "delivery statuses of final decisions, no content",
    "console.signin": "sign-in", "console.signout": "sign-out", "console.static": "assets",
    "console.home": "links", "console.overview": "counts", "console.policies": "public",
    "console.audit": "auditors", "console.audit_event": "auditors",
    "console.audit_verify": "auditors", "console.audit_export": "auditors",
    "console.reviews": "reviewers", "console.review": "reviewers",
    "console.review_evidence": "reviewers", "console.review_decide": "reviewers",
    "console.collections": "enrollment", "console.collection": "enrollment",
    "console.subject": "enrollment, no probe", "console.subject_erase": "erasure",
    "console.subject_unlock": "unlock",
    "system.engine_calibration": "pair statistics of the calibration set, no subject",
    "console.calibration": "pair statistics of the calibration set, no subject",
    "console.calibration_plot": "pair statistics of the calibration set, no subject",
}
REVEALING_OPERATIONS = {"SearchFacesByImage": "1:N by image", "SearchFaces": "1:N by face"}
NOT_REVEALING_OPERATIONS = {
    "DetectFaces": "the caller's own image", "CompareFaces": "two images the caller sent",
    "CreateCollection": "enrollment", "DeleteCollection": "erasure",
    "DescribeCollection": "counts", "ListCollections": "ids", "IndexFaces": "enrollment",
    "ListFaces": "enrollment listing, no probe", "DeleteFaces": "erasure",
}

SCORE_HINTS = ("similarity_at_or_above_threshold", "similarity_below_threshold",
               "similarity_in_review_band")


def test_every_route_and_operation_is_classified(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    classified = set(REVEALING) | set(NOT_REVEALING)
    assert not set(REVEALING) & set(NOT_REVEALING)
    assert endpoints - classified == set(), "classify the new route in this test"
    assert set(PERMISSIONS) - classified == set(), "classify the new table entry"
    operations = set(REKOGNITION_OPERATIONS) | set(HANDLERS)
    assert operations - (set(REVEALING_OPERATIONS) | set(NOT_REVEALING_OPERATIONS)) == set()


class Consequential:
    """The attacked collection and what must not leak from it."""

    def __init__(self, app: Flask) -> None:
        make_collection(app, "watch", ("identity_check", "watchlist_search"))
        self.face_id = enroll(app, "watch", "alice", ALICE)
        policies = app.extensions["faceapi"].policies
        self.verify_policies = [n for n, p in policies.items()
                                if p.operation is Operation.VERIFY]
        self.search_policies = [n for n, p in policies.items()
                                if p.operation is Operation.SEARCH]


@pytest.fixture
def watch(app: Flask) -> Consequential:
    return Consequential(app)


def _values(data: Any, key: str) -> Iterator[Any]:
    if isinstance(data, dict):
        for k, v in data.items():
            if k.lower() == key:
                yield v
            yield from _values(v, key)
    elif isinstance(data, list):
        for item in data:
            yield from _values(item, key)


def assert_reveals_nothing(label: str, body: Any, watch: Consequential, *,
                           claimed: str | None = None) -> None:
    """No subject id (other than the claimed one), enrolled face id, similarity,
    candidate or score hint in an answer given before review."""
    data = dict(body) if isinstance(body, dict) else body
    if claimed is not None and isinstance(data, dict):
        assert data.pop("subject_id", None) in (None, claimed), label
    text = json.dumps(data)
    assert "alice" not in text, label
    assert watch.face_id not in text, label
    assert not any(hint in text for hint in SCORE_HINTS), label
    assert all(v is None for v in _values(data, "similarity")), label
    assert all(v in (None, []) for v in _values(data, "facematches")), label
    assert all(v is None for v in _values(data, "matched_face_id")), label


def _is_refusal(status: int, body: Any) -> bool:
    return status == 403 and body["error"]["code"] == "policy_not_bound"


def test_a_consequential_collection_reveals_nothing_before_review_on_any_path(
        app: Flask, http: Http, live: LiveServer, make_key: KeyFactory,
        fake_engine: FakeEngine, *, watch: Consequential) -> None:
    app_key = make_key("app")  # no policy scope: any policy may be named
    decisions: list[tuple[str, str]] = []  # (decision id, bearer key of its requester)
    answered = 0

    def probe() -> dict[str, str]:
        return b64(scripted(fake_engine, [vector_at(ALICE, 99.0)]))

    # REST verify and search, under every verify / search policy there is.
    for policy in watch.verify_policies:
        reply = http.post("/v1/verify", key=app_key, json_body={
            "collection_id": "watch", "subject_id": "alice", "policy": policy,
            "image": probe()})
        body = reply.json()
        if not _is_refusal(reply.status, body):
            assert reply.status == 200, (policy, body)
            assert_reveals_nothing(f"verify {policy}", body, watch, claimed="alice")
            decisions.append((body["decision_id"], app_key))
            answered += 1
    for policy in watch.search_policies:
        reply = http.post("/v1/collections/watch/search", key=app_key,
                          json_body={"policy": policy, "image": probe()})
        body = reply.json()
        if not _is_refusal(reply.status, body):
            assert reply.status == 200, (policy, body)
            assert_reveals_nothing(f"search {policy}", body, watch)
            decisions.append((body["decision"]["decision_id"], app_key))
            answered += 1

    # REST SearchFaces (a stored face as the probe), under every search policy there is.
    for policy in watch.search_policies:
        reply = http.post(f"/v1/collections/watch/faces/{watch.face_id}/search",
                          key=app_key, json_body={"policy": policy, "threshold": 0.0})
        body = reply.json()
        if not _is_refusal(reply.status, body):
            assert reply.status == 200, (policy, body)
            # It names the caller's own probe face; nothing else may appear.
            assert body.pop("SearchedFaceId") == watch.face_id
            assert_reveals_nothing(f"search by face {policy}", body, watch)
            decisions.append((body["decision"]["decision_id"], app_key))
            answered += 1

    # The emulator's revealing operations, by every role that may call them.
    searches: dict[str, Callable[[Any], dict[str, Any]]] = {
        "SearchFacesByImage": lambda client: client.search_faces_by_image(
            CollectionId="watch", Image={"Bytes": scripted(fake_engine, [
                vector_at(ALICE, 99.0)])}, FaceMatchThreshold=0.0),
        "SearchFaces": lambda client: client.search_faces(
            CollectionId="watch", FaceId=watch.face_id, FaceMatchThreshold=0.0),
    }
    assert set(searches) == set(REVEALING_OPERATIONS)
    for operation, call in searches.items():
        for role in sorted(REKOGNITION_OPERATIONS[operation]):
            key: IssuedKey = api_key(app, role)
            answer = call(rekognition_client(live.url, key))
            headers = answer.pop("ResponseMetadata")["HTTPHeaders"]
            # SearchFaces names the caller's own probe face; nothing else may appear.
            answer.pop("SearchedFaceId", None)
            assert_reveals_nothing(f"{operation} as {role}", answer, watch)
            decisions.append((headers["x-faceapi-decision-id"], key.bearer))
            answered += 1

    # Every decision read back by its requester (apps and the emulator's admins).
    for decision_id, requester in decisions:
        reply = http.get(f"/v1/decisions/{decision_id}", key=requester)
        if reply.status == 403:  # roles that may not read decisions (operators)
            continue
        assert reply.status == 200
        assert_reveals_nothing(f"GET decision {decision_id}", reply.json(), watch,
                               claimed="alice")
        answered += 1
    # The walk must have exercised the paths, not only met refusals.
    assert answered >= len(decisions) + 2
