"""The generated access matrix: every endpoint in the URL map x every role, plus no key,
a revoked key, an expired key and a wrong-scope key.

Endpoints are added all the time, so nothing here is a hand-written list: the table
(faceapi/domain/access.py) and the app's URL map are read at test time, requests are
syntactically plausible (ids in the path, an empty JSON object as the body), and only
the access outcome is asserted: 401 / 403 / 404-for-scope where expected, never a 401
or 403 for a role the table allows, and never a 5xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from faceapi.domain import access
from tests.conftest import HeadersFactory, KeyFactory
from tests.emulator_server import holder_credentials, sigv4_headers

MISSING_ID = "matrix-missing-1"
SKIP_METHODS = frozenset({"HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Call:
    endpoint: str
    method: str
    url: str
    rule: Rule

    def __str__(self) -> str:
        return f"{self.method} {self.url} ({self.endpoint})"


def calls(app: Flask, *, collection_id: str = MISSING_ID) -> list[Call]:
    out = []
    for rule in app.url_map.iter_rules():
        values = {name: (collection_id if name == "collection_id" else MISSING_ID)
                  for name in rule.arguments}
        if rule.endpoint.endswith("static"):
            values["filename"] = "matrix.css"
        with app.test_request_context():
            url = app.url_for(rule.endpoint, **values)
        for method in sorted((rule.methods or set()) - SKIP_METHODS):
            out.append(Call(rule.endpoint, method, url, rule))
    return out


# The Rekognition-compatible endpoint answers refusals in AWS's shape (SDKs need it);
# these are its 401 and 403.
AWS_REFUSALS = {"UnrecognizedClientException": 401, "MissingAuthenticationTokenException": 401,
                "IncompleteSignatureException": 401, "InvalidSignatureException": 401,
                "AccessDeniedException": 403}
EMULATOR = "rekognition.dispatch"


def as_signed(client: FlaskClient, headers: dict[str, str], *,
              target: str | None = None) -> dict[str, str]:
    """The emulator takes SigV4, not Bearer: a Bearer header becomes a request signed
    with the same key's SigV4 credentials (a key that is not usable signs with
    credentials that are not, so the matrix asks the same question of both doors)."""
    bearer = headers.get("Authorization", "").removeprefix("Bearer ")
    if not bearer:
        return {**headers, "Content-Type": "application/x-amz-json-1.1",
                **({"X-Amz-Target": target} if target else {})}
    return sigv4_headers(holder_credentials(client.application, bearer), b"{}",
                         target=target)


def outcome(response: TestResponse) -> int:
    """The status, or for an AWS-shaped refusal the status it stands for."""
    body = response.get_json(silent=True, force=True)
    if isinstance(body, dict) and body.get("__type") in AWS_REFUSALS:
        return AWS_REFUSALS[body["__type"]]
    return response.status_code


def send(client: FlaskClient, call: Call, headers: dict[str, str] | None = None) -> int:
    kwargs: dict[str, object] = {"headers": headers or {}}
    if call.endpoint == EMULATOR:
        kwargs = {"headers": as_signed(client, headers or {}), "data": b"{}"}
    elif call.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    response = client.open(call.url, method=call.method, **kwargs)  # type: ignore[arg-type]
    assert response.status_code < 500, f"{call}: {response.status_code} {response.get_data()!r}"
    return outcome(response)


def api_calls(app: Flask) -> list[Call]:
    """Calls the API hook guards: neither public nor handled by the console's session."""
    return [c for c in calls(app)
            if isinstance(access.rule_for(c.endpoint), frozenset)]


def test_every_endpoint_in_the_url_map_is_in_the_permission_table(app: Flask) -> None:
    missing = sorted({r.endpoint for r in app.url_map.iter_rules()} - set(access.PERMISSIONS))
    assert not missing, ("endpoints not in faceapi/domain/access.py PERMISSIONS (deny by "
                         f"default; add each with the roles that may call it): {missing}")


def test_every_table_entry_is_a_real_endpoint(app: Flask) -> None:
    stale = sorted(set(access.PERMISSIONS) - {r.endpoint for r in app.url_map.iter_rules()})
    assert not stale, f"PERMISSIONS names endpoints that do not exist: {stale}"


def test_no_key_gets_401_from_every_guarded_endpoint(app: Flask, client: FlaskClient) -> None:
    failures = []
    for call in api_calls(app):
        status = send(client, call)
        if status != 401:
            failures.append(f"{call}: {status}")
    assert not failures


def test_public_endpoints_need_no_key(app: Flask, client: FlaskClient) -> None:
    for call in calls(app):
        if access.rule_for(call.endpoint) is access.Access.PUBLIC:
            assert send(client, call) not in (401, 403), str(call)


@pytest.mark.parametrize("role", access.ROLES)
def test_each_role_gets_exactly_the_endpoints_the_table_gives_it(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory, role: str) -> None:
    headers = auth_headers(role)
    failures = []
    for call in api_calls(app):
        status = send(client, call, headers)
        allowed = role in access.roles_allowed(call.endpoint)
        if allowed and status in (401, 403):
            failures.append(f"{role} allowed but got {status}: {call}")
        if not allowed and status != 403:
            failures.append(f"{role} not allowed but got {status}: {call}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("state", ["revoked", "expired", "garbage", "wrong_secret"])
def test_unusable_keys_get_401_everywhere(app: Flask, client: FlaskClient,
                                          make_key: KeyFactory, auth_headers: HeadersFactory,
                                          state: str) -> None:
    key = make_key("admin", name=f"matrix {state}")
    if state == "revoked":
        key_id = key.split("_")[1]
        response = client.delete(f"/v1/keys/{key_id}", headers=auth_headers("admin"))
        assert response.status_code == 200
    elif state == "expired":
        clock = app.extensions["faceapi"].clock
        key = make_key("admin", expires_at=clock.now() + timedelta(minutes=5))
        clock.advance(minutes=6)
    elif state == "garbage":
        key = "definitely-not-a-key"
    else:
        key = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    failures = []
    for call in api_calls(app):
        status = send(client, call, {"Authorization": f"Bearer {key}"})
        if status != 401:
            failures.append(f"{call}: {status}")
    assert not failures


def error_of(response: TestResponse) -> tuple[int, str | None, str | None]:
    body = response.get_json(silent=True) or {}
    error = body.get("error", {}) if isinstance(body, dict) else {}
    return response.status_code, error.get("code"), error.get("message")


def test_a_wrong_scope_key_sees_an_existing_collection_as_missing(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory) -> None:
    """For every endpoint naming a collection: a key scoped elsewhere, asking about a
    collection that exists, gets exactly what an unrestricted key gets for a collection
    that does not exist (status, code, message), never 401/403, and changes nothing."""
    existing = "matrix-c"
    created = client.post("/v1/collections", json={"collection_id": existing},
                          headers=auth_headers("admin"))
    assert created.status_code == 201, created.get_json()
    on_existing = {(c.endpoint, c.method): c for c in calls(app, collection_id=existing)}
    scoped_calls = [c for c in api_calls(app) if "collection_id" in c.rule.arguments]
    assert scoped_calls
    failures = []
    for missing_call in scoped_calls:
        call = on_existing[(missing_call.endpoint, missing_call.method)]
        role = next(r for r in access.ROLES if r in access.roles_allowed(call.endpoint))
        body = {} if call.method in ("POST", "PUT", "PATCH", "DELETE") else None
        wrong = client.open(call.url, method=call.method, json=body,
                            headers=auth_headers(role, collections=["matrix-other"]))
        free = client.open(missing_call.url, method=call.method, json=body,
                           headers=auth_headers(role))
        assert wrong.status_code < 500, str(call)
        got, expected = error_of(wrong), error_of(free)
        expected = (expected[0], expected[1],
                    expected[2].replace(MISSING_ID, existing) if expected[2] else None)
        if got[0] in (401, 403) or got != expected:
            failures.append(f"{call}: wrong scope {got} vs missing {expected}")
    assert not failures, "\n".join(failures)
    still = client.get(f"/v1/collections/{existing}", headers=auth_headers("operator"))
    assert still.status_code == 200


@pytest.mark.parametrize("role", access.ROLES)
def test_rekognition_operations_follow_their_own_role_table(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory, role: str) -> None:
    """The emulator's one URL serves many operations; each has its roles in
    access.REKOGNITION_OPERATIONS, checked by the view with require_role."""
    if "rekognition.dispatch" not in {r.endpoint for r in app.url_map.iter_rules()}:
        pytest.skip("no Rekognition-compatible endpoint")
    failures = []
    for operation, roles in access.REKOGNITION_OPERATIONS.items():
        response = client.post("/", data=b"{}", headers=as_signed(
            client, auth_headers(role), target=f"RekognitionService.{operation}"))
        assert response.status_code < 500, operation
        status = outcome(response)
        if role in roles and status in (401, 403):
            failures.append(f"{role} may call {operation} but got {status}")
        if role not in roles and status != 403:
            failures.append(f"{role} may not call {operation} but got {status}")
    assert not failures, "\n".join(failures)
