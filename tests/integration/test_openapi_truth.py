"""/openapi.json tells the truth about issue 12's and 16's additions: the 403s a rule of
the request can give, the nesting guard's 400 on every body, required owners, the policy
binding route and /metrics."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient


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
