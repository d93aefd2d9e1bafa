"""`faceapi blobs check` (services/blob_check.py) on the test app: it finds a face crop
or an evidence file the database names but the blob directory lacks, counts crop files
no face names, and reads nothing else. The drill in test_backup_restore.py runs it on a
restored copy."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from faceapi.config import Settings
from faceapi.entrypoints.cli.blobs import blobs
from tests.conftest import HeadersFactory
from tests.fakes import FakeEngine
from tests.integration.test_face_crops import ALICE, BOB, blob_root, create, enroll
from tests.integration.verify_support import b64, scripted, vector_at


@pytest.fixture
def enrolled(app: Flask, client: FlaskClient, fake_engine: FakeEngine,
             auth_headers: HeadersFactory) -> dict[str, str]:
    operator = auth_headers("operator")
    create(client, operator, "staff")
    faces = {"alice": enroll(client, fake_engine, operator, "staff", ("alice", ALICE)),
             "bob": enroll(client, fake_engine, operator, "staff", ("bob", BOB))}
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    reply = client.post("/v1/verify", headers=auth_headers("app"), json={
        "collection_id": "staff", "subject_id": "alice", "policy": "identity_check",
        "image": b64(probe)})
    assert reply.get_json()["outcome"] == "pending_review", reply.get_json()
    return {**faces, "review_id": reply.get_json()["review_id"]}


def check(app: Flask) -> dict[str, object]:
    return app.extensions["faceapi"].use_cases.check_blobs().as_json()


def test_a_complete_blob_store_passes(app: Flask, enrolled: dict[str, str]) -> None:
    report = check(app)
    assert report["ok"] is True
    assert (report["faces"], report["crops_missing"], report["orphan_crops"]) == (2, 0, 0)
    assert report["reviews"] == 1
    assert report["evidence_files"] >= 2  # the probe and alice's crop
    assert report["evidence_missing"] == 0


def test_a_missing_crop_and_a_missing_evidence_file_fail_and_are_named(
        app: Flask, enrolled: dict[str, str]) -> None:
    root = blob_root(app)
    (root / "faces" / "staff" / f"{enrolled['bob']}.jpg").unlink()
    evidence = sorted((root / "reviews" / enrolled["review_id"]).iterdir())
    evidence[0].unlink()
    report = check(app)
    assert report["ok"] is False
    assert (report["crops_missing"], report["evidence_missing"]) == (1, 1)
    assert f"faces/staff/{enrolled['bob']}.jpg" in report["missing_examples"]
    assert f"reviews/{enrolled['review_id']}/{evidence[0].name}" in report["missing_examples"]


def test_a_crop_file_no_face_names_is_counted_but_does_not_fail(
        app: Flask, enrolled: dict[str, str]) -> None:
    (blob_root(app) / "faces" / "staff" / "not-a-face.jpg").write_bytes(b"\xff\xd8")
    report = check(app)
    assert report["ok"] is True
    assert report["orphan_crops"] == 1


def test_the_cli_exits_1_and_says_what_is_missing(app: Flask, settings: Settings,
                                                  enrolled: dict[str, str]) -> None:
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir), "FACEAPI_ENV": "test",
           "FACEAPI_DATABASE_URL": settings.resolved_database_url}
    ok = CliRunner().invoke(blobs, ["check"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "OK: 1 collections, 2 face crops" in ok.output
    (blob_root(app) / "faces" / "staff" / f"{enrolled['alice']}.jpg").unlink()
    failed = CliRunner().invoke(blobs, ["check"], env=env)
    assert failed.exit_code == 1
    assert "FAIL: 1 of 2 face crops" in failed.output
