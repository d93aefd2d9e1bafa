"""Erasing a subject (GDPR Art 17) through HTTP: afterwards the store, the blob
directory and the search index hold nothing of the subject, the audit trail records
the erasure without biometric data, and a failed erasure changes nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from faceapi.adapters.store.tables import (
    audit_events,
    consents,
    decisions,
    faces,
    lockouts,
    reviews,
    subjects,
)
from faceapi.domain.collections import embedding_to_bytes
from faceapi.services.ports import ErasedData, UnitOfWork
from tests.conftest import HeadersFactory, solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector

ALICE = unit_vector(1)
BOB = unit_vector(2)
CONSENT = {"basis": "explicit_consent", "reference": "form-7"}
_colours = iter(range(1, 10_000))


def b64(data: bytes) -> dict[str, str]:
    return {"bytes": base64.b64encode(data).decode("ascii")}


def scripted(engine: FakeEngine, vector: tuple[float, ...]) -> bytes:
    n = next(_colours)
    image = solid_image(40, 40, color=(n % 251, 17, (n // 251) % 251))
    engine.script(image, [ScriptedFace(face(), vector)])
    return image


def rows(app: Flask, table: Any, subject_id: str) -> list[Any]:
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        return list(conn.execute(select(table).where(table.c.subject_id == subject_id)))


def blob_files(app: Flask) -> list[Path]:
    root = Path(app.extensions["faceapi"].settings.resolved_blob_dir)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def operator(auth_headers: HeadersFactory) -> dict[str, str]:
    return auth_headers("operator")


@pytest.fixture
def enrolled(client: FlaskClient, operator: dict[str, str], fake_engine: FakeEngine) -> str:
    client.post("/v1/collections", headers=operator, json={
        "collection_id": "watch",
        "policies": ["identity_check", "login", "photo_tagging", "watchlist_search"]})
    for subject, vector in (("alice", ALICE), ("bob", BOB)):
        for _ in range(2):
            response = client.post("/v1/collections/watch/faces", headers=operator, json={
                "image": b64(scripted(fake_engine, vector)), "subject_id": subject,
                "consent": CONSENT})
            assert response.status_code == 200, response.get_json()
    return "watch"


def verify(client: FlaskClient, engine: FakeEngine, headers: dict[str, str], policy: str,
           vector: tuple[float, ...]) -> dict[str, Any]:
    response = client.post("/v1/verify", headers=headers, json={
        "collection_id": "watch", "subject_id": "alice", "policy": policy,
        "image": b64(scripted(engine, vector))})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture
def alice_everywhere(app: Flask, client: FlaskClient, enrolled: str, fake_engine: FakeEngine,
                     auth_headers: HeadersFactory) -> None:
    """Alice with faces, consent, a pending review holding evidence images, and
    lockout state from failed logins."""
    app_key = auth_headers("app")
    pending = verify(client, fake_engine, app_key, "identity_check", ALICE)
    assert pending["outcome"] == "pending_review"
    failed = verify(client, fake_engine, app_key, "login", BOB)
    assert failed["outcome"] == "no_match"
    assert rows(app, faces, "alice")
    assert rows(app, reviews, "alice")
    assert rows(app, lockouts, "alice")
    assert blob_files(app)
    assert app.extensions["faceapi"].index.search("watch", ALICE, threshold=99, max_faces=5)


@pytest.mark.usefixtures("alice_everywhere")
def test_erasing_a_subject_leaves_nothing_of_it_in_the_store_blobs_or_index(
        app: Flask, client: FlaskClient, operator: dict[str, str]) -> None:
    alice_bytes = embedding_to_bytes(ALICE)
    alice_faces = {row.face_id for row in rows(app, faces, "alice")}
    bob_faces = {row.face_id for row in rows(app, faces, "bob")}
    crops = {p.name for p in blob_files(app) if p.parent.name == "watch"}
    assert crops == {f"{f}.jpg" for f in alice_faces | bob_faces}  # kept at enrollment
    # alice's crops, and their copies in her pending review's evidence
    assert {p.stem.removeprefix("candidate_") for p in blob_files(app)} >= alice_faces
    response = client.delete("/v1/collections/watch/subjects/alice", headers=operator)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["DeletedFaceCount"], body["DeletedConsentCount"]) == (2, 1)
    assert body["DeletedOther"]["review_evidence"] == 1
    # login's failures and identity_check's pending attempt: each policy's count
    assert body["DeletedOther"]["lockout"] == 2

    for table in (faces, subjects, consents, lockouts):
        assert rows(app, table, "alice") == [], table.name
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        stored = [bytes(e) for e in conn.execute(select(faces.c.embedding)).scalars()]
        review = conn.execute(select(reviews).where(reviews.c.collection_id == "watch")).one()
    assert alice_bytes not in stored
    assert len(stored) == 2  # bob's faces stay
    assert review.evidence_purged
    # The review row stays for reporting, without alice's ids (ReviewPseudonymiser).
    assert review.subject_id is None
    assert "alice" not in review.candidates
    assert body["DeletedOther"]["reviews_pseudonymised"] == 1
    assert body["DeletedOther"]["face_crop"] == 2
    left = blob_files(app)
    # Only bob's enrolled-face crops remain: no crop of alice's faces, no review
    # evidence.
    assert {p.name for p in left} == {f"{f}.jpg" for f in bob_faces}
    assert not any(p.stem in alice_faces for p in left)
    assert all(hit.subject_id != "alice"
               for hit in d.index.search("watch", ALICE, threshold=0, max_faces=100))


@pytest.mark.usefixtures("alice_everywhere")
def test_the_erasure_is_audited_with_the_subject_id_and_counts_only(
        app: Flask, client: FlaskClient, operator: dict[str, str]) -> None:
    response = client.delete("/v1/collections/watch/subjects/alice", headers=operator)
    event_id = response.get_json()["AuditEventId"]
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        event = conn.execute(select(audit_events).where(audit_events.c.id == event_id)).one()
    assert (event.action, event.outcome, event.subject_id) == ("subject.erase", "erased",
                                                               "alice")
    assert event.resource == "collections/watch/subjects/alice"
    assert json.loads(event.scores)["face_count"] == 2
    assert json.loads(event.input_digests) == []
    assert "form-7" not in json.dumps([str(v) for v in event])  # the consent reference


@pytest.mark.usefixtures("alice_everywhere")
def test_the_erasure_pseudonymises_the_subjects_decisions_in_its_transaction(
        app: Flask, client: FlaskClient, operator: dict[str, str]) -> None:
    alice_decisions = {row.id for row in rows(app, decisions, "alice")}
    assert len(alice_decisions) == 2  # identity_check pending, login no_match
    response = client.delete("/v1/collections/watch/subjects/alice", headers=operator)
    body = response.get_json()
    assert body["DeletedOther"]["decisions_pseudonymised"] == 2
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        kept = conn.execute(select(decisions).where(decisions.c.id.in_(alice_decisions))).all()
        event = conn.execute(select(audit_events)
                             .where(audit_events.c.id == body["AuditEventId"])).one()
    assert len(kept) == 2  # the rows stay for reporting, without the subject
    for row in kept:
        assert row.subject_id is None
        assert row.matched_face_id is None
        assert "alice" not in row.candidates
    assert json.loads(event.scores)["decisions_pseudonymised_count"] == 2


@pytest.mark.usefixtures("enrolled")
def test_other_subjects_are_untouched(app: Flask, client: FlaskClient,
                                      operator: dict[str, str]) -> None:
    client.delete("/v1/collections/watch/subjects/alice", headers=operator)
    bob = client.get("/v1/collections/watch/subjects/bob", headers=operator)
    assert bob.status_code == 200
    assert bob.get_json()["FaceCount"] == 2
    assert bob.get_json()["Consent"]["Basis"] == "explicit_consent"


@pytest.mark.usefixtures("enrolled")
def test_an_erased_subject_is_gone_and_a_second_erasure_is_404(
        client: FlaskClient, operator: dict[str, str]) -> None:
    assert client.delete("/v1/collections/watch/subjects/alice",
                         headers=operator).status_code == 200
    assert client.get("/v1/collections/watch/subjects/alice",
                      headers=operator).status_code == 404
    again = client.delete("/v1/collections/watch/subjects/alice", headers=operator)
    assert again.status_code == 404
    assert again.get_json()["error"]["code"] == "not_found"


@pytest.mark.usefixtures("enrolled")
def test_an_unknown_subject_is_404_and_nothing_is_audited_as_erased(
        app: Flask, client: FlaskClient, operator: dict[str, str]) -> None:
    response = client.delete("/v1/collections/watch/subjects/nobody", headers=operator)
    assert response.status_code == 404
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        erased = conn.execute(select(audit_events.c.id)
                              .where(audit_events.c.action == "subject.erase")).all()
    assert erased == []


@pytest.mark.usefixtures("enrolled")
def test_an_app_key_cannot_erase_subjects(client: FlaskClient,
                                          auth_headers: HeadersFactory) -> None:
    response = client.delete("/v1/collections/watch/subjects/alice",
                             headers=auth_headers("app"))
    assert response.status_code == 403


@pytest.mark.usefixtures("alice_everywhere")
def test_a_failure_during_erasure_leaves_everything_as_it_was(
        app: Flask, client: FlaskClient, operator: dict[str, str]) -> None:
    def failing_eraser(uow: UnitOfWork, collection_id: str,
                       subject_id: str | None) -> ErasedData:
        raise RuntimeError("disk on fire")

    d = app.extensions["faceapi"]
    before = {t.name: rows(app, t, "alice")
              for t in (faces, subjects, consents, lockouts, decisions)}
    files = blob_files(app)
    with d.store.engine.connect() as conn:
        events = len(conn.execute(select(audit_events.c.seq)).all())
    d.erasers = (*d.erasers, failing_eraser)
    assert any(p.parent.name == "watch" for p in files)  # the enrolled-face crops
    response = client.delete("/v1/collections/watch/subjects/alice", headers=operator)
    assert response.status_code == 500
    assert {t.name: rows(app, t, "alice")
            for t in (faces, subjects, consents, lockouts, decisions)} == before
    assert len(before["decisions"]) == 2
    assert blob_files(app) == files
    with d.store.engine.connect() as conn:
        assert len(conn.execute(select(audit_events.c.seq)).all()) == events


@pytest.mark.usefixtures("alice_everywhere")
def test_deleting_the_collection_also_erases_review_evidence_and_lockouts(
        app: Flask, client: FlaskClient, operator: dict[str, str]) -> None:
    assert client.delete("/v1/collections/watch", headers=operator).status_code == 200
    for table in (faces, subjects, consents, lockouts, decisions):
        assert rows(app, table, "alice") == [], table.name
    assert blob_files(app) == []
