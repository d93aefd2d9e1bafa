"""A database that cannot be reached is a 503 with Retry-After, never a 500."""

from __future__ import annotations

from pathlib import Path

from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app
from tests.fakes import FakeEngine


def test_requests_get_a_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "data")
    app = create_app(settings, engine=FakeEngine())
    store = app.extensions["faceapi"].store
    # Point the app at a PostgreSQL port where nothing listens, after start-up.
    from sqlalchemy import create_engine

    store.engine.dispose()
    store.engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none",
                                 connect_args={"connect_timeout": 1})
    try:
        response = app.test_client().get(
            "/v1/policies", headers={"Authorization": "Bearer fa_abcdefgh_" + "x" * 40})
        assert response.status_code == 503
        assert response.json["error"]["code"] == "store_unavailable"
        assert response.headers["Retry-After"] == "5"
    finally:
        store.engine.dispose()


def test_readyz_is_503_naming_the_store_when_the_database_is_unreachable(
        tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "data")
    app = create_app(settings, engine=FakeEngine())
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"]["store"] == "reachable, schema current"
    store = app.extensions["faceapi"].store
    from sqlalchemy import create_engine

    store.engine.dispose()
    store.engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none",
                                 connect_args={"connect_timeout": 1})
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json["status"] == "not_ready"
        assert response.json["checks"]["store"] == "store_unavailable"
        assert response.json["checks"]["engine"] == "scripted"  # the engine is still fine
    finally:
        store.engine.dispose()
