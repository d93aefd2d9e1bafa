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
AWS_REFUSALS = {"UnrecognizedClientException": 401, "AccessDeniedException": 403}


def outcome(response: TestResponse) -> int:
    """The status, or for an AWS-shaped refusal the status it stands for."""
    body = response.get_json(silent=True, force=True)
    if isinstance(body, dict) and body.get("__type") in AWS_REFUSALS:
        return AWS_REFUSALS[body["__type"]]
    return response.status_code


def send(client: FlaskClient, call: Call, headers: dict[str, str] | None = None) -> int:
    kwargs: dict[str, object] = {"headers": headers or {}}
    if call.method in ("POST", "PUT", "PATCH"):
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


def test_a_wrong_scope_key_sees_collections_as_missing(app: Flask, client: FlaskClient,
                                                       auth_headers: HeadersFactory) -> None:
    """For every endpoint naming a collection: a key scoped elsewhere gets the same answer
    (status and error code) as an unrestricted key asking for a collection that does not
    exist, and never 401/403; so scope never reveals existence."""
    scoped_calls = [c for c in api_calls(app) if "collection_id" in c.rule.arguments]
    if not scoped_calls:
        pytest.skip("no endpoint names a collection yet")
    failures = []
    for call in scoped_calls:
        roles = access.roles_allowed(call.endpoint)
        role = next(r for r in access.ROLES if r in roles)
        wrong = auth_headers(role, collections=["matrix-other"])
        free = auth_headers(role)
        wrong_response = client.open(call.url, method=call.method, headers=wrong,
                                     json={} if call.method != "GET" else None)
        free_response = client.open(call.url, method=call.method, headers=free,
                                    json={} if call.method != "GET" else None)
        assert wrong_response.status_code < 500, str(call)
        if wrong_response.status_code in (401, 403):
            failures.append(f"{call}: wrong scope got {wrong_response.status_code}")
        wrong_code = (wrong_response.get_json(silent=True) or {}).get("error", {}).get("code")
        free_code = (free_response.get_json(silent=True) or {}).get("error", {}).get("code")
        if (wrong_response.status_code, wrong_code) != (free_response.status_code, free_code):
            failures.append(f"{call}: wrong scope {wrong_response.status_code} {wrong_code} "
                            f"vs missing {free_response.status_code} {free_code}")
    assert not failures, "\n".join(failures)
