"""`faceapi retention run` deletes decision rows past their policy's retention and
audits the run, on the configured store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from faceapi.config import Settings
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.decisions import Candidate, Decision, DecisionKind, Outcome
from faceapi.entrypoints.cli import cli


def a_decision(did: str, at: datetime) -> Decision:
    return Decision(id=did, kind=DecisionKind.VERIFY, outcome=Outcome.NO_MATCH,
                    reasons=("below_threshold",), policy_name="login", policy_version="v1",
                    threshold=80.0, collection_id="c1", subject_id="s1", similarity=40.0,
                    candidates=(Candidate("f1", "s1", 40.0),), created_at=at, decided_at=at)


def test_the_run_deletes_decisions_older_than_the_policys_days_and_audits_it(
        app: Flask, settings: Settings) -> None:
    # The command runs on the wall clock; login keeps decisions 90 days.
    now = datetime.now(UTC)
    store = app.extensions["faceapi"].store
    with store.uow() as uow:
        uow.decisions.add(a_decision("old", now - timedelta(days=400)))
        uow.decisions.add(a_decision("young", now - timedelta(days=30)))
        uow.audit.append(AuditEvent(action=Action.VERIFY_DECISION, outcome="no_match",
                                    actor=Actor.system("test")))
        uow.commit()
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir), "FACEAPI_ENV": "test",
           "FACEAPI_BLOB_DIR": str(settings.resolved_blob_dir)}
    if settings.database_url:
        env["FACEAPI_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(cli, ["retention", "run"], env=env)
    assert result.exit_code == 0, result.output
    assert "deleted 1 decision(s) (login: 1)" in result.output
    assert "erased 0 subject(s)" in result.output
    with store.read_uow() as uow:
        assert uow.decisions.get("old") is None
        assert uow.decisions.get("young") is not None
    with store.engine.connect() as conn:
        event = conn.execute(select(audit_events)
                             .where(audit_events.c.action == "retention.run")).one()
    assert json.loads(event.scores) == {"decisions_deleted": 1, "subjects_erased": 0,
                                        "erasures_failed": 0, "lockouts_cleared": 0}
    assert (event.actor_role, event.actor_key_id) == ("system", "retention")
