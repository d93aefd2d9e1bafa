"""An unchanged Rekognition program against the emulator, with Rekognition's defaults.

Rekognition's CompareFaces defaults SimilarityThreshold to 80 and SearchFacesByImage
defaults FaceMatchThreshold to 80; programs written for it rarely pass either. The local
engine's similarity scale (version 2, docs/accuracy.md) keeps that meaning: 80 is a
false-match rate of 1e-3 on the calibration set, so such a program finds the same
person and not a different one. Real parts: the local engine, a werkzeug server on
127.0.0.1 and boto3; images from tests/data (no shared data set needed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faceapi.entrypoints.web.emulator.operations import CONSENT_TAG
from tests.conftest import REPO
from tests.emulator_server import (
    LiveServer,
    api_key,
    local_engine_app,
    rekognition_client,
    serve,
)

DATASET = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"
ANGELINA_ENROLLED = DATASET / "img5.jpg"
ANGELINA_PROBE = DATASET / "img6.jpg"  # another photo of the same person
JENNIFER = DATASET / "img12.jpg"
AMY = REPO / "tests" / "data" / "faces" / "face-api.js" / "examples" / "images" / "amy" / \
    "amy1.png"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = serve(local_engine_app(tmp_path_factory.mktemp("emulator-defaults")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rekognition(live: LiveServer) -> Any:
    return rekognition_client(live.url, api_key(live.app, "admin"))


def test_compare_faces_without_a_threshold_matches_the_same_person_only(rekognition: Any) -> None:
    same = rekognition.compare_faces(SourceImage={"Bytes": ANGELINA_ENROLLED.read_bytes()},
                                     TargetImage={"Bytes": ANGELINA_PROBE.read_bytes()})
    assert len(same["FaceMatches"]) == 1, same
    # Same-person pairs of good photos score in the 90s, as on Rekognition.
    assert same["FaceMatches"][0]["Similarity"] >= 90.0
    assert same["UnmatchedFaces"] == []
    other = rekognition.compare_faces(SourceImage={"Bytes": ANGELINA_ENROLLED.read_bytes()},
                                      TargetImage={"Bytes": JENNIFER.read_bytes()})
    assert other["FaceMatches"] == []
    assert len(other["UnmatchedFaces"]) == 1


def test_search_faces_by_image_with_the_default_threshold_finds_the_enrolled_person(
        rekognition: Any) -> None:
    collection = f"defaults-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=collection, Tags={CONSENT_TAG: "false"})
    try:
        for path, name in ((ANGELINA_ENROLLED, "angelina"), (JENNIFER, "jennifer"),
                           (AMY, "amy")):
            indexed = rekognition.index_faces(CollectionId=collection,
                                              Image={"Bytes": path.read_bytes()},
                                              ExternalImageId=name, MaxFaces=1)
            assert len(indexed["FaceRecords"]) == 1, name
        # The program as written for Rekognition: no FaceMatchThreshold (default 80) ...
        found = rekognition.search_faces_by_image(CollectionId=collection,
                                                  Image={"Bytes": ANGELINA_PROBE.read_bytes()})
        assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["angelina"]
        assert found["FaceMatches"][0]["Similarity"] >= 80.0
        # ... and the same with the default spelt out.
        explicit = rekognition.search_faces_by_image(
            CollectionId=collection, Image={"Bytes": ANGELINA_PROBE.read_bytes()},
            FaceMatchThreshold=80)
        assert [m["Face"]["ExternalImageId"] for m in explicit["FaceMatches"]] == ["angelina"]
    finally:
        rekognition.delete_collection(CollectionId=collection)


def multipart(url: str, key: str, fields: dict[str, str],
              files: dict[str, Path]) -> tuple[int, dict[str, Any]]:
    """A multipart POST over real HTTP, as the quickstart's curl sends it."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    for name, path in files.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 ).encode() + path.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {key}",
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_quickstarts_compare_and_login_answer_as_documented(live: LiveServer) -> None:
    # docs/quickstart.md: compare with no threshold, then enroll img5 and log in with img6.
    app_key, operator = api_key(live.app, "app"), api_key(live.app, "operator")
    status, compared = multipart(f"{live.url}/v1/faces/compare", str(app_key), {},
                                 {"source": ANGELINA_ENROLLED, "target": ANGELINA_PROBE})
    assert status == 200, compared
    assert len(compared["FaceMatches"]) == 1
    assert compared["FaceMatches"][0]["Similarity"] == pytest.approx(93.9432, abs=0.01)
    collection = f"staff-{uuid.uuid4().hex[:6]}"
    request = urllib.request.Request(
        f"{live.url}/v1/collections", method="POST",
        data=json.dumps({"collection_id": collection}).encode(),
        headers={"Authorization": f"Bearer {operator}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 201)
    status, enrolled = multipart(
        f"{live.url}/v1/collections/{collection}/faces", str(operator),
        {"subject_id": "angelina",
         "consent": json.dumps({"basis": "explicit_consent", "reference": "form-2026-001"})},
        {"image": ANGELINA_ENROLLED})
    assert status in (200, 201), enrolled
    status, decision = multipart(f"{live.url}/v1/verify", str(app_key),
                                 {"collection_id": collection, "subject_id": "angelina",
                                  "policy": "login"}, {"image": ANGELINA_PROBE})
    assert status == 200, decision
    assert (decision["outcome"], decision["threshold"]) == ("match", 80.0)
    assert decision["similarity"] == pytest.approx(93.9432, abs=0.01)
