"""Detect/compare endpoints over the Flask test client with a scripted engine."""

from __future__ import annotations

import base64
import io

import pytest
from flask.testing import FlaskClient
from werkzeug.exceptions import default_exceptions

from faceapi.domain import access
from tests.conftest import HeadersFactory, solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector


@pytest.fixture
def client(app, auth_headers: HeadersFactory) -> FlaskClient:
    """Requests here carry an app key; access control is tested in test_auth_*."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = auth_headers("app")["Authorization"]
    return client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_detect_returns_rekognition_shaped_face_details(client: FlaskClient,
                                                        fake_engine: FakeEngine) -> None:
    image = solid_image()
    fake_engine.script(image, [ScriptedFace(face(), unit_vector(1))])
    response = client.post("/v1/faces/detect", json={"image": {"bytes": b64(image)}})
    assert response.status_code == 200
    detail = response.json["FaceDetails"][0]
    assert set(detail["BoundingBox"]) == {"Width", "Height", "Left", "Top"}
    assert detail["Confidence"] == 99.0
    assert "AgeRange" not in detail
    assert "EyesOpen" not in detail


def test_detect_accepts_a_multipart_file_upload(client: FlaskClient,
                                                fake_engine: FakeEngine) -> None:
    image = solid_image()
    fake_engine.script(image, [ScriptedFace(face(), unit_vector(1))])
    response = client.post("/v1/faces/detect",
                           data={"image": (io.BytesIO(image), "x.png"), "attributes": "ALL"},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    assert len(response.json["FaceDetails"]) == 1


def test_every_response_carries_a_request_id_header(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert client.get("/healthz").headers["X-Request-ID"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({}, 422, "missing_image"),
    ({"image": {"bytes": "***"}}, 422, "validation_error"),
    ({"image": "not an object"}, 422, "validation_error"),
    ({"image": {"bytes": b64(b"")}}, 422, "invalid_image"),
    ({"image": {"bytes": b64(b"just some text")}}, 415, "unsupported_image_format"),
    ({"image": {"bytes": b64(solid_image())}, "attributes": ["EVERYTHING"]}, 422,
     "validation_error"),
    ({"image": {"bytes": b64(solid_image())}, "surprise": 1}, 422, "validation_error"),
])
def test_bad_detect_input_gets_a_stable_4xx_code(client: FlaskClient, body: dict[str, object],
                                                 status: int, code: str) -> None:
    response = client.post("/v1/faces/detect", json=body)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert response.json["error"]["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe"])
def test_a_body_that_is_not_json_gets_a_stable_4xx_code(client: FlaskClient,
                                                        raw: bytes) -> None:
    response = client.post("/v1/faces/detect", data=raw, content_type="application/json")
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"


def test_json_nested_too_deep_for_the_parser_is_a_400(client: FlaskClient) -> None:
    # Deep enough for RecursionError in Python's parser: refused before any parser runs
    # (api/deps.py refuse_deep_json), a 4xx, not a 500.
    raw = b'{"image":' * 5000 + b"1" + b"}" * 5000
    response = client.post("/v1/faces/detect", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"


def test_oversized_base64_is_refused_before_decoding(client: FlaskClient, app) -> None:
    limit = app.extensions["faceapi"].settings.max_image_bytes
    response = client.post("/v1/faces/detect", json={"image": {"bytes": "A" * (limit * 2)}})
    assert response.status_code == 413
    assert response.json["error"]["code"] in ("image_too_large", "request_too_large")


def test_compare_reports_matches_and_unmatched_faces(client: FlaskClient,
                                                     fake_engine: FakeEngine) -> None:
    source, target = solid_image(color=(1, 2, 3)), solid_image(color=(4, 5, 6))
    fake_engine.script(source, [ScriptedFace(face(), unit_vector(7))])
    fake_engine.script(target, [ScriptedFace(face(left=0.1), unit_vector(7)),
                                ScriptedFace(face(left=0.6), unit_vector(8))])
    response = client.post("/v1/faces/compare", json={
        "source": {"bytes": b64(source)}, "target": {"bytes": b64(target)},
        "similarity_threshold": 90})
    assert response.status_code == 200
    body = response.json
    assert body["SourceImageFace"]["Confidence"] == 99.0
    assert len(body["FaceMatches"]) == 1
    assert body["FaceMatches"][0]["Similarity"] == pytest.approx(100.0)
    assert len(body["UnmatchedFaces"]) == 1


def test_compare_without_a_face_in_the_source_is_422(client: FlaskClient) -> None:
    response = client.post("/v1/faces/compare", json={
        "source": {"bytes": b64(solid_image())}, "target": {"bytes": b64(solid_image())}})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "no_face_in_source"


def test_unknown_routes_and_methods_use_the_error_envelope(client: FlaskClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    wrong = client.get("/v1/faces/detect")
    assert wrong.status_code == 405
    assert wrong.json["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("status", sorted(default_exceptions))
def test_every_http_error_uses_the_envelope(app, status: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    exc_class = default_exceptions[status]
    monkeypatch.setitem(access.PERMISSIONS, "_raise", access.Access.PUBLIC)

    @app.route(f"/raise/{status}")
    def _raise() -> None:
        raise exc_class()

    response = app.test_client().get(f"/raise/{status}")
    assert response.status_code == status
    assert set(response.json["error"]) >= {"code", "message", "request_id"}


def test_an_unexpected_exception_is_a_500_envelope_without_details(
        app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(access.PERMISSIONS, "_boom", access.Access.PUBLIC)
    @app.route("/boom")
    def _boom() -> None:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)


def test_engine_endpoint_lists_unsupported_attributes(client: FlaskClient) -> None:
    body = client.get("/v1/engine").json
    assert "AgeRange" in body["unsupported"]


def test_readyz_reports_an_engine_that_is_not_ready(client: FlaskClient,
                                                    fake_engine: FakeEngine) -> None:
    assert client.get("/readyz").status_code == 200
    fake_engine.is_ready = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["engine"] == "fake engine switched off"


def test_openapi_spec_documents_the_face_endpoints(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/v1/faces/detect" in spec["paths"]
    content = spec["paths"]["/v1/faces/detect"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in content
    assert client.get("/docs").status_code == 200
