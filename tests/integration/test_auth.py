"""Authentication end to end: the keys API, refusals in the audit trail and the logs,
keys never leaking, the bootstrap command, SigV4 keys, and the OpenAPI description."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from structlog.testing import capture_logs

from faceapi.adapters.private_files import PrivateFiles
from faceapi.adapters.store.tables import api_keys, audit_events
from faceapi.config import Settings
from faceapi.domain import access
from tests.conftest import HeadersFactory, KeyFactory, solid_image

DETECT = "/v1/faces/detect"


def audit_rows(app: Flask) -> list[dict[str, object]]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(
            select(audit_events).order_by(audit_events.c.seq))]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def detect_body() -> dict[str, object]:
    return {"image": {"bytes": base64.b64encode(solid_image()).decode()}}


def test_health_and_docs_are_open(client: FlaskClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_no_key_is_a_401_envelope_with_a_bearer_challenge(client: FlaskClient) -> None:
    response = client.post(DETECT, json=detect_body())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="faceapi"'
    error = response.json["error"]
    assert error["code"] == "unauthorized"
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_a_key_of_another_role_is_403(client: FlaskClient, auth_headers: HeadersFactory) -> None:
    response = client.post(DETECT, json=detect_body(), headers=auth_headers("reviewer"))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


def test_refusals_are_audited_with_the_key_id_and_never_the_key(
        app: Flask, client: FlaskClient, make_key: KeyFactory) -> None:
    reviewer = make_key("reviewer")
    reviewer_id = reviewer.split("_")[1]
    client.post(DETECT, json=detect_body())
    client.post(DETECT, json=detect_body(), headers=bearer(reviewer))
    client.post(DETECT, json=detect_body(), headers=bearer(reviewer[:-3] + "zzz"))
    rows = [r for r in audit_rows(app) if r["action"] in ("auth.fail", "authz.deny")]
    assert [(r["action"], r["reason"]) for r in rows] == [
        ("auth.fail", "missing_key"), ("authz.deny", "role_not_allowed"),
        ("auth.fail", "unknown_key")]
    assert (rows[1]["actor_key_id"], rows[1]["actor_role"]) == (reviewer_id, "reviewer")
    assert (rows[0]["actor_role"], rows[2]["actor_role"]) == ("none", "none")
    assert json.loads(str(rows[2]["details"]))["presented_key_id"] == reviewer_id
    assert all(r["resource"] == "endpoint/faces.detect_faces" for r in rows)
    assert reviewer.split("_")[2] not in repr(rows)


def test_revoked_and_expired_keys_say_so_only_to_the_key_holder(
        app: Flask, client: FlaskClient, make_key: KeyFactory,
        auth_headers: HeadersFactory) -> None:
    key = make_key("app")
    assert client.post(DETECT, json=detect_body(), headers=bearer(key)).status_code == 200
    key_id = key.split("_")[1]
    assert client.delete(f"/v1/keys/{key_id}", headers=auth_headers("admin")).status_code == 200
    revoked = client.post(DETECT, json=detect_body(), headers=bearer(key))
    assert revoked.status_code == 401
    assert "revoked" in revoked.json["error"]["message"]
    forged = client.post(DETECT, json=detect_body(), headers=bearer(key[:-3] + "zzz"))
    assert forged.status_code == 401
    assert "revoked" not in forged.json["error"]["message"]
    fails = [r for r in audit_rows(app) if r["action"] == "auth.fail"]
    assert (fails[0]["reason"], fails[0]["actor_key_id"], fails[0]["actor_role"]) == (
        "revoked", key_id, "app")


def test_keys_api_shows_a_key_once_and_never_its_hash(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory) -> None:
    admin = auth_headers("admin")
    created = client.post("/v1/keys", headers=admin, json={
        "name": "shop login", "role": "app", "owner": "System:Shop",
        "collections": ["shop"], "policies": ["login"], "expires_at": "2030-01-01T00:00:00Z"})
    assert created.status_code == 201, created.json
    body = created.json
    key = body["key"]
    assert key.startswith(f"fa_{body['id']}_")
    assert (body["role"], body["owner"], body["collections"], body["policies"],
            body["status"]) == ("app", "system:shop", ["shop"], ["login"], "active")
    listed = client.get("/v1/keys", headers=admin)
    assert listed.status_code == 200
    text = listed.get_data(as_text=True)
    assert key not in text
    assert key.split("_")[2] not in text
    with app.extensions["faceapi"].store.engine.connect() as conn:
        stored_hash = conn.execute(select(api_keys.c.key_hash)
                                   .where(api_keys.c.id == body["id"])).scalar_one()
    assert stored_hash not in text
    one = client.get(f"/v1/keys/{body['id']}", headers=admin)
    assert one.status_code == 200
    assert "key" not in one.json
    assert "key_hash" not in one.json
    assert one.json["owner"] == "system:shop"
    # The new key works, with its scope.
    assert client.get("/v1/engine", headers=bearer(key)).status_code == 200


@pytest.mark.parametrize("body", [
    {"name": "x", "role": "root", "owner": "o"},
    {"role": "app", "owner": "o"},
    {"name": "x", "role": "app"},
    {"name": "x", "role": "app", "owner": "fa_ABCDEFGH_" + "a" * 40},
    {"name": "x", "role": "app", "owner": "o", "expires_at": "2001-01-01T00:00:00Z"},
    {"name": "x", "role": "app", "owner": "o", "collections": "shop"},
    {"name": "x", "role": "app", "owner": "o", "surprise": True},
])
def test_bad_key_requests_are_422(client: FlaskClient, auth_headers: HeadersFactory,
                                  body: dict[str, object]) -> None:
    response = client.post("/v1/keys", headers=auth_headers("admin"), json=body)
    assert response.status_code == 422, response.json


def test_the_last_admin_key_cannot_be_revoked_over_http(client: FlaskClient,
                                                        make_key: KeyFactory) -> None:
    admin = make_key("admin")
    admin_id = admin.split("_")[1]
    response = client.delete(f"/v1/keys/{admin_id}", headers=bearer(admin))
    assert response.status_code == 409
    assert client.get("/v1/keys", headers=bearer(admin)).status_code == 200


def test_last_used_is_recorded(app: Flask, client: FlaskClient, make_key: KeyFactory,
                               auth_headers: HeadersFactory) -> None:
    key = make_key("app")
    client.get("/v1/engine", headers=bearer(key))
    listed = client.get("/v1/keys", headers=auth_headers("admin")).json["keys"]
    mine = next(k for k in listed if k["id"] == key.split("_")[1])
    assert mine["last_used_at"] is not None


def test_a_sigv4_header_is_refused_on_the_rest_api(client: FlaskClient,
                                                   make_key: KeyFactory) -> None:
    # Issue 12, finding 10: the key in a SigV4 access key id field used to authenticate
    # every /v1 route. Only Bearer does now (tests/security/test_sigv4.py: live server).
    key = make_key("app")
    header = (f"AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/rekognition/"
              "aws4_request, SignedHeaders=host, Signature=abc")
    assert client.get("/v1/engine", headers={"Authorization": header}).status_code == 401
    assert client.get("/v1/engine", headers=bearer(key)).status_code == 200


def test_keys_never_reach_logs_audit_or_error_bodies(
        app: Flask, client: FlaskClient, make_key: KeyFactory,
        capfd: pytest.CaptureFixture[str]) -> None:
    admin = make_key("admin")
    secrets_seen = [admin]
    bodies = []
    with capture_logs() as logs:
        created = client.post("/v1/keys", headers=bearer(admin),
                              json={"name": "leak check", "role": "app", "owner": "o"})
        app_key = created.json["key"]
        secrets_seen.append(app_key)
        for headers in (bearer(app_key), bearer(app_key[:-2] + "xx"), bearer("fa_short"),
                        {"Authorization": f"Basic {app_key}"}, bearer(admin)):
            for method, path in (("POST", DETECT), ("GET", "/v1/keys"),
                                 ("GET", f"/v1/keys/{app_key}"), ("GET", "/v1/engine")):
                response = client.open(path, method=method, headers=headers, json={})
                bodies.append(response.get_data(as_text=True))
        key_id = app_key.split("_")[1]
        client.delete(f"/v1/keys/{key_id}", headers=bearer(admin))
        bodies.append(client.get("/v1/engine", headers=bearer(app_key)).get_data(as_text=True))
    out, err = capfd.readouterr()
    haystack = "\n".join([out, err, *map(repr, logs), *bodies, repr(audit_rows(app))])
    for key in secrets_seen:
        assert key.split("_")[2] not in haystack
    assert "auth_fail" in haystack
    assert "authz_deny" in haystack


def test_openapi_documents_the_bearer_scheme_and_each_operations_roles(
        client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    detect = spec["paths"]["/v1/faces/detect"]["post"]
    assert detect["security"] == [{"bearerAuth": []}]
    assert detect["x-roles"] == sorted(access.roles_allowed("faces.detect_faces"),
                                       key=access.ROLES.index)
    assert "Roles: app, operator, admin" in detect["description"]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert spec["paths"]["/v1/keys"]["post"]["x-roles"] == ["admin"]
    undocumented = [f"{method.upper()} {path}" for path, operations in spec["paths"].items()
                    for method, operation in operations.items()
                    if isinstance(operation, dict) and "x-roles" not in operation]
    assert not undocumented


def test_bootstrap_creates_the_first_admin_key_once(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from faceapi.entrypoints.cli import cli

    data_dir = tmp_path / "data"
    monkeypatch.setenv("FACEAPI_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FACEAPI_ENV", "test")
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    first = runner.invoke(cli, ["keys", "bootstrap"])
    assert first.exit_code == 0, first.output
    key_file = data_dir / "admin-key.txt"
    assert str(key_file.resolve()) in first.output
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key not in first.output
    second = runner.invoke(cli, ["keys", "bootstrap"])
    assert second.exit_code == 0
    assert "nothing to bootstrap" in second.output
    assert key_file.read_text().strip() == key
    listed = runner.invoke(cli, ["keys", "list"])
    assert "bootstrap / bootstrap-admin" in listed.output
    assert key.split("_")[2] not in listed.output
    ownerless = runner.invoke(cli, ["keys", "create", "--role", "app", "--name", "cli app"])
    assert ownerless.exit_code != 0
    assert "--owner" in ownerless.output
    made = runner.invoke(cli, ["keys", "create", "--role", "app", "--name", "cli app",
                               "--owner", "system:cli-app", "--collections", "a,b",
                               "--expires", "30d"])
    assert made.exit_code == 0, made.output
    new_key = made.stdout.strip().splitlines()[0]
    assert new_key.startswith("fa_")
    new_id = new_key.split("_")[1]
    listed = runner.invoke(cli, ["keys", "list"]).output
    assert "collections=a,b" in listed
    assert "system:cli-app / cli app" in listed
    rotated = runner.invoke(cli, ["keys", "rotate", new_id])
    assert rotated.exit_code == 0, rotated.output
    successor = rotated.stdout.strip().splitlines()[0]
    assert successor.startswith("fa_")
    assert successor != new_key
    assert runner.invoke(cli, ["keys", "revoke", new_id]).exit_code == 0
    admin_id = key.split("_")[1]
    refused = runner.invoke(cli, ["keys", "revoke", admin_id])
    assert refused.exit_code != 0
    assert "last active unscoped admin" in refused.output
    # The keys made by the CLI work against an app on the same data dir.
    from faceapi.entrypoints.web.app import create_app
    from tests.fakes import FakeEngine

    app = create_app(Settings.from_env(), engine=FakeEngine())
    try:
        client = app.test_client()
        assert client.get("/v1/keys", headers=bearer(key)).status_code == 200
        assert client.get("/v1/engine", headers=bearer(new_key)).status_code == 401
        assert client.get("/v1/engine", headers=bearer(successor)).status_code == 200
    finally:
        app.extensions["faceapi"].store.dispose()


def test_a_services_own_403_is_audited_too(app: Flask, auth_headers: HeadersFactory,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from faceapi.domain.errors import FaceApiError

    class NotYourReview(FaceApiError):
        code = "reviewer_is_requester"

    @app.route("/test-refusal", methods=["POST"])
    def _refuse() -> None:
        raise NotYourReview("a decision cannot be reviewed by the key that requested it")

    monkeypatch.setitem(access.PERMISSIONS, "_refuse", access.ALL_ROLES)
    response = app.test_client().post("/test-refusal", headers=auth_headers("reviewer"))
    assert response.status_code == 403
    rows = [r for r in audit_rows(app) if r["action"] == "authz.deny"]
    assert [(r["reason"], r["actor_role"]) for r in rows] == [
        ("reviewer_is_requester", "reviewer")]


def test_a_refusal_is_audited_once(app: Flask, client: FlaskClient,
                                   auth_headers: HeadersFactory) -> None:
    client.post(DETECT, json=detect_body(), headers=auth_headers("auditor"))
    client.post(DETECT, json=detect_body())
    rows = [r for r in audit_rows(app) if r["action"] in ("auth.fail", "authz.deny")]
    assert len(rows) == 2


def test_concurrent_first_starts_create_exactly_one_admin_key(store, tmp_path: Path) -> None:
    """Two workers (or hosts) bootstrapping at once, on SQLite and PostgreSQL."""
    from concurrent.futures import ThreadPoolExecutor

    from faceapi.domain.clock import SystemClock
    from faceapi.services import keys

    def boot(i: int) -> bool:
        return keys.bootstrap(tmp_path / f"d{i}", uow=store.uow(), clock=SystemClock(),
                              files=PrivateFiles()).created

    with ThreadPoolExecutor(max_workers=4) as pool:
        created = list(pool.map(boot, range(4)))
    assert created.count(True) == 1
    with store.read_uow() as uow:
        assert uow.api_keys.count() == 1


@pytest.mark.parametrize(("header", "expected"), [
    ("Bearer fa_Abcd1234_" + "x" * 40, "fa_Abcd1234_" + "x" * 40),
    ("bearer   fa_Abcd1234_" + "x" * 40 + "  ", "fa_Abcd1234_" + "x" * 40),
    ("AWS4-HMAC-SHA256 Credential=fa_Abcd1234_" + "x" * 40
     + "/20260101/us-east-1/rekognition/aws4_request, SignedHeaders=host, Signature=0",
     None),
    ("Basic dXNlcjpwYXNz", None),
    ("Bearer", None),
    ("Bearer two tokens", None),
    ("", None),
])
def test_the_key_is_read_from_bearer_headers_only(app: Flask, header: str,
                                                           expected: str | None) -> None:
    from faceapi.entrypoints.web.api.auth import presented_key
    from faceapi.entrypoints.web.api.limits import key_bucket

    with app.test_request_context("/v1/engine", headers={"Authorization": header},
                                  environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert presented_key() == expected
        # The per-key rate limit never reads the header (issue 12, finding 4): until a
        # key is verified there is no key bucket, whatever id the request names.
        assert "Abcd1234" not in key_bucket()


def test_any_key_reads_its_own_record(client: FlaskClient, make_key: KeyFactory) -> None:
    key = make_key("reviewer", collections=["c1"])
    me = client.get("/v1/keys/me", headers=bearer(key))
    assert me.status_code == 200
    assert (me.json["id"], me.json["role"], me.json["collections"]) == (
        key.split("_")[1], "reviewer", ["c1"])
    assert "key" not in me.json
    assert client.get("/v1/keys/me").status_code == 401
