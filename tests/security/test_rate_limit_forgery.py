"""Issue 12, finding 4: a key's rate limit is spent only by requests that hold the key.

Key ids are public (lists, the audit trail), so a request naming an app's key id with
a wrong secret must not touch that key's budget: it is counted, and limited, by the
address it comes from. Every request crosses a real socket, from its own loopback
address (127.x.y.z), against the in-memory limiter and against Redis.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable, Iterator

import pytest
import urllib3
from flask import Flask
from sqlalchemy import func, select

from faceapi.adapters.store.tables import audit_events
from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app
from faceapi.services.keys import key_id_of
from tests.conftest import KeyFactory
from tests.emulator_server import serve
from tests.fakes import FakeClock, FakeEngine
from tests.security.conftest import Http

REDIS_URL = os.environ.get("FACEAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEFAULT, VERIFY = 10, 3


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture(params=["memory", "redis"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    limited = settings.with_overrides(rate_limit_default=f"{DEFAULT}/minute",
                                      rate_limit_verify=f"{VERIFY}/minute")
    if request.param == "redis":
        if not redis_answers(REDIS_URL):
            pytest.skip(f"Redis does not answer at {REDIS_URL}")
        return limited.with_overrides(redis_url=REDIS_URL)
    return limited


class Address:
    """A client on its own loopback address. Random per test, so counts a Redis kept
    from an earlier run (for up to a minute) cannot meet this one's."""

    def __init__(self, url: str) -> None:
        self.ip = (f"127.{random.randint(1, 254)}.{random.randint(1, 254)}."
                   f"{random.randint(2, 254)}")
        self.http = Http(url)
        self.http._pool = urllib3.PoolManager(retries=False, timeout=30,
                                              source_address=(self.ip, 0))


@pytest.fixture
def new_address(app: Flask) -> Iterator[Callable[[], Address]]:
    # The `http` fixture's server, but each test client chooses its source address.
    server = serve(app)
    try:
        yield lambda: Address(server.url)
    finally:
        server.stop()


def forged(key: str) -> str:
    """The victim's public key id with a secret of the right shape that is not its."""
    key_id = key_id_of(key)
    assert key_id is not None
    return f"fa_{key_id}_{secrets.token_hex(20)}"


def audit_count(app: Flask, action: str) -> int:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)
                                .where(audit_events.c.action == action)).scalar_one())


def test_forged_requests_naming_an_apps_key_do_not_spend_its_verify_budget(
        app: Flask, make_key: KeyFactory, new_address: Callable[[], Address]) -> None:
    victim = make_key("app")
    attacker = new_address()
    statuses = [attacker.http.post("/v1/verify", key=forged(victim), json_body={}).status
                for _ in range(3 * VERIFY)]
    # The attacker's own address runs out; every forged attempt before that is a 401.
    assert statuses == [401] * VERIFY + [429] * (2 * VERIFY), statuses
    assert audit_count(app, "auth.fail") == VERIFY
    # The app still has its whole verify budget, from wherever it calls.
    app_server = new_address()
    answered = [app_server.http.post("/v1/verify", key=victim, json_body={}).status
                for _ in range(VERIFY)]
    assert 429 not in answered, answered
    assert 401 not in answered, answered


def test_forged_requests_do_not_spend_an_apps_general_budget(
        app: Flask, make_key: KeyFactory, new_address: Callable[[], Address]) -> None:
    victim = make_key("app")
    attacker = new_address()
    statuses = [attacker.http.get("/v1/engine", key=forged(victim)).status
                for _ in range(DEFAULT + 5)]
    assert statuses == [401] * DEFAULT + [429] * 5, statuses
    app_server = new_address()
    assert [app_server.http.get("/v1/engine", key=victim).status
            for _ in range(DEFAULT)] == [200] * DEFAULT


def test_a_verified_key_keeps_its_own_budget_across_addresses(
        make_key: KeyFactory, new_address: Callable[[], Address]) -> None:
    key = make_key("app")
    first, second = new_address(), new_address()
    assert [first.http.post("/v1/verify", key=key, json_body={}).status
            for _ in range(VERIFY)].count(429) == 0
    # The tighter verify budget is per key: a fresh address does not reset it ...
    refused = second.http.post("/v1/verify", key=key, json_body={})
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # ... and the general budget is per key too (the refused verify counted there).
    statuses = [second.http.get("/v1/engine", key=key).status for _ in range(DEFAULT)]
    assert statuses.count(200) == DEFAULT - VERIFY - 1, statuses
    assert 429 in statuses, statuses


def test_key_guessing_is_limited_per_address_before_any_store_work(
        app: Flask, new_address: Callable[[], Address]) -> None:
    guesser = new_address()
    statuses = [guesser.http.get("/v1/engine", key=f"fa_{secrets.token_hex(4)}_"
                                 f"{secrets.token_hex(20)}").status
                for _ in range(DEFAULT + 3)]
    assert statuses == [401] * DEFAULT + [429] * 3, statuses
    # The limited attempts never reached the key lookup or the audit trail.
    assert audit_count(app, "auth.fail") == DEFAULT


def test_the_per_address_budget_still_counts_authenticated_requests(
        make_key: KeyFactory, new_address: Callable[[], Address]) -> None:
    shared = new_address()
    keys = [make_key("app") for _ in range(2)]
    statuses = [shared.http.get("/v1/engine", key=keys[i % 2]).status
                for i in range(DEFAULT + 1)]
    assert statuses == [200] * DEFAULT + [429], statuses


def test_redis_limits_are_shared_by_two_apps_like_two_workers(
        settings: Settings, make_key: KeyFactory, new_address: Callable[[], Address]) -> None:
    """Two app instances on one store and one limiter storage count one budget per
    verified key: what two gunicorn workers do."""
    if not settings.redis_url:
        pytest.skip("needs Redis: the in-memory limiter counts per process by design")
    other = create_app(settings, engine=FakeEngine(), clock=FakeClock())
    second_server = serve(other)
    try:
        key = make_key("app")
        caller = new_address()
        other_caller = Address(second_server.url)
        assert [caller.http.post("/v1/verify", key=key, json_body={}).status
                for _ in range(VERIFY)].count(429) == 0
        assert other_caller.http.post("/v1/verify", key=key, json_body={}).status == 429
    finally:
        second_server.stop()
        other.extensions["faceapi"].store.dispose()
