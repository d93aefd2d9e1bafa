"""/openapi.json tells the truth about issue 12's, 16's and 17's additions: the 403s a rule of
the request can give, the nesting guard's 400 on every body, required owners, the policy
binding route and /metrics."""

from __future__ import annotations

import io
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import HeadersFactory
from tests.integration.verify_support import make_collection, new_image


def _spec(client: FlaskClient) -> dict[str, Any]:
    spec: dict[str, Any] = client.get("/openapi.json").get_json()
    return spec


def test_every_operation_with_a_body_documents_the_nesting_guards_400(
        client: FlaskClient) -> None:
    for path, operations in _spec(client)["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "requestBody" in operation and \
                    operation.get("security") != []:
                assert "400" in operation["responses"], (method, path)


def test_the_403_names_the_request_rules_that_refuse(client: FlaskClient) -> None:
    paths = _spec(client)["paths"]
    for path in ("/v1/verify", "/v1/collections/{collection_id}/search"):
        description = paths[path]["post"]["responses"]["403"]["description"]
        assert "policy_not_bound" in description
        assert "owner_already_voted" in description


def test_keys_need_an_owner_and_collections_may_bind_policies(client: FlaskClient) -> None:
    spec = _spec(client)
    schemas = spec["components"]["schemas"]
    assert "owner" in schemas["KeyCreate"]["required"]
    assert "policies" in schemas["CreateCollectionRequest"]["properties"]
    binding = spec["paths"]["/v1/collections/{collection_id}/policies"]["put"]
    assert binding["x-roles"] == ["admin"]


def test_metrics_is_documented_with_the_roles_that_may_scrape_it(client: FlaskClient) -> None:
    operation = _spec(client)["paths"]["/metrics"]["get"]
    assert operation["x-roles"] == ["auditor", "admin"]
    assert "200" in operation["responses"]


# --- issue 17, item 6: what a generated client relies on -------------------------------

IDEMPOTENT = (("post", "/v1/verify"), ("post", "/v1/compare"),
              ("post", "/v1/collections/{collection_id}/search"),
              ("post", "/v1/collections/{collection_id}/faces"),
              ("post", "/v1/reviews/{review_id}/decision"))


def test_every_error_response_is_our_envelope(client: FlaskClient) -> None:
    spec = _spec(client)
    envelope = spec["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    body = spec["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"code", "message", "request_id"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for status, response in operation["responses"].items():
                if status == "default" or status[0] in "45":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, \
                        (method, path, status)


def test_a_real_error_matches_the_documented_envelope(client: FlaskClient,
                                                      auth_headers: HeadersFactory) -> None:
    body = client.post("/v1/verify", json={}, headers=auth_headers("app")).get_json()
    assert set(body) == {"error"}
    assert {"code", "message", "request_id"} <= set(body["error"])


def test_a_405_names_the_allowed_methods(client: FlaskClient,
                                         auth_headers: HeadersFactory) -> None:
    response = client.put("/v1/verify", headers=auth_headers("app"))
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}
    me = client.delete("/v1/keys/me", headers=auth_headers("app"))
    assert me.status_code == 405
    assert "DELETE" not in me.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_images_are_required_as_a_file_part_or_base64(client: FlaskClient) -> None:
    spec = _spec(client)
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/v1/verify"]["post"]["requestBody"]
    verify = schemas["VerifyRequest"]
    assert "image" in verify["required"]
    assert verify["properties"]["image"] == {"$ref": "#/components/schemas/ImageBytes"}
    assert schemas["ImageBytes"]["properties"]["bytes"]["format"] == "byte"
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["image"] == {"type": "string", "format": "binary"}
    assert set(form["required"]) == {"collection_id", "subject_id", "policy", "image"}
    assert form["additionalProperties"] is False
    compare = spec["paths"]["/v1/compare"]["post"]["requestBody"]["content"]
    assert set(compare["multipart/form-data"]["schema"]["required"]) == \
        {"policy", "source", "target"}
    # The fake engine reads no S3: the document offers only bytes.
    assert "S3Object" not in schemas["Image"]["properties"]


def test_policy_fields_list_the_policies_in_force(client: FlaskClient) -> None:
    schemas = _spec(client)["components"]["schemas"]
    assert schemas["VerifyRequest"]["properties"]["policy"]["enum"] == [
        "identity_check", "login", "login_liveness"]
    assert schemas["SearchRequest"]["properties"]["policy"]["enum"] == ["photo_tagging",
                                                                       "watchlist_search"]


def test_the_audit_cursor_is_described(client: FlaskClient) -> None:
    parameters = _spec(client)["paths"]["/v1/audit/events"]["get"]["parameters"]
    cursor = next(p for p in parameters if p["name"] == "cursor")
    assert "next_cursor" in cursor["description"]
    assert cursor["schema"]["pattern"] == "^[A-Za-z0-9_-]*$"


def test_idempotent_operations_document_the_header_and_its_answers(
        client: FlaskClient) -> None:
    paths = _spec(client)["paths"]
    for method, path in IDEMPOTENT:
        operation = paths[path][method]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header"
                   for p in operation["parameters"]), path
        assert "idempotency_key_reused" in operation["responses"]["422"]["description"]
        assert "idempotency_in_progress" in operation["responses"]["409"]["description"]
    assert not any(p.get("name") == "Idempotency-Key"
                   for p in paths["/v1/faces/detect"]["post"].get("parameters", ()))


def test_a_form_list_field_sent_once_is_a_list_of_one(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory) -> None:
    # The document says a list field of a form may be sent once; the server agrees.
    make_collection(app, "forms")
    response = client.post(
        "/v1/collections/forms/faces", headers=auth_headers("operator"),
        content_type="multipart/form-data",
        data={"subject_id": "alice", "detection_attributes": "ALL",
              "image": (io.BytesIO(new_image()), "x.png")})
    assert response.status_code == 200, response.get_json()
