"""Request logs are JSON lines with request id, route, status and duration, and never
carry image bytes, embeddings or keys."""

from __future__ import annotations

import base64
import json

import pytest
from flask.testing import FlaskClient

from faceapi.entrypoints.web.logging import redact
from tests.conftest import HeadersFactory, solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_each_request_logs_one_json_line_with_id_route_status_and_duration(
        client: FlaskClient, fake_engine: FakeEngine, capsys: pytest.CaptureFixture[str],
        auth_headers: HeadersFactory) -> None:
    image = solid_image()
    fake_engine.script(image, [ScriptedFace(face(), unit_vector(2))])
    encoded = base64.b64encode(image).decode()
    response = client.post("/v1/faces/detect", json={"image": {"bytes": encoded}},
                           headers={"X-Request-ID": "req-42", **auth_headers("app")})
    assert response.status_code == 200
    err = capsys.readouterr().err
    lines = [line for line in json_lines(err) if line.get("event") == "request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "req-42"
    assert line["route"] == "/v1/faces/detect"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert encoded[:64] not in err


def test_redaction_drops_biometric_and_secret_values() -> None:
    event = {
        "event": "x",
        "embedding": [0.1] * 128,
        "scores": [0.5] * 128,
        "api_key": "fa_abcdefgh_" + "s" * 32,
        "note": "key fa_abcdefgh_" + "t" * 32 + " used",
        "blob": "QUJD" * 100,
        "image_sha256": "ab" * 32,
    }
    out = redact(None, "info", dict(event))
    assert out["embedding"] == "[redacted]"
    assert out["scores"] == "[redacted]"
    assert out["api_key"] == "[redacted]"
    assert "t" * 32 not in str(out["note"])
    assert out["blob"] == "[redacted-blob]"
    assert out["image_sha256"] == "ab" * 32
