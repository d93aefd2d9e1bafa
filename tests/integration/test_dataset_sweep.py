"""Every file of the shared face data set, sent to detect and compare through the HTTP
API on the real local engine, gives 200 or a 4xx with a stable code, never a 5xx."""

from __future__ import annotations

import base64
import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from faceapi.adapters.engines.local import LocalEngine
from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.entrypoints.web.api.errors import STATUS_BY_CODE
from faceapi.entrypoints.web.app import create_app
from faceapi.services import keys

pytestmark = [pytest.mark.faces, pytest.mark.slow]

STABLE_CODES = {code for code, status in STATUS_BY_CODE.items() if 400 <= status < 500}


@pytest.fixture(scope="module")
def local_engine() -> LocalEngine:
    return LocalEngine(Settings(env="test"))


@pytest.fixture
def sweep_client(tmp_path: Path, local_engine: LocalEngine) -> Iterator[FlaskClient]:
    settings = Settings(env="test", data_dir=tmp_path / "data",
                        image_formats=("jpeg", "png"))
    app: Flask = create_app(settings, engine=local_engine)
    deps = app.extensions["faceapi"]
    key = keys.create_key(keys.NewKey(name="sweep", role="app", collections=None,
                                      policies=None, expires_at=None),
                          uow=deps.store.uow(), clock=deps.clock,
                          actor=Actor.system("tests")).secret
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    yield client
    deps.store.dispose()


def image(data: bytes) -> dict[str, str]:
    return {"bytes": base64.b64encode(data).decode()}


def data_files(faces_dir: Path) -> list[Path]:
    return sorted(p for p in faces_dir.rglob("*") if p.is_file() and p.suffix.lower() not in
                  (".csv", ".md"))


def test_detect_on_every_shared_file_is_200_or_a_stable_4xx(
        faces_dir: Path, sweep_client: FlaskClient) -> None:
    outcomes: dict[str, list[str]] = {}
    for path in data_files(faces_dir):
        response = sweep_client.post(
            "/v1/faces/detect", json={"image": image(path.read_bytes()), "attributes": "ALL"})
        key = _outcome(response.status_code, response.json)
        outcomes.setdefault(key, []).append(str(path.relative_to(faces_dir)))
    assert not [k for k in outcomes if k.startswith("5") or k == "bad"], outcomes
    # The deliberately broken CompreFace files are refused: corrupt and truncated data
    # as invalid images; `empty.png` holds the text "test", so no image format at all.
    refused = {Path(p).name for p in outcomes.get("422:invalid_image", [])}
    assert {"corrupted.png", "truncated.jpg"} <= refused
    unsupported = {Path(p).name for p in outcomes.get("415:unsupported_image_format", [])}
    assert "empty.png" in unsupported


def test_compare_on_every_shared_file_as_source_and_target_is_200_or_a_stable_4xx(
        faces_dir: Path, sweep_client: FlaskClient) -> None:
    anchor = (faces_dir / "face-api.js/examples/images/amy/amy1.png").read_bytes()
    bad: list[str] = []
    for path in data_files(faces_dir):
        data = path.read_bytes()
        for source, target in ((data, anchor), (anchor, data)):
            response = sweep_client.post(
                "/v1/faces/compare", json={"source": image(source), "target": image(target)})
            key = _outcome(response.status_code, response.json)
            if key.startswith("5") or key == "bad":
                bad.append(f"{path.name}: {key}")
    assert not bad


def test_no_face_images_give_zero_faces(faces_dir: Path, sweep_client: FlaskClient) -> None:
    with (faces_dir / "IMAGE_NOTES.csv").open() as notes:
        rows = list(csv.DictReader(notes))
    for row in rows:
        if "no_face" not in row["tags"] or row["file"].endswith((".gif", ".webp", ".bmp")):
            continue
        response = sweep_client.post(
            "/v1/faces/detect", json={"image": image((faces_dir / row["file"]).read_bytes())})
        assert response.status_code == 200, row["file"]
        assert response.json["FaceDetails"] == [], row["file"]


def _outcome(status: int, body: object) -> str:
    if status == 200:
        return "200"
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    if 400 <= status < 500 and code in STABLE_CODES:
        return f"{status}:{code}"
    if status >= 500:
        return f"{status}:{code}"
    return "bad"
