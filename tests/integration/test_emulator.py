"""The Rekognition-compatible endpoint, at the wire: every response checked against
botocore's own service model, Rekognition's error shapes and statuses, authentication
with our API keys, and the test-only fault switch."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from flask import Flask
from flask.testing import FlaskClient

from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app
from faceapi.entrypoints.web.emulator import control
from faceapi.entrypoints.web.emulator.operations import CONSENT_TAG, HANDLERS
from tests.botocore_shapes import ShapeChecker, output_shape, problems, service_model
from tests.conftest import REPO, shared_faces_dir
from tests.emulator_server import (
    LiveServer,
    Signer,
    api_key,
    local_engine_app,
    rekognition_client,
    serve,
    sigv4_headers,
)

PORTRAIT = "deepface/tests/unit/dataset/img16.jpg"  # jack_dorsey
SAME_PERSON = "deepface/tests/unit/dataset/img17.jpg"
OTHER = "deepface/tests/unit/dataset/img46.jpg"  # katy_perry
COUPLE = "deepface/tests/unit/dataset/couple.jpg"

CONTENT_TYPE = "application/x-amz-json-1.1"


def read(name: str) -> bytes:
    path = shared_faces_dir() / name
    if not path.is_file():
        pytest.skip(f"shared face data set not found at {shared_faces_dir()} "
                    "(set FACEAPI_FACES_DIR)")
    return path.read_bytes()


@pytest.fixture(scope="module")
def emulator_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return local_engine_app(tmp_path_factory.mktemp("emulator"))


@pytest.fixture(scope="module")
def live(emulator_app: Flask) -> Iterator[LiveServer]:
    server = serve(emulator_app)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def checked_client(live: LiveServer) -> tuple[Any, ShapeChecker]:
    client = rekognition_client(live.url, api_key(live.app, "admin"))
    checker = ShapeChecker()
    client.meta.events.register("after-call.rekognition", checker)
    return client, checker


def send(client: FlaskClient, operation: str, data: bytes, *, key: Signer | None = None,
         content_type: str = CONTENT_TYPE) -> Any:
    """POST `data` as an SDK would: signed by botocore's SigV4 signer with the key's
    credentials (unsigned without a key)."""
    target = f"RekognitionService.{operation}"
    headers = {"X-Amz-Target": target, "Content-Type": content_type}
    if key is not None:
        headers = sigv4_headers(key, data, target=target, content_type=content_type)
    return client.post("/", data=data, headers=headers)


def call(client: FlaskClient, operation: str, body: dict[str, Any], *,
         key: Signer | None = None, content_type: str = CONTENT_TYPE) -> Any:
    return send(client, operation, json.dumps(body).encode(), key=key,
                content_type=content_type)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def assert_aws_error(response: Any, type_: str, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == CONTENT_TYPE
    body: dict[str, Any] = response.get_json(force=True)
    assert set(body) == {"__type", "message"}
    assert body["__type"] == type_
    return body


# --- the botocore-model validator itself ---------------------------------------------------

def test_validation_fails_when_a_field_is_renamed(emulator_app: Flask) -> None:
    key = api_key(emulator_app, "app")
    response = call(emulator_app.test_client(), "DetectFaces",
                    {"Image": {"Bytes": b64(read(PORTRAIT))}, "Attributes": ["ALL"]}, key=key)
    body = response.get_json(force=True)
    assert problems(body, output_shape("DetectFaces")) == []

    renamed = copy.deepcopy(body)
    face = renamed["FaceDetails"][0]
    face["Boundingbox"] = face.pop("BoundingBox")
    found = problems(renamed, output_shape("DetectFaces"))
    assert found == ["$.FaceDetails[0]: unknown member 'Boundingbox' for FaceDetail"]


def test_validation_fails_on_wrong_types_nesting_and_enum_values() -> None:
    shape = output_shape("CompareFaces")
    box = {"Width": 0.5, "Height": 0.5, "Left": 0.1, "Top": 0.1}
    good: dict[str, Any] = {"SourceImageFace": {"BoundingBox": box, "Confidence": 99.0},
                            "FaceMatches": [], "UnmatchedFaces": []}
    assert problems(good, shape) == []
    assert problems({**good, "FaceMatches": {}}, shape) == [
        "$.FaceMatches: expected a list, got dict"]
    assert problems({**good, "SourceImageOrientationCorrection": "ROTATE_45"}, shape) == [
        "$.SourceImageOrientationCorrection: 'ROTATE_45' is not one of "
        "OrientationCorrection's values"]
    nested = copy.deepcopy(good)
    nested["SourceImageFace"]["Confidence"] = "99"
    assert problems(nested, shape) == ["$.SourceImageFace.Confidence: expected a number, got str"]
    assert problems({**good, "FaceMatches": [{"Similarity": 120.0}]}, shape) == [
        "$.FaceMatches[0].Similarity: value 120.0 above Percent's maximum 100"]


def test_validation_fails_when_a_required_member_is_missing() -> None:
    shape = service_model().shape_for("UnsuccessfulFaceDeletion")
    assert problems({"FaceId": "x", "Bogus": 1}, shape) == [
        "$: unknown member 'Bogus' for UnsuccessfulFaceDeletion"]
    landmark = service_model().shape_for("Landmark")
    assert problems({"Type": "thirdEye", "X": 0.1, "Y": 0.2}, landmark) == [
        "$.Type: 'thirdEye' is not one of LandmarkType's values"]


# --- every operation through boto3, every response validated -----------------------------

def test_every_operation_answers_in_botocores_shapes(
        live: LiveServer, checked_client: tuple[Any, ShapeChecker]) -> None:
    client, checker = checked_client
    portrait, same, other, couple = (read(PORTRAIT), read(SAME_PERSON), read(OTHER),
                                     read(COUPLE))
    collection = f"emu-{uuid.uuid4().hex[:8]}"

    client.detect_faces(Image={"Bytes": portrait}, Attributes=["ALL"])
    client.detect_faces(Image={"Bytes": couple})
    client.compare_faces(SourceImage={"Bytes": portrait}, TargetImage={"Bytes": couple},
                         SimilarityThreshold=0)
    created = client.create_collection(CollectionId=collection, Tags={CONSENT_TAG: "false"})
    assert created["StatusCode"] == 200
    indexed = client.index_faces(CollectionId=collection, Image={"Bytes": portrait},
                                 ExternalImageId="jack", DetectionAttributes=["ALL"])
    client.index_faces(CollectionId=collection, Image={"Bytes": other},
                       ExternalImageId="katy")
    client.index_faces(CollectionId=collection, Image={"Bytes": couple},
                       ExternalImageId="pair", MaxFaces=1, QualityFilter="NONE")
    face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    described = client.describe_collection(CollectionId=collection)
    assert described["FaceCount"] == 3
    assert collection in client.list_collections()["CollectionIds"]
    assert len(client.list_faces(CollectionId=collection)["Faces"]) == 3

    found = client.search_faces_by_image(CollectionId=collection, Image={"Bytes": same},
                                             FaceMatchThreshold=80)
    assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["jack"]
    client.search_faces(CollectionId=collection, FaceId=face_id, FaceMatchThreshold=0)

    deleted = client.delete_faces(CollectionId=collection, FaceIds=[face_id, str(uuid.uuid4())])
    assert deleted["DeletedFaces"] == [face_id]
    assert deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["FACE_NOT_FOUND"]
    client.delete_collection(CollectionId=collection)

    assert set(checker.checked) == set(HANDLERS), "every operation was validated"


def test_sdk_errors_carry_rekognitions_exception_names(
        checked_client: tuple[Any, ShapeChecker]) -> None:
    client, _ = checked_client
    with pytest.raises(client.exceptions.InvalidImageFormatException):
        client.detect_faces(Image={"Bytes": b"this is not an image"})
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_collection(CollectionId=f"missing-{uuid.uuid4().hex[:6]}")
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.compare_faces(SourceImage={"Bytes": read("mtcnn/tests/images/no-faces.jpg")},
                             TargetImage={"Bytes": read(PORTRAIT)})
    with pytest.raises(client.exceptions.InvalidS3ObjectException):
        client.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "k.jpg"}})
    collection = f"emu-{uuid.uuid4().hex[:8]}"
    client.create_collection(CollectionId=collection)
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException):
        client.create_collection(CollectionId=collection)


# --- the wire: statuses, shapes, framing ---------------------------------------------------

def test_a_bad_image_is_invalid_image_format_with_status_400(emulator_app: Flask) -> None:
    key = api_key(emulator_app, "app")
    response = call(emulator_app.test_client(), "DetectFaces",
                    {"Image": {"Bytes": b64(b"GIF89a not really")}}, key=key)
    assert_aws_error(response, "InvalidImageFormatException")


def test_an_image_over_5_mb_is_image_too_large(emulator_app: Flask) -> None:
    key = api_key(emulator_app, "app")
    big = b"\xff\xd8\xff" + b"\0" * (5 * 1024 * 1024 + 10)
    response = call(emulator_app.test_client(), "DetectFaces", {"Image": {"Bytes": b64(big)}},
                    key=key)
    assert_aws_error(response, "ImageTooLargeException")


def test_an_unknown_operation_is_refused(emulator_app: Flask) -> None:
    key = api_key(emulator_app, "admin")
    response = call(emulator_app.test_client(), "DetectLabels", {}, key=key)
    assert_aws_error(response, "UnknownOperationException")


def test_the_json_11_content_type_is_required(emulator_app: Flask) -> None:
    key = api_key(emulator_app, "app")
    response = call(emulator_app.test_client(), "DetectFaces", {}, key=key,
                    content_type="application/json")
    assert_aws_error(response, "SerializationException")


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"[]", b"\xff\xfe",
                                 b'{"a":' * 5000 + b"1" + b"}" * 5000])
def test_a_body_that_is_not_a_json_object_is_a_serialization_error(
        emulator_app: Flask, raw: bytes) -> None:
    # Nesting too deep for the JSON parser (RecursionError) included: a 400, not a 500.
    key = api_key(emulator_app, "app")
    response = send(emulator_app.test_client(), "DetectFaces", raw, key=key)
    assert_aws_error(response, "SerializationException")


@pytest.mark.parametrize(("operation", "member"), [("DetectFaces", "Attributes"),
                                                   ("IndexFaces", "DetectionAttributes")])
@pytest.mark.parametrize("value", ["ALL", [{}], [["ALL"]], ["DEFAULT", 1], None])
def test_attributes_that_are_not_a_list_of_strings_are_invalid_parameter(
        emulator_app: Flask, operation: str, member: str, value: object) -> None:
    admin = api_key(emulator_app, "admin")
    body = assert_aws_error(call(emulator_app.test_client(), operation, {
        "CollectionId": "any", "ExternalImageId": "jack", "Image": {"Bytes": "AA=="},
        member: value}, key=admin), "InvalidParameterException")
    assert member in body["message"]


def test_a_request_without_a_signature_is_missing_authentication_token(
        emulator_app: Flask) -> None:
    response = call(emulator_app.test_client(), "DetectFaces", {"Image": {"Bytes": "AA=="}})
    assert_aws_error(response, "MissingAuthenticationTokenException")


def test_an_unknown_access_key_id_is_unrecognized_client(emulator_app: Flask) -> None:
    response = call(emulator_app.test_client(), "DetectFaces", {"Image": {"Bytes": "AA=="}},
                    key=("ABCDEFGH", "x" * 40))
    assert_aws_error(response, "UnrecognizedClientException")


def test_a_role_outside_the_operations_roles_is_access_denied(emulator_app: Flask) -> None:
    client = emulator_app.test_client()
    app_key = api_key(emulator_app, "app")
    assert_aws_error(call(client, "CreateCollection", {"CollectionId": "x"}, key=app_key),
                     "AccessDeniedException")
    assert_aws_error(call(client, "SearchFacesByImage",
                          {"CollectionId": "x", "Image": {"Bytes": "AA=="}}, key=app_key),
                     "AccessDeniedException")
    reviewer_key = api_key(emulator_app, "reviewer")
    assert_aws_error(call(client, "DetectFaces", {"Image": {"Bytes": "AA=="}},
                          key=reviewer_key), "AccessDeniedException")


def test_a_collection_outside_the_keys_scope_is_not_found(emulator_app: Flask) -> None:
    client = emulator_app.test_client()
    admin = api_key(emulator_app, "admin")
    collection = f"emu-{uuid.uuid4().hex[:8]}"
    assert call(client, "CreateCollection", {"CollectionId": collection},
                key=admin).status_code == 200
    scoped = api_key(emulator_app, "operator", collections=frozenset({"another"}))
    assert_aws_error(call(client, "DescribeCollection", {"CollectionId": collection},
                          key=scoped), "ResourceNotFoundException")
    assert_aws_error(call(client, "DeleteFaces", {
        "CollectionId": collection, "FaceIds": ["00000000-0000-0000-0000-000000000000"]},
        key=scoped), "ResourceNotFoundException")


def test_index_faces_needs_an_external_image_id(emulator_app: Flask) -> None:
    client = emulator_app.test_client()
    admin = api_key(emulator_app, "admin")
    collection = f"emu-{uuid.uuid4().hex[:8]}"
    call(client, "CreateCollection", {"CollectionId": collection,
                                      "Tags": {CONSENT_TAG: "false"}}, key=admin)
    body = assert_aws_error(call(client, "IndexFaces", {
        "CollectionId": collection, "Image": {"Bytes": b64(read(PORTRAIT))}}, key=admin),
        "InvalidParameterException")
    assert "ExternalImageId" in body["message"]


def test_index_faces_returns_eyes_and_mouth_open_only_with_all(emulator_app: Flask) -> None:
    client = emulator_app.test_client()
    admin = api_key(emulator_app, "admin")
    collection = f"emu-{uuid.uuid4().hex[:8]}"
    call(client, "CreateCollection", {"CollectionId": collection,
                                      "Tags": {CONSENT_TAG: "false"}}, key=admin)
    image = {"Bytes": b64(read(PORTRAIT))}
    for attributes, shown in ((["DEFAULT"], False), (["ALL"], True)):
        response = call(client, "IndexFaces", {
            "CollectionId": collection, "Image": image, "ExternalImageId": "jack",
            "DetectionAttributes": attributes}, key=admin)
        assert response.status_code == 200, response.get_data(as_text=True)
        detail = response.get_json(force=True)["FaceRecords"][0]["FaceDetail"]
        assert ("EyesOpen" in detail, "MouthOpen" in detail) == (shown, shown)


def test_a_collection_created_without_the_tag_needs_recorded_consent(
        emulator_app: Flask) -> None:
    client = emulator_app.test_client()
    admin = api_key(emulator_app, "admin")
    collection = f"emu-{uuid.uuid4().hex[:8]}"
    call(client, "CreateCollection", {"CollectionId": collection}, key=admin)
    body = assert_aws_error(call(client, "IndexFaces", {
        "CollectionId": collection, "Image": {"Bytes": b64(read(PORTRAIT))},
        "ExternalImageId": "jack"}, key=admin), "InvalidParameterException")
    assert "consent" in body["message"]


def test_index_and_search_check_the_collection_before_decoding_the_image(
        emulator_app: Flask) -> None:
    # As in the REST API: the services run the intake once, after their cheap checks,
    # so a missing collection is reported whatever the image holds.
    client = emulator_app.test_client()
    admin = api_key(emulator_app, "admin")
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    not_an_image = {"Bytes": b64(b"this is not an image")}
    assert_aws_error(call(client, "IndexFaces", {
        "CollectionId": missing, "Image": not_an_image, "ExternalImageId": "jack"}, key=admin),
        "ResourceNotFoundException")
    assert_aws_error(call(client, "SearchFacesByImage", {
        "CollectionId": missing, "Image": not_an_image}, key=admin),
        "ResourceNotFoundException")


def test_responses_carry_a_request_id_like_aws(emulator_app: Flask) -> None:
    key = api_key(emulator_app, "operator")
    response = call(emulator_app.test_client(), "ListCollections", {}, key=key)
    assert response.status_code == 200
    assert response.mimetype == CONTENT_TYPE
    assert response.headers["x-amzn-RequestId"]


# --- the fault switch ------------------------------------------------------------------------

def test_injected_throttling_is_retried_by_the_sdk_then_reported(live: LiveServer) -> None:
    client = rekognition_client(live.url, api_key(live.app, "operator"), max_attempts=2)
    control(live.app).inject(times=2, operation="ListCollections")
    try:
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.list_collections()
    finally:
        control(live.app).clear()
    error = caught.value.response
    assert error["Error"]["Code"] == "ThrottlingException"
    assert error["ResponseMetadata"]["RetryAttempts"] == 1
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_the_fault_switch_is_refused_outside_the_test_environment(tmp_path: Path) -> None:
    from tests.fakes import FakeEngine

    app = create_app(Settings(env="development", data_dir=tmp_path / "data",
                              policies_dir=REPO / "policies"), engine=FakeEngine())
    with pytest.raises(RuntimeError, match="FACEAPI_ENV=test"):
        control(app).inject()


def test_faceapis_rate_limit_answers_as_rekognition_throttling(tmp_path: Path) -> None:
    from tests.fakes import FakeEngine

    app = create_app(Settings(env="test", data_dir=tmp_path / "data",
                              policies_dir=REPO / "policies", rate_limit_default="1/minute"),
                     engine=FakeEngine())
    client = app.test_client()
    key = api_key(app, "operator")
    assert call(client, "ListCollections", {}, key=key).status_code == 200
    limited = call(client, "ListCollections", {}, key=key)
    assert_aws_error(limited, "ThrottlingException")
    # SDKs back off at least this long (milliseconds) before their next attempt.
    assert int(limited.headers["x-amz-retry-after"]) >= 1000


def test_emulator_calls_are_audited_like_the_rest_api(emulator_app: Flask) -> None:
    import hashlib

    from faceapi.domain.audit import Action
    from faceapi.entrypoints.web.api.deps import EXTENSION_KEY

    key = api_key(emulator_app, "app")
    data = read(PORTRAIT)
    response = call(emulator_app.test_client(), "DetectFaces",
                    {"Image": {"Bytes": b64(data)}}, key=key)
    assert response.status_code == 200
    with emulator_app.extensions[EXTENSION_KEY].store.read_uow() as uow:
        events = [r.event for r in uow.audit.iter_events()
                  if r.event.action is Action.FACE_DETECT
                  and r.event.actor.key_id == key.key_id]
    assert len(events) == 1
    assert events[0].input_digests == (hashlib.sha256(data).hexdigest(),)
    assert events[0].scores["face_count"] == 1


def test_sdk_paginators_walk_collections_and_faces(
        checked_client: tuple[Any, ShapeChecker]) -> None:
    client, _ = checked_client
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    made = [f"{prefix}-{i}" for i in range(3)]
    for collection in made:
        client.create_collection(CollectionId=collection, Tags={CONSENT_TAG: "false"})
    seen = [cid for page in client.get_paginator("list_collections").paginate(
        PaginationConfig={"PageSize": 1}) for cid in page["CollectionIds"]]
    assert [cid for cid in seen if cid.startswith(prefix)] == made
    assert len(seen) == len(set(seen))

    for subject, name in (("jack", PORTRAIT), ("katy", OTHER)):
        client.index_faces(CollectionId=made[0], Image={"Bytes": read(name)},
                           ExternalImageId=subject)
    pages = list(client.get_paginator("list_faces").paginate(
        CollectionId=made[0], PaginationConfig={"PageSize": 1}))
    assert sorted(f["ExternalImageId"] for p in pages for f in p["Faces"]) == ["jack", "katy"]
