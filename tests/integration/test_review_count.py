"""The console's waiting-review count: one query, scoped, overdue reviews left out."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from faceapi.domain.access import Actor
from faceapi.services.review import count_waiting_reviews
from tests.conftest import HeadersFactory
from tests.fakes import FakeClock, FakeEngine
from tests.integration.test_review_api import identity_check, people

__all__ = ["people"]  # the autouse fixture that enrolls alice and bob in "watch"


def test_waiting_reviews_are_counted_within_scope_and_not_after_their_deadline(
        app: Flask, client: FlaskClient, fake_engine: FakeEngine, clock: FakeClock,
        auth_headers: HeadersFactory) -> None:
    d = app.extensions["faceapi"]
    app_key = auth_headers("app")
    identity_check(client, fake_engine, app_key)
    identity_check(client, fake_engine, app_key)
    everyone = Actor(key_id="r1", role="reviewer", collections=None, policies=None)
    elsewhere = Actor(key_id="r2", role="reviewer", collections=frozenset({"other"}),
                      policies=None)
    assert count_waiting_reviews(actor=everyone, uow=d.store.uow(), clock=clock) == 2
    assert count_waiting_reviews(actor=elsewhere, uow=d.store.uow(), clock=clock) == 0
    clock.advance(hours=73)  # identity_check waits at most 72 hours
    assert count_waiting_reviews(actor=everyone, uow=d.store.uow(), clock=clock) == 0
