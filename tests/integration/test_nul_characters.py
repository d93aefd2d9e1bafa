"""Text holding a NUL (U+0000) is a 400 before any view runs, on every entry: PostgreSQL
cannot store it in a text column, so `{"description": "\\u0000"}` reached the database
and came back as a DataError, a 500 (found by schemathesis in the PostgreSQL pass).
Nothing is stored by the refused request."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from faceapi.config import Settings
from tests.conftest import KeyFactory


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(env="test", data_dir=tmp_path / "data", log_format="json",
                    database_url=database_url)


def _refused(reply: object) -> None:
    assert reply.status_code == 400, reply.get_data()[:300]  # type: ignore[attr-defined]
    assert "NUL" in reply.json["error"]["message"]  # type: ignore[attr-defined]


def test_a_json_string_with_a_nul_is_a_400_and_stores_nothing(
        client: FlaskClient, make_key: KeyFactory) -> None:
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    for body in ('{"collection_id": "c1", "description": "a\\u0000b"}',
                 '{"collection_id": "c\\u0000", "description": ""}',
                 '{"collection_id": "c1", "description": "", "\\u0000": 1}'):
        _refused(client.post("/v1/collections", data=body, headers=admin,
                             content_type="application/json"))
    assert client.get("/v1/collections", headers=admin).json["CollectionIds"] == []
    # An escaped backslash before "u0000" is text, not a NUL: it reaches the service.
    made = client.post("/v1/collections", data='{"collection_id": "c1", "description": '
                       '"C:\\\\u0000"}', headers=admin, content_type="application/json")
    assert made.status_code == 201, made.get_data()[:300]


def test_a_nul_in_the_path_query_or_a_form_field_is_a_400(
        client: FlaskClient, make_key: KeyFactory) -> None:
    app_key = {"Authorization": f"Bearer {make_key('app')}"}
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    _refused(client.get("/v1/collections/a%00b", headers=admin))
    _refused(client.get("/v1/audit/events?actor=a%00b", headers=admin))
    _refused(client.post("/v1/verify", headers=app_key, content_type="multipart/form-data",
                         data={"collection_id": "c1", "subject_id": "al\x00ice",
                               "policy": "login", "image": (io.BytesIO(b"x"), "a.jpg")}))
