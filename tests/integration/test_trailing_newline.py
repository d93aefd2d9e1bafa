"""A trailing newline is not part of an id or a one-line reason. Python's `$` also
matches just before a final "\\n", and the validators match (marshmallow's Regexp
too): `{"collection_id": "c1\\n"}` made a collection "c1\\n" beside "c1", and a review
reason "same person\\n" passed the "one line, no control characters" rule."""

from __future__ import annotations

import io

from flask.testing import FlaskClient

from faceapi.domain.collections import valid_id
from tests.conftest import HeadersFactory


def test_ids_and_reasons_ending_in_a_newline_are_refused(
        client: FlaskClient, auth_headers: HeadersFactory) -> None:
    admin, app_key = auth_headers("admin"), auth_headers("app")
    created = client.post("/v1/collections", json={"collection_id": "c1\n"}, headers=admin)
    assert created.status_code == 422, created.get_data()[:300]
    assert client.get("/v1/collections", headers=admin).json["CollectionIds"] == []
    verify = client.post("/v1/verify", headers=app_key, content_type="multipart/form-data",
                         data={"collection_id": "c1", "subject_id": "alice\n",
                               "policy": "login", "image": (io.BytesIO(b"x"), "a.jpg")})
    assert verify.status_code == 422, verify.get_data()[:300]
    assert "subject_id" in verify.json["error"]["details"]["fields"]
    voted = client.post("/v1/reviews/r1/decision", headers=auth_headers("reviewer"),
                        json={"decision": "reject", "reason": "same person\n"})
    assert voted.status_code == 422, voted.get_data()[:300]
    assert "reason" in voted.json["error"]["details"]["fields"]["json"]
    # The domain's own check, used by the CLI import and the emulator's ports.
    assert valid_id("alice")
    assert not valid_id("alice\n")
