"""Group photos said plainly (issue 17, item 7), through the live server and the import
command's importer: enrollment follows the collection's `multiple_faces` rule, and
photo tagging can search every face of a photo (each face its own decision)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from faceapi.domain.audit import Actor
from faceapi.domain.collections import ConsentBasis
from faceapi.entrypoints.cli.imports import Importer, import_items, plan
from faceapi.services.collections import ConsentInput
from tests.conftest import KeyFactory, solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.integration.verify_support import b64, new_image
from tests.security.conftest import Http, serve
from tests.security.support import audit_rows, decision_count

CONSENT = {"basis": "explicit_consent", "reference": "form-7"}
ALICE, BOB = unit_vector(1), unit_vector(2)


@pytest.fixture
def api(app: Flask) -> Iterator[Http]:
    server = serve(app)
    try:
        yield Http(server.url)
    finally:
        server.stop()


def two_people(engine: FakeEngine, first: tuple[float, ...] = ALICE,
               second: tuple[float, ...] = BOB) -> bytes:
    """A photo with a larger face (`first`) and a smaller one (`second`)."""
    image = new_image()
    engine.script(image, [ScriptedFace(face(left=0.05, size=0.3), first),
                          ScriptedFace(face(left=0.55, size=0.2), second)])
    return image


def one_person(engine: FakeEngine, vector: tuple[float, ...]) -> bytes:
    image = new_image()
    engine.script(image, [ScriptedFace(face(), vector)])
    return image


def create(api: Http, key: str, collection_id: str, **settings: Any) -> None:
    reply = api.post("/v1/collections", key=key, json_body={
        "collection_id": collection_id, "policies": ["photo_tagging", "watchlist_search"],
        **settings})
    assert reply.status == 201, reply.body


def enroll(api: Http, key: str, collection_id: str, subject: str, image: bytes,
           **extra: Any) -> Any:
    return api.post(f"/v1/collections/{collection_id}/faces", key=key, json_body={
        "image": b64(image), "subject_id": subject, "consent": CONSENT, **extra})


def test_a_group_photo_is_refused_by_default_naming_the_count_and_nothing_is_enrolled(
        app: Flask, api: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    operator = make_key("operator")
    create(api, operator, "staff")
    assert api.get("/v1/collections/staff", key=operator).json()["MultipleFaces"] == "refuse"
    reply = enroll(api, operator, "staff", "alice", two_people(fake_engine))
    assert reply.status == 422
    error = reply.json()["error"]
    assert error["code"] == "multiple_faces"
    assert error["details"]["face_count"] == 2
    assert "2 faces" in error["message"]
    assert api.get("/v1/collections/staff", key=operator).json()["FaceCount"] == 0
    (event,) = [e for e in audit_rows(app, "face.index") if e["outcome"] == "refused"]
    assert (event["reason"], event["scores"]["face_count"]) == ("multiple_faces", 2)


def test_under_largest_the_largest_face_is_enrolled_with_a_warning(
        api: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    operator = make_key("operator")
    create(api, operator, "staff", multiple_faces="largest")
    reply = enroll(api, operator, "staff", "alice", two_people(fake_engine))
    assert reply.status == 200, reply.body
    body = reply.json()
    assert [r["FaceDetail"]["BoundingBox"]["Width"] for r in body["FaceRecords"]] == [0.3]
    assert body["Warnings"] == [
        "multiple_faces: the photo shows 2 faces; only the largest was enrolled"]
    assert body["UnindexedFaces"][0]["Reasons"] == ["EXCEEDS_MAX_FACES"]
    # One face: nothing to warn about.
    assert "Warnings" not in enroll(api, operator, "staff", "alice",
                                    one_person(fake_engine, ALICE)).json()


def test_an_explicit_max_faces_keeps_rekognition_semantics_and_warns_when_faces_are_left(
        api: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    operator = make_key("operator")
    create(api, operator, "staff")  # refuse: an explicit max_faces is the caller's choice
    body = enroll(api, operator, "staff", "alice", two_people(fake_engine),
                  max_faces=1).json()
    assert len(body["FaceRecords"]) == 1
    assert body["Warnings"][0].startswith("multiple_faces: the photo shows 2 faces")
    both = enroll(api, operator, "staff", "alice", two_people(fake_engine), max_faces=2)
    assert len(both.json()["FaceRecords"]) == 2
    # No face was left out, so no multiple_faces; but Bob's face now stands under
    # alice beside her own, which the enrollment check says.
    [warning] = both.json()["Warnings"]
    assert warning.startswith("inconsistent_with_subject:")


@pytest.mark.parametrize(("rule", "status", "reason"), [
    ("refuse", "failed", "multiple_faces: 2 faces"),
    ("largest", "indexed",
     "multiple_faces: the photo shows 2 faces; only the largest was enrolled"),
])
def test_a_two_person_photo_in_an_import_is_reported(
        app: Flask, api: Http, *, make_key: KeyFactory, fake_engine: FakeEngine,
        tmp_path: Path, rule: str, status: str, reason: str) -> None:
    create(api, make_key("operator"), "staff", multiple_faces=rule, consent_required=False)
    folder = tmp_path / "people" / "alice"
    folder.mkdir(parents=True)
    for name, faces in (("group.png", 2), ("alone.png", 1)):
        data = solid_image(24, 24, color=(faces * 40, 9, 9))
        (folder / name).write_bytes(data)
        fake_engine.script(data, [ScriptedFace(face(left=0.05 + 0.5 * i, size=0.3 - 0.1 * i),
                                               unit_vector(10 + i)) for i in range(faces)])
    importer = Importer(collection_id="staff", actor=Actor.system("import"),
                        use_cases=app.extensions["faceapi"].use_cases,
                        max_image_bytes=1 << 20,
                        consent=ConsentInput(ConsentBasis.EXPLICIT_CONSENT, "batch-7"))
    report_path = tmp_path / "report.csv"
    with report_path.open("w", newline="", encoding="utf-8") as report:
        import_items(plan(tmp_path / "people", subject_from="folder"), importer, report)
    with report_path.open(newline="", encoding="utf-8") as report:
        rows = {r["file"]: r for r in csv.DictReader(report)}
    assert (rows["alice/group.png"]["status"], rows["alice/group.png"]["reason"]) == \
        (status, reason)
    assert (rows["alice/alone.png"]["status"], rows["alice/alone.png"]["reason"]) == \
        ("indexed", "")


def test_photo_tagging_with_all_faces_finds_both_people_each_with_its_own_decision(
        app: Flask, api: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    operator, tagger = make_key("operator"), make_key("app")
    create(api, operator, "friends")
    assert enroll(api, operator, "friends", "alice", one_person(fake_engine, ALICE)).status \
        == 200
    assert enroll(api, operator, "friends", "bob", one_person(fake_engine, BOB)).status == 200
    photo = two_people(fake_engine)

    largest_only = api.post("/v1/collections/friends/search", key=tagger, json_body={
        "policy": "photo_tagging", "image": b64(photo)}).json()
    assert [m["Face"]["ExternalImageId"] for m in largest_only["FaceMatches"]] == ["alice"]
    assert "FaceSearches" not in largest_only

    before = decision_count(app)
    every = api.post("/v1/collections/friends/search", key=tagger, json_body={
        "policy": "photo_tagging", "image": b64(photo), "all_faces": True})
    assert every.status == 200, every.body
    searches = every.json()["FaceSearches"]
    assert [[m["Face"]["ExternalImageId"] for m in s["FaceMatches"]] for s in searches] == \
        [["alice"], ["bob"]]
    assert [s["SearchedFaceBoundingBox"]["Width"] for s in searches] == [0.3, 0.2]
    assert [s["decision"]["outcome"] for s in searches] == ["match", "match"]
    ids = {s["decision"]["decision_id"] for s in searches}
    assert len(ids) == 2
    assert decision_count(app) == before + 2
    # The top level is the largest face's result, as without all_faces.
    assert every.json()["decision"]["decision_id"] == searches[0]["decision"]["decision_id"]
    for decision_id in ids:
        assert api.get(f"/v1/decisions/{decision_id}", key=tagger).json()["final"] is True


def test_all_faces_is_refused_under_a_consequential_policy_and_decides_nothing(
        app: Flask, api: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    create(api, make_key("operator"), "friends")
    before = decision_count(app)
    reply = api.post("/v1/collections/friends/search", key=make_key("app"), json_body={
        "policy": "watchlist_search", "image": b64(two_people(fake_engine)),
        "all_faces": True})
    assert reply.status == 422
    assert reply.json()["error"]["code"] == "invalid_parameter"
    assert decision_count(app) == before
