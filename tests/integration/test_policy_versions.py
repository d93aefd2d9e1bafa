"""Policy texts kept (issue 16, item 4): each start that loads a version not yet
recorded writes it with a `policy.load` event, once however many processes start at
once, and `GET /v1/policies/{name}/versions/{version}` gives back the text any past
decision ran under, to the roles that check decisions, refusing (and auditing) others."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events, policy_versions
from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app
from tests.conftest import REPO, HeadersFactory
from tests.fakes import FakeClock, FakeEngine, unit_vector
from tests.integration.verify_support import b64, enroll, make_collection, scripted
from tests.integration.verify_support import vector_at as near


def load_events(app: Flask) -> list[Any]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return list(conn.execute(select(audit_events)
                                 .where(audit_events.c.action == "policy.load")
                                 .order_by(audit_events.c.seq)))


def kept(app: Flask) -> list[Any]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return list(conn.execute(select(policy_versions).order_by(policy_versions.c.name)))


def test_the_first_start_records_each_version_once_and_a_restart_adds_nothing(
        app: Flask, settings: Settings) -> None:
    loaded = app.extensions["faceapi"].policies
    events = load_events(app)
    assert sorted((e.policy_name, e.policy_version) for e in events) == sorted(
        (p.name, p.version) for p in loaded.values())
    assert {(e.actor_role, e.actor_key_id) for e in events} == {("system", "start")}
    rows = kept(app)
    assert [(r.name, r.version) for r in rows] == sorted((p.name, p.version)
                                                         for p in loaded.values())
    for row in rows:
        assert hashlib.sha256(row.canonical_text.encode()).hexdigest() == row.version
        assert row.audit_event_id in {e.id for e in events}
    again = create_app(settings, engine=FakeEngine(), clock=FakeClock())
    try:
        assert len(load_events(app)) == len(events)
    finally:
        again.extensions["faceapi"].store.dispose()


def test_a_past_decisions_policy_text_reads_back_and_proves_itself(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory) -> None:
    make_collection(app, "c1")
    alice = unit_vector(1)
    enroll(app, "c1", "alice", alice)
    decided = client.post("/v1/verify", headers=auth_headers("app"), json={
        "collection_id": "c1", "subject_id": "alice", "policy": "login",
        "image": b64(scripted(app.extensions["faceapi"].engine, [near(alice, 95.0)]))})
    assert decided.status_code == 200, decided.get_json()
    version = decided.get_json()["policy"]["version"]
    response = client.get(f"/v1/policies/login/versions/{version}",
                          headers=auth_headers("auditor"))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["name"], body["version"], body["intact"]) == ("login", version, True)
    assert hashlib.sha256(body["canonical_text"].encode()).hexdigest() == version
    assert body["text_sha256"] == version
    login = app.extensions["faceapi"].policies["login"]
    assert json.loads(body["canonical_text"]) == login.canonical()
    (event,) = [e for e in load_events(app) if e.id == body["audit_event_id"]]
    assert (event.policy_name, event.policy_version) == ("login", version)


def test_a_version_never_loaded_is_404(client: FlaskClient,
                                       auth_headers: HeadersFactory) -> None:
    for path in ("/v1/policies/login/versions/" + "0" * 64,
                 "/v1/policies/nosuch/versions/" + "0" * 64,
                 "/v1/policies/login/versions/not-a-version"):
        response = client.get(path, headers=auth_headers("admin"))
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"


def test_roles_that_do_not_check_decisions_are_refused_and_each_refusal_is_audited(
        app: Flask, client: FlaskClient, auth_headers: HeadersFactory) -> None:
    version = app.extensions["faceapi"].policies["login"].version
    path = f"/v1/policies/login/versions/{version}"
    for role in ("reviewer", "auditor", "admin"):
        assert client.get(path, headers=auth_headers(role)).status_code == 200, role
    denials_before = _denials(app)
    for role in ("app", "operator"):
        response = client.get(path, headers=auth_headers(role))
        assert response.status_code == 403, role
        assert "canonical_text" not in response.get_data(as_text=True)
    # A key limited to other policies may not read this one's history either.
    scoped = client.get(path, headers=auth_headers("auditor", policies=["identity_check"]))
    assert scoped.status_code == 403
    denials = _denials(app)[len(denials_before):]
    assert [(d.actor_role, d.resource) for d in denials] == [
        ("app", "endpoint/policies.get_policy_version"),
        ("operator", "endpoint/policies.get_policy_version"),
        ("auditor", "endpoint/policies.get_policy_version")]
    assert client.get(path).status_code == 401


def _denials(app: Flask) -> list[Any]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return list(conn.execute(select(audit_events)
                                 .where(audit_events.c.action == "authz.deny")
                                 .order_by(audit_events.c.seq)))


def test_the_route_is_in_the_openapi_document_with_its_roles(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/policies/{name}/versions/{version}"]["get"]
    assert operation["x-roles"] == ["reviewer", "auditor", "admin"]
    assert {"200", "403", "404"} <= set(operation["responses"])


_START = """
import sys, time
from faceapi.bootstrap import bootstrap
container = bootstrap()
container.store.require_current_schema()
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
print(len(container.use_cases.record_policy_versions()))
"""


def test_processes_starting_at_once_record_each_new_version_once(
        app: Flask, settings: Settings, tmp_path: Path) -> None:
    # New versions of every policy (the app's own start recorded the shipped ones).
    changed = tmp_path / "policies"
    shutil.copytree(REPO / "policies", changed)
    for path in changed.glob("*.yaml"):
        rules = yaml.safe_load(path.read_text())
        rules["description"] = "v2 " + rules["description"]
        path.write_text(yaml.safe_dump(rules))
    env = {**os.environ, "FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(settings.data_dir),
           "FACEAPI_DATABASE_URL": settings.resolved_database_url,
           "FACEAPI_POLICIES_DIR": str(changed), "FACEAPI_LOG_LEVEL": "WARNING"}
    start_at = time.time() + 4.0
    procs = [subprocess.Popen([sys.executable, "-c", _START, str(start_at)], env=env,
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outputs]
    recorded = [int(out.strip().splitlines()[-1]) for out, _ in outputs]
    new = [e for e in load_events(app) if e.policy_version not in
           {p.version for p in app.extensions["faceapi"].policies.values()}]
    assert sum(recorded) == len(new) == len(list(changed.glob("*.yaml")))
    assert len({(e.policy_name, e.policy_version) for e in new}) == len(new)
    assert len(kept(app)) == 2 * len(new)
    assert app.extensions["faceapi"].store.verify().ok
