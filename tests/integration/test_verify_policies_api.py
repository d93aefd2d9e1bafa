"""GET /v1/policies, a bad policy file stopping the start, and a request that fails
half-way leaving nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from faceapi.config import Settings
from faceapi.domain.policies import PolicyError
from faceapi.entrypoints.web.app import create_app
from tests.conftest import HeadersFactory
from tests.fakes import FakeClock, FakeEngine, unit_vector
from tests.integration.verify_support import b64, enroll, make_collection, row_counts, scripted

REPO = Path(__file__).resolve().parents[2]


def test_every_role_lists_the_policies_with_their_versions(
        client: FlaskClient, auth_headers: HeadersFactory) -> None:
    for role in ("app", "operator", "reviewer", "auditor", "admin"):
        response = client.get("/v1/policies", headers=auth_headers(role))
        assert response.status_code == 200
        names = {p["name"]: p for p in response.get_json()["policies"]}
        assert {"login", "identity_check", "watchlist_search", "photo_tagging",
                "dataset_cleaning"} <= set(names)
        assert all(len(p["version"]) == 64 for p in names.values())


def test_one_policy_is_read_with_every_rule_and_an_unknown_one_is_404(
        client: FlaskClient, app: Flask, auth_headers: HeadersFactory) -> None:
    body = client.get("/v1/policies/watchlist_search", headers=auth_headers("app")).get_json()
    policy = app.extensions["faceapi"].policies["watchlist_search"]
    assert body["version"] == policy.version
    assert body["human_review"] == {"mode": "always", "band": None, "reviewers": 2,
                                    "max_wait_hours": 24.0}
    assert body["consequential"] is True
    missing = client.get("/v1/policies/nope", headers=auth_headers("app"))
    assert missing.status_code == 404


def test_policies_need_a_key(client: FlaskClient) -> None:
    assert client.get("/v1/policies").status_code == 401


def test_a_bad_policy_file_stops_the_app_from_starting_and_names_the_field(
        tmp_path: Path, settings: Settings) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    data = yaml.safe_load((REPO / "policies" / "identity_check.yaml").read_text())
    data["human_review"]["mode"] = "never"
    (folder / "identity_check.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PolicyError, match=r"identity_check\.yaml: human_review\.mode"):
        create_app(settings.with_overrides(policies_dir=folder), engine=FakeEngine(),
                   clock=FakeClock())


class BrokenBlobs:
    """A blob store whose disk is full."""

    def put(self, key: str, data: bytes) -> None:
        raise OSError("no space left on device")

    def get(self, key: str) -> bytes | None:
        return None

    def delete_prefix(self, prefix: str) -> int:
        return 0

    def keys(self, prefix: str) -> list[str]:
        return []


def test_a_decision_that_fails_half_way_leaves_no_decision_review_or_event(
        app: Flask, fake_engine: FakeEngine, auth_headers: HeadersFactory) -> None:
    make_collection(app, "staff")
    enroll(app, "staff", "alice", unit_vector(1))
    headers = auth_headers("app")
    app.extensions["faceapi"].blobs = BrokenBlobs()
    client = app.test_client()
    before = row_counts(app)
    probe = scripted(fake_engine, [unit_vector(1)])
    response = client.post("/v1/verify", headers=headers, json={
        "collection_id": "staff", "subject_id": "alice", "policy": "identity_check",
        "image": b64(probe)})
    assert response.status_code == 500
    assert row_counts(app) == before
