"""Object-level access (OWASP API1) through the real verify, search and collection
endpoints: scoped keys see other collections as missing and use only their policies."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from tests.conftest import HeadersFactory
from tests.fakes import unit_vector
from tests.integration.verify_support import b64, enroll, make_collection, scripted


def refusals(app: Flask) -> list[tuple[str, str | None]]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return [(r.reason, r.outcome) for r in conn.execute(
            select(audit_events).where(audit_events.c.action == "authz.deny")
            .order_by(audit_events.c.seq))]


def error(response: object) -> tuple[int, str, str]:
    body = response.get_json()  # type: ignore[attr-defined]
    return (response.status_code, body["error"]["code"],  # type: ignore[attr-defined]
            body["error"]["message"])


def test_verify_in_another_collection_is_the_same_404_as_a_missing_one(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory) -> None:
    for collection in ("shop", "bank"):
        make_collection(app, collection)
        enroll(app, collection, "alice", unit_vector(1))
    engine = app.extensions["faceapi"].engine
    shop_key = auth_headers("app", collections=["shop"], policies=["login"])

    def verify(collection: str) -> object:
        image = scripted(engine, [unit_vector(1)])
        return client.post("/v1/verify", headers=shop_key, json={
            "collection_id": collection, "subject_id": "alice", "policy": "login",
            "image": b64(image)})

    assert verify("shop").status_code == 200
    out_of_scope, missing = verify("bank"), verify("nowhere")
    assert out_of_scope.status_code == 404
    assert error(out_of_scope)[:2] == error(missing)[:2]
    assert error(out_of_scope)[2] == error(missing)[2].replace("nowhere", "bank")
    assert ("out_of_scope", "out_of_scope") in refusals(app)


def test_an_app_key_decides_only_under_its_policies(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory) -> None:
    make_collection(app, "shop")
    enroll(app, "shop", "alice", unit_vector(1))
    engine = app.extensions["faceapi"].engine
    login_only = auth_headers("app", policies=["login"])
    response = client.post("/v1/verify", headers=login_only, json={
        "collection_id": "shop", "subject_id": "alice", "policy": "identity_check",
        "image": b64(scripted(engine, [unit_vector(1)]))})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    search = client.post("/v1/collections/shop/search", headers=login_only, json={
        "policy": "watchlist_search", "image": b64(scripted(engine, [unit_vector(1)]))})
    assert search.status_code == 403
    assert refusals(app)[0] == ("forbidden_by_service", "denied")


def test_collection_listing_shows_only_the_keys_collections(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory) -> None:
    for collection in ("shop", "bank", "zoo"):
        make_collection(app, collection)
    scoped = client.get("/v1/collections", headers=auth_headers("operator",
                                                                collections=["zoo", "shop"]))
    assert scoped.status_code == 200
    ids = scoped.get_json()["CollectionIds"]
    assert sorted(ids) == ["shop", "zoo"]
    everything = client.get("/v1/collections", headers=auth_headers("operator")).get_json()
    assert sorted(everything["CollectionIds"]) == ["bank", "shop", "zoo"]
