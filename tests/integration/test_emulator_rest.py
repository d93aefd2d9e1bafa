"""Our REST API on the Rekognition engine, end to end without AWS: faceapi ("front",
FACEAPI_ENGINE=rekognition) -> boto3 -> the emulator of a second faceapi ("back", local
engine) on a real HTTP server. Also the S3Object image input, which only the
Rekognition engine accepts."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from faceapi.adapters.engines.rekognition import RekognitionEngine
from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app
from faceapi.entrypoints.web.emulator import control
from tests.conftest import REPO, shared_faces_dir
from tests.emulator_server import LiveServer, api_key, key_session, local_engine_app, serve
from tests.fakes import FakeEngine

PORTRAIT = "deepface/tests/unit/dataset/img16.jpg"  # jack_dorsey
SAME_PERSON = "deepface/tests/unit/dataset/img17.jpg"


def image(name: str) -> dict[str, str]:
    path = shared_faces_dir() / name
    if not path.is_file():
        pytest.skip(f"shared face data set not found at {shared_faces_dir()} "
                    "(set FACEAPI_FACES_DIR)")
    return {"bytes": base64.b64encode(path.read_bytes()).decode("ascii")}


@pytest.fixture(scope="module")
def back(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = serve(local_engine_app(tmp_path_factory.mktemp("back")))
    try:
        yield live
    finally:
        live.stop()


def front_app(back: LiveServer, data_dir: Any, role: str = "operator") -> Flask:
    settings = Settings(env="test", data_dir=data_dir, log_format="json",
                        policies_dir=REPO / "policies", engine="rekognition",
                        aws_endpoint_url=back.url, aws_max_attempts=2)
    engine = RekognitionEngine(settings, session=key_session(api_key(back.app, role)))
    return create_app(settings, engine=engine)


@pytest.fixture(scope="module")
def front(back: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return front_app(back, tmp_path_factory.mktemp("front"))


def body(response: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = response.get_json()
    return parsed


def bearer(app: Flask, role: str = "app") -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(app, role)}"}


@pytest.fixture
def client(front: Flask) -> FlaskClient:
    return front.test_client()


def test_detect_runs_on_the_rekognition_engine(client: FlaskClient, front: Flask) -> None:
    response = client.post("/v1/faces/detect", json={"image": image(PORTRAIT),
                                                      "attributes": ["ALL"]},
                           headers=bearer(front))
    assert response.status_code == 200, response.get_data(as_text=True)
    faces = body(response)["FaceDetails"]
    assert len(faces) == 1
    assert {"BoundingBox", "Confidence", "Pose", "Quality", "Landmarks"} <= set(faces[0])


def test_compare_runs_on_the_rekognition_engine(client: FlaskClient, front: Flask) -> None:
    response = client.post("/v1/faces/compare", json={
        "source": image(PORTRAIT), "target": image(SAME_PERSON),
        "similarity_threshold": 50}, headers=bearer(front))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(body(response)["FaceMatches"]) == 1


def test_engine_reports_ready_through_readyz(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert body(response)["checks"]["engine"] == "rekognition reachable"


def test_an_s3_object_is_passed_to_rekognition(client: FlaskClient, front: Flask) -> None:
    # The emulator has no S3 and answers like Rekognition for an unreadable object, so
    # reaching that answer proves the reference travelled all the way to the call.
    response = client.post("/v1/faces/detect", json={
        "image": {"S3Object": {"Bucket": "photos", "Name": "staff/jack.jpg"}}},
        headers=bearer(front))
    assert response.status_code == 422
    assert body(response)["error"]["code"] == "invalid_parameter"
    assert "S3Object is not supported by the faceapi emulator" in \
        body(response)["error"]["message"]


def test_an_s3_object_is_refused_by_the_local_engine(tmp_path: Any) -> None:
    app = create_app(Settings(env="test", data_dir=tmp_path / "data",
                              policies_dir=REPO / "policies"), engine=FakeEngine())
    response = app.test_client().post(
        "/v1/faces/detect", json={"image": {"S3Object": {"Bucket": "photos", "Name": "a.jpg"}}},
        headers=bearer(app))
    assert response.status_code == 422
    assert body(response)["error"]["code"] == "invalid_parameter"
    assert "rekognition engine" in body(response)["error"]["message"]


def test_bytes_and_an_s3_object_together_are_refused(client: FlaskClient, front: Flask) -> None:
    both = {**image(PORTRAIT), "S3Object": {"Bucket": "photos", "Name": "a.jpg"}}
    response = client.post("/v1/faces/detect", json={"image": both}, headers=bearer(front))
    assert response.status_code == 422
    assert body(response)["error"]["code"] == "validation_error"


def test_throttling_after_the_retries_is_503_with_retry_after(
        client: FlaskClient, front: Flask, back: LiveServer) -> None:
    control(back.app).inject("ThrottlingException", times=2, operation="DetectFaces")
    try:
        response = client.post("/v1/faces/detect", json={"image": image(PORTRAIT)},
                               headers=bearer(front))
    finally:
        control(back.app).clear()
    assert response.status_code == 503
    assert body(response)["error"]["code"] == "engine_throttled"
    assert int(response.headers["Retry-After"]) >= 1


def test_refused_engine_credentials_are_502(back: LiveServer, tmp_path: Any) -> None:
    app = front_app(back, tmp_path / "data", role="auditor")
    response = app.test_client().post("/v1/faces/detect", json={"image": image(PORTRAIT)},
                                      headers=bearer(app))
    assert response.status_code == 502
    assert body(response)["error"]["code"] == "engine_access_denied"
    assert "IAM" in body(response)["error"]["message"]


# (Rekognition error, its HTTP status, attempts it fails, our code, our status); a
# retryable error fails every attempt (the front allows 2), any other fails once.
@pytest.mark.parametrize("case", [
    ("InvalidImageFormatException", 400, 1, "unsupported_image_format", 415),
    ("ImageTooLargeException", 400, 1, "image_too_large", 413),
    ("InvalidParameterException", 400, 1, "invalid_parameter", 422),
    ("ResourceNotFoundException", 400, 1, "not_found", 404),
    ("AccessDeniedException", 400, 1, "engine_access_denied", 502),
    ("ProvisionedThroughputExceededException", 400, 2, "engine_throttled", 503),
    ("InternalServerError", 500, 2, "engine_unavailable", 503),
])
def test_rekognition_errors_map_to_our_codes_and_statuses(
        client: FlaskClient, front: Flask, back: LiveServer,
        case: tuple[str, int, int, str, int]) -> None:
    aws_error, aws_status, times, code, status = case
    control(back.app).inject(aws_error, times=times, operation="DetectFaces",
                             status=aws_status)
    try:
        response = client.post("/v1/faces/detect", json={"image": image(PORTRAIT)},
                               headers=bearer(front))
    finally:
        control(back.app).clear()
    assert response.status_code == status
    assert body(response)["error"]["code"] == code


def test_a_retryable_error_is_retried_and_a_client_error_is_not(
        client: FlaskClient, front: Flask, back: LiveServer) -> None:
    control(back.app).inject("InternalServerError", times=1, operation="DetectFaces",
                             status=500)
    try:
        response = client.post("/v1/faces/detect", json={"image": image(PORTRAIT)},
                               headers=bearer(front))
    finally:
        control(back.app).clear()
    assert response.status_code == 200
    # One injected client error and a second one queued: the second is never reached,
    # because a client error is not retried.
    control(back.app).inject("InvalidParameterException", times=2, operation="DetectFaces")
    try:
        response = client.post("/v1/faces/detect", json={"image": image(PORTRAIT)},
                               headers=bearer(front))
        assert response.status_code == 422
        assert control(back.app).take("DetectFaces") is not None, "not retried"
    finally:
        control(back.app).clear()
