"""/readyz names the check that fails: Redis, the blob directory, the signing key."""

from __future__ import annotations

import socket
from pathlib import Path

from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app
from tests.fakes import FakeEngine


def _readyz(settings: Settings) -> tuple[int, dict[str, object]]:
    app = create_app(settings, engine=FakeEngine())
    try:
        response = app.test_client().get("/readyz")
        return response.status_code, response.json
    finally:
        app.extensions["faceapi"].close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readyz_is_200_and_lists_every_check_when_all_pass(tmp_path: Path) -> None:
    status, body = _readyz(Settings(env="test", data_dir=tmp_path / "data"))
    assert status == 200
    assert body["checks"] == {"engine": "scripted", "store": "reachable, schema current",
                              "blobs": "writable", "signing_key": "readable"}
    assert not list((tmp_path / "data" / "blobs").iterdir())  # the probe file is gone


def test_readyz_is_503_naming_redis_when_the_configured_redis_does_not_answer(
        tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "data",
                        redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    status, body = _readyz(settings)
    assert status == 503
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["redis"].startswith("redis_unavailable")
    assert checks["store"] == "reachable, schema current"


def test_readyz_is_503_naming_the_blob_directory_when_it_cannot_take_a_file(
        tmp_path: Path) -> None:
    # A file where the directory should be: refused even to root (tests run as root,
    # where a read-only mode would not stop the write).
    not_a_dir = tmp_path / "blobs"
    not_a_dir.write_bytes(b"")
    status, body = _readyz(Settings(env="test", data_dir=tmp_path / "data",
                                    blob_dir=not_a_dir))
    assert status == 503
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["blobs"].startswith("blob_dir_not_writable")
    assert checks["signing_key"] == "readable"


def test_readyz_is_503_naming_the_signing_key_when_its_file_no_longer_reads(
        tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "data")
    app = create_app(settings, engine=FakeEngine())
    try:
        (tmp_path / "data" / "audit_signing_key.pem").unlink()
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.json["checks"]["signing_key"] == (
            "signing_key_unreadable: FileNotFoundError")
        assert response.json["checks"]["blobs"] == "writable"
    finally:
        app.extensions["faceapi"].close()


def test_healthz_does_no_io_and_stays_200_when_readiness_fails(tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "data",
                        redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    app = create_app(settings, engine=FakeEngine())
    try:
        (tmp_path / "data" / "audit_signing_key.pem").unlink()
        response = app.test_client().get("/healthz")
        assert response.status_code == 200
        assert response.json == {"status": "ok", "checks": {}}
    finally:
        app.extensions["faceapi"].close()
