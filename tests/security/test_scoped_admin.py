"""Finding 3: a key's powers never exceed its scope. An admin key limited to one
collection listed, read and revoked every key (the unrestricted first admin included)
and minted reviewer keys. Through a real HTTP server: a scoped admin sees only keys
inside its scope, every other key answers exactly like a missing one, it cannot mint
reviewer or admin keys, and the last unscoped admin stays; each refusal is audited."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from tests.conftest import KeyFactory
from tests.security.conftest import Http, Reply

SHOP = "shop"


def key_id(key: str) -> str:
    return key.split("_")[1]


def audit(app: Flask, **match: object) -> list[dict[str, Any]]:
    """Audit rows whose columns equal `match` (action, reason, actor_key_id ...)."""
    with app.extensions["faceapi"].store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(audit_events).order_by(audit_events.c.seq))]
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def error_without_request_id(reply: Reply) -> dict[str, Any]:
    error = dict(reply.json()["error"])
    error.pop("request_id", None)
    return error


@pytest.fixture
def keys(make_key: KeyFactory) -> dict[str, str]:
    """The first (unscoped) admin, an admin scoped to `shop`, and app keys unscoped,
    inside `shop`, in another collection, and limited by policy only."""
    return {
        "first_admin": make_key("admin", owner="root@example.org"),
        "scoped_admin": make_key("admin", collections=[SHOP], owner="mallory@example.org"),
        "unscoped_app": make_key("app"),
        "shop_app": make_key("app", collections=[SHOP]),
        "other_app": make_key("app", collections=["other"]),
        "policy_only_app": make_key("app", policies=["login"]),
    }


def test_a_scoped_admin_lists_only_keys_inside_its_scope(http: Http,
                                                         keys: dict[str, str]) -> None:
    listed = http.get("/v1/keys", key=keys["scoped_admin"])
    assert listed.status == 200
    assert {k["id"] for k in listed.json()["keys"]} == {
        key_id(keys["scoped_admin"]), key_id(keys["shop_app"])}
    everything = http.get("/v1/keys", key=keys["first_admin"])
    assert {k["id"] for k in everything.json()["keys"]} == {key_id(k) for k in keys.values()}
    # Keys name their owner.
    owners = {k["id"]: k["owner"] for k in everything.json()["keys"]}
    assert owners[key_id(keys["first_admin"])] == "root@example.org"


@pytest.mark.parametrize("target", ["first_admin", "unscoped_app", "other_app",
                                    "policy_only_app"])
def test_a_scoped_admin_cannot_read_or_revoke_keys_beyond_its_scope(
        app: Flask, http: Http, keys: dict[str, str], target: str) -> None:
    scoped, victim = keys["scoped_admin"], key_id(keys[target])
    missing = http.get("/v1/keys/Zz9Zz9Zz", key=scoped)
    read = http.get(f"/v1/keys/{victim}", key=scoped)
    revoke = http.delete(f"/v1/keys/{victim}", key=scoped)
    assert (read.status, revoke.status, missing.status) == (404, 404, 404)
    # Exactly what a missing key answers, but for the id it names.
    expected = error_without_request_id(missing)
    expected["message"] = expected["message"].replace("Zz9Zz9Zz", victim)
    expected["details"] = {"key_id": victim}
    assert error_without_request_id(read) == expected
    assert error_without_request_id(revoke) == expected
    # Nothing changed: the victim still works and is active for the unscoped admin.
    shown = http.get(f"/v1/keys/{victim}", key=keys["first_admin"])
    assert (shown.status, shown.json()["status"]) == (200, "active")
    assert http.get("/v1/keys/me", key=keys[target]).status == 200
    denied = audit(app, action="authz.deny", outcome="out_of_scope",
                   actor_key_id=key_id(scoped))
    assert [d["resource"] for d in denied] == ["endpoint/keys.get_key",
                                              "endpoint/keys.revoke_key"]
    assert not audit(app, action="key.revoke")


def test_a_scoped_admin_still_manages_keys_inside_its_scope(http: Http,
                                                            keys: dict[str, str]) -> None:
    inside = key_id(keys["shop_app"])
    assert http.get(f"/v1/keys/{inside}", key=keys["scoped_admin"]).status == 200
    revoked = http.delete(f"/v1/keys/{inside}", key=keys["scoped_admin"])
    assert (revoked.status, revoked.json()["status"]) == (200, "revoked")
    created = http.post("/v1/keys", key=keys["scoped_admin"], json_body={
        "name": "till", "role": "app", "owner": "system:till", "collections": [SHOP]})
    assert created.status == 201, created.body[:300]
    assert created.json()["owner"] == "system:till"


@pytest.mark.parametrize("role", ["reviewer", "admin"])
def test_a_scoped_admin_cannot_mint_reviewer_or_admin_keys(
        app: Flask, http: Http, keys: dict[str, str], role: str) -> None:
    before = len(http.get("/v1/keys", key=keys["first_admin"]).json()["keys"])
    minted = http.post("/v1/keys", key=keys["scoped_admin"], json_body={
        "name": f"my {role}", "role": role, "owner": "someone-else@example.org",
        "collections": [SHOP]})
    assert minted.status == 403, minted.body[:300]
    assert minted.json()["error"]["code"] == "forbidden"
    assert "key" not in minted.json()
    assert len(http.get("/v1/keys", key=keys["first_admin"]).json()["keys"]) == before
    [denied] = audit(app, action="authz.deny", actor_key_id=key_id(keys["scoped_admin"]))
    assert denied["resource"] == "endpoint/keys.create_key"
    assert not audit(app, action="key.create", actor_key_id=key_id(keys["scoped_admin"]))
    # The unscoped admin may.
    allowed = http.post("/v1/keys", key=keys["first_admin"], json_body={
        "name": f"a {role}", "role": role, "owner": "dana@example.org"})
    assert allowed.status == 201


def test_the_last_unscoped_admin_cannot_be_revoked_while_scoped_admins_exist(
        app: Flask, http: Http, keys: dict[str, str]) -> None:
    first = keys["first_admin"]
    # The scoped admin does not even see it ...
    assert http.delete(f"/v1/keys/{key_id(first)}", key=keys["scoped_admin"]).status == 404
    # ... and does not count as another admin: the first admin cannot revoke itself.
    refused = http.delete(f"/v1/keys/{key_id(first)}", key=first)
    assert refused.status == 409
    assert "last active unscoped admin" in refused.json()["error"]["message"]
    assert http.get("/v1/keys", key=first).status == 200
    [event] = audit(app, action="key.revoke", outcome="refused")
    assert (event["reason"], event["resource"]) == ("last_unscoped_admin",
                                                    f"keys/{key_id(first)}")
    # With a second unscoped admin, it can.
    second = http.post("/v1/keys", key=first, json_body={
        "name": "second admin", "role": "admin", "owner": "ops@example.org"}).json()["key"]
    assert http.delete(f"/v1/keys/{key_id(first)}", key=second).status == 200
    assert http.get("/v1/keys", key=first).status == 401
