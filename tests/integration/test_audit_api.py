"""The compliance API (/v1/audit) through the app, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from faceapi.adapters.store import Store
from faceapi.domain.audit import AuditQuery
from faceapi.domain.audit_chain import load_public_key
from faceapi.domain.audit_export import read_jsonl_export, verify_export
from faceapi.services import audit_trail
from tests.integration.audit_support import drop_append_only_triggers, sample_event


@pytest.fixture
def app_store(app: Flask) -> Store:
    store: Store = app.extensions["faceapi"].store
    for i in range(1, 31):
        audit_trail.record(sample_event(i), uow=store.uow())
    return store


def get(client: FlaskClient, url: str, headers: dict[str, str]) -> Any:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_list_filters_and_pages_through_events_newest_first(
        client: FlaskClient, app_store: Store, auth_headers) -> None:
    h = auth_headers("auditor")
    with app_store.read_uow() as uow:
        want = [r.seq for r in uow.audit.query(
            AuditQuery(actions=("face.compare",), actor_key_id="key1"), 100)]
    seen: list[int] = []
    base = "/v1/audit/events?action=face.compare&actor=key1&limit=2"
    url = base
    while True:
        body = get(client, url, h)
        seen += [e["seq"] for e in body["events"]]
        assert all(e["action"] == "face.compare" and e["actor"]["key_id"] == "key1"
                   for e in body["events"])
        if body["next_cursor"] is None:
            break
        url = f"{base}&cursor={body['next_cursor']}"
    assert seen == want
    assert seen == sorted(seen, reverse=True)
    assert len(seen) >= 2


def test_list_oldest_first_with_resource_and_time_filters(
        client: FlaskClient, app_store: Store, auth_headers) -> None:
    h = auth_headers("auditor")
    body = get(client, "/v1/audit/events?order=oldest&resource=collections/c2&limit=500", h)
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == sorted(seqs)
    assert all(e["resource"] == "collections/c2" for e in body["events"])
    assert len(seqs) == 6
    since = body["events"][2]["time"]
    later = get(client, f"/v1/audit/events?order=oldest&resource=collections/c2&since={since}", h)
    assert [e["seq"] for e in later["events"]] == seqs[2:]


def test_a_bad_cursor_or_filter_is_a_422_not_a_500(client: FlaskClient, app_store: Store,
                                                  auth_headers) -> None:
    h = auth_headers("auditor")
    for url in ("/v1/audit/events?cursor=notacursor", "/v1/audit/events?action=face.steal",
                "/v1/audit/events?since=yesterday", "/v1/audit/events?limit=100000"):
        response = client.get(url, headers=h)
        assert response.status_code == 422, url
        assert "error" in response.get_json()


def test_a_boolean_cursor_or_a_time_with_no_utc_form_is_a_422_not_a_500(
        client: FlaskClient, app_store: Store, auth_headers) -> None:
    h = auth_headers("auditor")
    boolean_cursor = base64.urlsafe_b64encode(b'{"s":true,"o":"newest"}').decode()
    for url in (f"/v1/audit/events?cursor={boolean_cursor}",
                "/v1/audit/events?since=0001-01-01T00:00:00%2B05:00",
                "/v1/audit/events?until=9999-12-31T23:59:59-05:00",
                "/v1/audit/export?since=0001-01-01T00:00:00%2B05:00"):
        response = client.get(url, headers=h)
        assert response.status_code == 422, url
        assert "error" in response.get_json()


def test_one_event_by_id_and_an_unknown_id_is_404(client: FlaskClient, app_store: Store,
                                                  auth_headers) -> None:
    h = auth_headers("auditor")
    first = get(client, "/v1/audit/events?limit=1", h)["events"][0]
    assert get(client, f"/v1/audit/events/{first['id']}", h) == first
    response = client.get("/v1/audit/events/00000000-0000-0000-0000-000000000000", headers=h)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_verify_reports_an_intact_chain_then_the_first_tampered_event(
        client: FlaskClient, app_store: Store, auth_headers) -> None:
    h = auth_headers("auditor")
    report = get(client, "/v1/audit/verify", h)
    assert report["ok"] is True
    assert report["problem"] is None
    assert report["events_checked"] >= 30
    drop_append_only_triggers(app_store.engine)
    with app_store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_events SET outcome = 'forged' WHERE seq = 7")
    report = get(client, "/v1/audit/verify", h)
    assert report["ok"] is False
    assert report["problem"]["seq"] == 7
    assert report["problem"]["kind"] == "edited"


def test_an_exported_jsonl_file_verifies_offline_with_the_published_key(
        client: FlaskClient, app_store: Store, auth_headers) -> None:
    h = auth_headers("auditor")
    response = client.get("/v1/audit/export?format=jsonl", headers=h)
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    key = load_public_key(get(client, "/v1/audit/public-key", h)["public_key"])
    parsed = read_jsonl_export(io.StringIO(response.get_data(as_text=True)))
    assert parsed.header["complete"] is True
    report = verify_export(parsed, [key])
    assert report.ok, report.problem
    assert report.last_checkpoint_seq == 1
    events = get(client, "/v1/audit/events?action=audit.export", h)["events"]
    assert len(events) == 1
    assert events[0]["actor"]["role"] == "auditor"
    assert events[0]["details"] == {"filtered": False, "format": "jsonl"}


def test_a_filtered_csv_export_streams_only_matching_events(
        client: FlaskClient, app_store: Store, auth_headers) -> None:
    h = auth_headers("auditor")
    response = client.get("/v1/audit/export?format=csv&outcome=match", headers=h)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = response.get_data(as_text=True).splitlines()
    event_rows = [r for r in rows[1:] if r.startswith("event,")]
    assert event_rows
    assert all(",match," in r for r in event_rows)


def test_a_checkpoint_can_be_made_on_demand_and_listed(
        client: FlaskClient, app_store: Store, auth_headers) -> None:
    h = auth_headers("auditor")
    response = client.post("/v1/audit/checkpoints", headers=h)
    assert response.status_code == 201
    made = response.get_json()
    listed = get(client, "/v1/audit/checkpoints", h)["checkpoints"]
    assert listed[-1] == made
    assert made["seq"] >= 30


@pytest.mark.parametrize("role", ["app", "operator", "reviewer"])
def test_only_auditors_and_admins_read_the_audit_trail(
        client: FlaskClient, app_store: Store, auth_headers, role: str) -> None:
    assert client.get("/v1/audit/events", headers=auth_headers(role)).status_code == 403
    assert client.get("/v1/audit/events").status_code == 401
    assert client.get("/v1/audit/events", headers=auth_headers("admin")).status_code == 200


def test_event_json_has_the_documented_shape(client: FlaskClient, app_store: Store,
                                             auth_headers) -> None:
    event = get(client, "/v1/audit/events?limit=1&action=face.index", auth_headers("auditor"))[
        "events"][0]
    assert set(event) == {"seq", "id", "time", "action", "outcome", "actor", "resource",
                          "subject_id", "policy", "engine", "scores", "input_digests",
                          "request_id", "reason", "details", "prev_hash", "hash"}
    assert json.dumps(event)


def test_a_detect_call_is_found_by_its_request_id_with_digest_and_actor(
        client: FlaskClient, app_store: Store, auth_headers, fake_engine) -> None:
    from tests.conftest import solid_image

    image = solid_image(color=(200, 10, 10))
    auditor = auth_headers("auditor")  # made before the request, so not part of it
    response = client.post("/v1/faces/detect", headers={**auth_headers("app"),
                                                        "X-Request-ID": "req-audit-42"},
                           data={"image": (io.BytesIO(image), "x.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    body = get(client, "/v1/audit/events?request_id=req-audit-42", auditor)
    [event] = body["events"]
    assert (event["action"], event["outcome"], event["actor"]["role"]) == (
        "face.detect", "success", "app")
    assert event["input_digests"] == [hashlib.sha256(image).hexdigest()]
    assert event["engine"] == {"name": "fake", "model_version": "fake-1"}
    assert event["scores"] == {"face_count": 0}
