"""Consent expiry through every entry point (issue 16, item 4): the API records and
shows it; once it lapses no entry point (REST, the Rekognition-compatible endpoint over
a real socket with boto3, `faceapi import`) can enroll, search or verify the subject;
`faceapi retention run` erases the subject like a manual erasure and audits it."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from faceapi.adapters.store.tables import audit_events, consents, decisions, faces, subjects
from faceapi.bootstrap import bootstrap
from faceapi.config import Settings
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.collections import Consent, ConsentBasis, Subject
from faceapi.entrypoints.cli import cli
from faceapi.entrypoints.cli.imports import Importer, import_items, plan
from faceapi.services.collections import ConsentInput
from tests.conftest import HeadersFactory, KeyFactory, solid_image
from tests.emulator_server import LiveServer, api_key, rekognition_client, serve
from tests.fakes import FakeClock, FakeEngine, ScriptedFace, face, unit_vector
from tests.integration.verify_support import b64, scripted

ALICE, BOB = unit_vector(1), unit_vector(2)


def consent(expires_at: datetime | None = None, reference: str = "form-7") -> dict[str, Any]:
    body: dict[str, Any] = {"basis": "explicit_consent", "reference": reference}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    return body


def count(app: Flask, table: Any, **where: str) -> int:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        stmt = select(func.count()).select_from(table).where(
            *(table.c[k] == v for k, v in where.items()))
        return int(conn.execute(stmt).scalar_one())


def events(app: Flask, action: str) -> list[Any]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return list(conn.execute(select(audit_events).where(audit_events.c.action == action)
                                 .order_by(audit_events.c.seq)))


@pytest.fixture
def operator(auth_headers: HeadersFactory) -> dict[str, str]:
    return auth_headers("operator")


@pytest.fixture
def watch(client: FlaskClient, operator: dict[str, str], fake_engine: FakeEngine,
          clock: FakeClock) -> str:
    """alice consents for 30 days, bob for good, each with one face."""
    created = client.post("/v1/collections", headers=operator, json={
        "collection_id": "watch", "policies": ["login", "photo_tagging"]})
    assert created.status_code == 201, created.get_json()
    for subject, vector, until in (("alice", ALICE, clock.now() + timedelta(days=30)),
                                   ("bob", BOB, None)):
        response = client.post("/v1/collections/watch/faces", headers=operator, json={
            "image": b64(scripted(fake_engine, [vector])), "subject_id": subject,
            "consent": consent(until)})
        assert response.status_code == 200, response.get_json()
    return "watch"


@pytest.mark.usefixtures("watch")
def test_a_consents_expiry_is_recorded_shown_and_audited_without_its_reference(
        app: Flask, client: FlaskClient, operator: dict[str, str], clock: FakeClock) -> None:
    shown = client.get("/v1/collections/watch/subjects/alice", headers=operator).get_json()
    until = clock.now() + timedelta(days=30)
    assert datetime.fromisoformat(shown["Consent"]["ExpiresAt"]) == until
    assert "ExpiresAt" not in client.get("/v1/collections/watch/subjects/bob",
                                         headers=operator).get_json()["Consent"]
    recorded = events(app, "subject.consent")
    assert json.loads(recorded[0].details) == {"basis": "explicit_consent",
                                               "expires_at": until.isoformat()}
    assert all("form-7" not in json.dumps([str(v) for v in row]) for row in recorded)


@pytest.mark.usefixtures("watch")
@pytest.mark.parametrize(("expires_at", "code"), [
    ("2020-01-01T00:00:00+00:00", "invalid_parameter"),  # already lapsed
    ("2030-01-01T00:00:00", "validation_error"),  # no zone: which moment is it?
    ("next tuesday", "validation_error")])
def test_a_consent_that_cannot_be_in_force_is_refused_and_changes_nothing(
        app: Flask, client: FlaskClient, operator: dict[str, str], expires_at: str,
        code: str) -> None:
    before = (count(app, consents), count(app, audit_events))
    response = client.post("/v1/collections/watch/subjects/carol/consent", headers=operator,
                           json={**consent(), "expires_at": expires_at})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert (count(app, consents), count(app, audit_events)) == before
    assert count(app, subjects, subject_id="carol") == 0


@pytest.mark.usefixtures("watch")
def test_once_lapsed_the_api_enrolls_searches_and_verifies_the_subject_no_more(
        app: Flask, client: FlaskClient, fake_engine: FakeEngine, clock: FakeClock,
        auth_headers: HeadersFactory) -> None:
    app_key, operator = auth_headers("app"), auth_headers("operator")

    def searched() -> list[str]:
        response = client.post("/v1/collections/watch/search", headers=app_key, json={
            "image": b64(scripted(fake_engine, [ALICE])), "policy": "photo_tagging"})
        assert response.status_code == 200, response.get_json()
        return [m["Face"]["ExternalImageId"] for m in response.get_json()["FaceMatches"]]

    assert searched() == ["alice"]
    clock.advance(days=31)  # before any retention run
    assert searched() == []
    verified = client.post("/v1/verify", headers=app_key, json={
        "collection_id": "watch", "subject_id": "alice", "policy": "login",
        "image": b64(scripted(fake_engine, [ALICE]))}).get_json()
    assert verified["outcome"] == "no_match"
    refused = client.post("/v1/collections/watch/faces", headers=operator, json={
        "image": b64(scripted(fake_engine, [ALICE])), "subject_id": "alice"})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "consent_required"
    assert refused.get_json()["error"]["details"]["refusal"] == "consent_expired"
    assert count(app, faces, subject_id="alice") == 1
    # A new consent sent with the faces is a renewal: recorded, then enrolled.
    renewed = client.post("/v1/collections/watch/faces", headers=operator, json={
        "image": b64(scripted(fake_engine, [ALICE])), "subject_id": "alice",
        "consent": consent(clock.now() + timedelta(days=30), "form-8")})
    assert renewed.status_code == 200, renewed.get_json()
    assert searched() == ["alice", "alice"]


@pytest.fixture
def live(app: Flask) -> Iterator[LiveServer]:
    server = serve(app)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.usefixtures("watch")
def test_the_rekognition_endpoint_cannot_use_a_lapsed_consent_either(
        app: Flask, live: LiveServer, fake_engine: FakeEngine, clock: FakeClock) -> None:
    rekognition = rekognition_client(live.url, api_key(app, "operator"), max_attempts=1)
    image = scripted(fake_engine, [ALICE])
    found = rekognition.search_faces_by_image(CollectionId="watch", Image={"Bytes": image})
    alice_face = found["FaceMatches"][0]["Face"]["FaceId"]
    clock.advance(days=31)
    found = rekognition.search_faces_by_image(CollectionId="watch",
                                              Image={"Bytes": scripted(fake_engine, [ALICE])})
    assert found["FaceMatches"] == []
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        rekognition.index_faces(CollectionId="watch", ExternalImageId="alice",
                                Image={"Bytes": scripted(fake_engine, [ALICE])})
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError):
        rekognition.search_faces(CollectionId="watch", FaceId=alice_face)
    bob = rekognition.search_faces_by_image(CollectionId="watch",
                                            Image={"Bytes": scripted(fake_engine, [BOB])})
    assert [m["Face"]["ExternalImageId"] for m in bob["FaceMatches"]] == ["bob"]
    assert count(app, faces, subject_id="alice") == 1


@pytest.mark.usefixtures("watch")
def test_a_bulk_import_does_not_renew_a_lapsed_consent(
        app: Flask, settings: Settings, fake_engine: FakeEngine, clock: FakeClock,
        tmp_path: Path) -> None:
    folder = tmp_path / "people" / "alice"
    folder.mkdir(parents=True)
    data = solid_image(24, 24, color=(9, 40, 200))
    (folder / "a1.png").write_bytes(data)
    fake_engine.script(data, [ScriptedFace(face(), ALICE)])
    clock.advance(days=31)
    container = bootstrap(settings, engine=fake_engine, clock=clock)
    container.store = app.extensions["faceapi"].store
    # The batch names a consent, as an old import command re-run would.
    batch = ConsentInput(ConsentBasis.EXPLICIT_CONSENT, "batch-1")
    importer = Importer(collection_id="watch", actor=Actor.system("import"),
                        use_cases=container.use_cases,
                        max_image_bytes=settings.max_image_bytes, consent=batch)
    report = tmp_path / "report.csv"
    with report.open("w", newline="", encoding="utf-8") as out:
        import_items(plan(tmp_path / "people", subject_from="folder"), importer, out)
    with report.open(newline="", encoding="utf-8") as out:
        rows = list(csv.DictReader(out))
    assert [(r["status"], r["reason"]) for r in rows] == [("failed", "consent_required")]
    assert count(app, faces, subject_id="alice") == 1
    assert count(app, consents, subject_id="alice") == 1


def test_the_cli_refuses_a_consent_expiry_already_past(settings: Settings,
                                                       tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [
        "import", str(tmp_path), "--collection", "watch", "--consent-basis",
        "explicit_consent", "--consent-reference", "b", "--consent-expires",
        "2020-01-01T00:00:00Z"], env=_cli_env(settings))
    assert result.exit_code == 2
    assert "must be in the future" in result.output


def _cli_env(settings: Settings) -> dict[str, str]:
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir), "FACEAPI_ENV": "test",
           "FACEAPI_BLOB_DIR": str(settings.resolved_blob_dir)}
    if settings.database_url:
        env["FACEAPI_DATABASE_URL"] = settings.database_url
    return env


def test_retention_run_erases_a_lapsed_subject_everywhere_and_audits_each_erasure(
        app: Flask, client: FlaskClient, fake_engine: FakeEngine, settings: Settings,
        auth_headers: HeadersFactory) -> None:
    operator = auth_headers("operator")
    # The command runs on the wall clock: alice's consent lapsed yesterday, bob's holds.
    created = client.post("/v1/collections", headers=operator, json={
        "collection_id": "watch", "policies": ["login", "identity_check"]})
    assert created.status_code == 201
    for subject, vector in (("alice", ALICE), ("bob", BOB)):
        client.post("/v1/collections/watch/faces", headers=operator, json={
            "image": b64(scripted(fake_engine, [vector])), "subject_id": subject,
            "consent": consent()})
    pending = client.post("/v1/verify", headers=auth_headers("app"), json={
        "collection_id": "watch", "subject_id": "alice", "policy": "identity_check",
        "image": b64(scripted(fake_engine, [ALICE]))}).get_json()
    assert pending["outcome"] == "pending_review"
    store = app.extensions["faceapi"].store
    blob_dir = Path(settings.resolved_blob_dir)
    alice_files = {p for p in blob_dir.rglob("*") if p.is_file()}
    with store.uow() as uow:
        uow.subjects.ensure(Subject("watch", "alice", datetime.now(UTC)))
        uow.consents.record(Consent("watch", "alice", ConsentBasis.EXPLICIT_CONSENT, "f-9",
                                    datetime.now(UTC) - timedelta(days=2),
                                    expires_at=datetime.now(UTC) - timedelta(days=1)))
        uow.audit.append(AuditEvent(action=Action.SUBJECT_CONSENT, outcome="recorded",
                                    actor=Actor.system("test")))
        uow.commit()
    result = CliRunner().invoke(cli, ["retention", "run"], env=_cli_env(settings))
    assert result.exit_code == 0, result.output
    assert "erased 1 subject(s) whose consent lapsed" in result.output
    for table in (faces, consents, subjects):
        assert count(app, table, subject_id="alice") == 0, table.name
    assert count(app, faces, subject_id="bob") == 1
    assert count(app, decisions, subject_id="alice") == 0  # pseudonymised, not deleted
    assert count(app, decisions) >= 1
    left = {p for p in blob_dir.rglob("*") if p.is_file()}
    assert left < alice_files  # alice's crop and her review's evidence are gone
    assert not any("reviews" in p.parts for p in left)
    (erasure,) = events(app, "subject.erase")
    assert (erasure.subject_id, erasure.reason) == ("alice", "consent_expired")
    assert (erasure.actor_role, erasure.actor_key_id) == ("system", "retention")
    scores = json.loads(erasure.scores)
    assert scores["face_count"] == 1
    assert scores["reviews_pseudonymised_count"] == 1
    assert scores["decisions_pseudonymised_count"] == 1
    (summary,) = events(app, "retention.run")
    assert json.loads(summary.scores)["subjects_erased"] == 1
    # A second run finds nothing more to erase.
    again = CliRunner().invoke(cli, ["retention", "run"], env=_cli_env(settings))
    assert "erased 0 subject(s)" in again.output


def _console_sign_in(client: FlaskClient, key: str) -> None:
    signin = client.get("/console/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', signin)
    assert token is not None
    signed = client.post("/console/signin", data={"api_key": key,
                                                  "csrf_token": token.group(1)})
    assert signed.status_code == 302


@pytest.mark.usefixtures("watch")
def test_the_console_shows_a_lapsed_consent_and_offers_no_way_to_use_it(
        app: Flask, client: FlaskClient, clock: FakeClock, make_key: KeyFactory) -> None:
    # The console has no enrollment or search page (its routes are listed in
    # access.PERMISSIONS); an operator sees the lapse on the subject's page.
    key = make_key("operator")
    _console_sign_in(client, key)
    page = client.get("/console/collections/watch/subjects/alice").get_data(as_text=True)
    assert "Expires" in page
    assert "lapsed" not in page
    clock.advance(days=31)
    _console_sign_in(client, key)  # the session itself has timed out meanwhile
    page = client.get("/console/collections/watch/subjects/alice").get_data(as_text=True)
    assert "<strong>lapsed</strong>" in page
    # Nothing the console changes touches faces: its POSTs are these, and no other.
    posts = {r.endpoint for r in app.url_map.iter_rules()
             if r.rule.startswith("/console") and "POST" in (r.methods or set())}
    assert posts == {"console.signin", "console.signout", "console.audit_verify",
                     "console.subject_erase", "console.subject_unlock",
                     "console.review_decide"}
