"""Acceptance: after real detect and compare calls (and refused ones), neither the logs
nor the audit table hold base64 image data or 128-float vectors."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from structlog.testing import capture_logs

from faceapi.adapters.store import Store
from faceapi.adapters.store.tables import audit_events
from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app

# 100+ characters of the base64 alphabet: no id, digest or path in our output is that long.
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{100,}={0,2}")
# 128 numbers in a row, separated by commas/spaces (a serialised descriptor).
FLOAT_VECTOR = re.compile(r"(?:-?\d+(?:\.\d+)?(?:e-?\d+)?[,\s\]\[]+){100,}")

IMAGES = ("deepface/tests/unit/dataset/img5.jpg", "deepface/tests/unit/dataset/img6.jpg",
          "deepface/tests/unit/dataset/img12.jpg", "face-api.js/examples/images/bbt3.jpg",
          "face-api.js/test/images/white.png")


@pytest.fixture
def real_app(settings: Settings) -> Flask:
    try:
        return create_app(settings)  # the local dlib engine, as in production
    except Exception as exc:  # pragma: no cover - only where dlib cannot load
        pytest.skip(f"local engine unavailable: {exc}")


def test_logs_and_audit_table_hold_no_image_data_or_vectors(
        real_app: Flask, fixture_faces: Path, auth_headers, capfd) -> None:
    client = real_app.test_client()
    h = auth_headers("app")
    payloads = [(fixture_faces / p).read_bytes() for p in IMAGES]
    encoded = [base64.b64encode(p).decode() for p in payloads]
    with capture_logs() as logs:
        for data in encoded:
            r = client.post("/v1/faces/detect", json={"image": {"bytes": data},
                                                      "attributes": ["ALL"]}, headers=h)
            assert r.status_code == 200, r.get_json()
        r = client.post("/v1/faces/compare", json={
            "source": {"bytes": encoded[0]}, "target": {"bytes": encoded[1]},
            "similarity_threshold": 80}, headers=h)
        assert r.status_code == 200, r.get_json()
        r = client.post("/v1/faces/detect", json={"image": {"bytes": encoded[0][:4000]}},
                        headers=h)
        assert r.status_code in (400, 422)
        r = client.post("/v1/faces/compare", json={"source": {"bytes": encoded[4]},
                                                   "target": {"bytes": encoded[0]}}, headers=h)
        assert r.status_code in (200, 400, 422)
    out, err = capfd.readouterr()
    text_logs = "\n".join([out, err, *(repr(entry) for entry in logs)])

    store: Store = real_app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        rows = conn.execute(select(audit_events)).all()
    table_dump = "\n".join(repr(tuple(row)) for row in rows)
    actions = [row.action for row in rows]
    assert actions.count("face.detect") >= 6
    assert actions.count("face.compare") >= 2

    for name, haystack in (("logs", text_logs), ("audit table", table_dump)):
        assert not BASE64_RUN.search(haystack), f"base64 run in {name}"
        assert not FLOAT_VECTOR.search(haystack), f"float vector in {name}"
        for data in encoded:
            assert data[100:160] not in haystack, f"image bytes in {name}"
    assert store.verify().ok
