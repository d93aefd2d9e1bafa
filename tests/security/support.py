"""Helpers shared by the policy-binding, lockout and pending-decision attacks (issue 12,
findings 1 and 2): collections bound to chosen policies, enrolled scripted faces, audit
rows read straight from the store."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events, decisions, reviews
from faceapi.config import Settings
from tests.fakes import unit_vector

ALICE = unit_vector(1)
BOB = unit_vector(2)
# Verify and search policies shipped in policies/: what a collection can bind.
CONSEQUENTIAL = ("identity_check", "watchlist_search")
LENIENT = ("login", "photo_tagging")


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings on the backend `--db` names (PostgreSQL enforces lengths
    and locks SQLite does not): import it with tests.integration.conftest's fixtures."""
    return settings.with_overrides(database_url=request.getfixturevalue("database_url"))


def audit_rows(app: Flask, action: str | None = None) -> list[dict[str, Any]]:
    """Audit events oldest first, details parsed."""
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        query = select(audit_events).order_by(audit_events.c.seq)
        if action is not None:
            query = query.where(audit_events.c.action == action)
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["details"] = json.loads(row["details"])
        row["scores"] = json.loads(row["scores"])
    return rows


def stored_decision(app: Flask, decision_id: str) -> dict[str, Any] | None:
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        row = conn.execute(select(decisions).where(decisions.c.id == decision_id)).first()
    return None if row is None else dict(row._mapping)


def review_count(app: Flask) -> int:
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        return len(conn.execute(select(reviews.c.id)).all())


def decision_count(app: Flask) -> int:
    store = app.extensions["faceapi"].store
    with store.engine.connect() as conn:
        return len(conn.execute(select(decisions.c.id)).all())
