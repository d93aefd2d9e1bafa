"""Redis killed (SIGKILL) or hung (SIGSTOP) under a deployment that counts its rate
limits there (FACEAPI_REDIS_URL): nothing fails. Lockout does not use Redis (its state is a row in
the store, written with the verify's decision), so a locked subject stays locked and
failures keep counting; rate limits fall back to counting in each worker's memory, as
docs/security.md says (so with 2 workers a budget may be spent up to twice); /readyz
names Redis until it is back. A Redis that holds its connections without answering
costs a request a bounded wait (the limiter's socket timeouts), not a hung worker."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.conftest import GENUINE, IMPOSTOR, Deployment, DeploymentFactory, report
from tests.support.servers import PostgresCluster, RedisServer, random_loopback, redis_missing

LIMIT = 20  # FACEAPI_RATE_LIMIT_DEFAULT per minute, per key and per address
FAILURES = 5  # the login policy's lockout.failures
# What one request may wait on a hung Redis: about 2 s measured (4 tries of 0.5 s);
# without the limiter's socket timeouts it waited until the client gave up.
HUNG_BOUND_S = 10.0


def _spend_budget(d: Deployment, requests: int) -> Counter[int]:
    """`requests` cheap reads at once, with a key and an address of their own (so their
    buckets start empty), spread over both workers; their statuses."""
    key = d.create_key("operator")
    source = random_loopback()
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = pool.map(lambda _: d.server.request("GET", "/v1/collections/door", key=key,
                                                      source=source).status,
                           range(requests))
        return Counter(answers)


def _lock(d: Deployment, subject: str, key: str, source: str) -> list[int]:
    """FAILURES impostor verifies, then the genuine face: the statuses."""
    statuses = []
    for _ in range(FAILURES):
        answer = d.verify(subject, IMPOSTOR, key=key, source=source)
        assert answer.status != 200 or answer.json()["outcome"] == "no_match", answer
        statuses.append(answer.status)
    statuses.append(d.verify(subject, GENUINE, key=key, source=source).status)
    return statuses


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, killed after it."""
    missing = redis_missing()
    if missing:
        pytest.skip(missing)
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_with_redis_killed_lockout_holds_and_rate_limits_fall_back_to_each_worker(
        pg_cluster: PostgresCluster, deployment: DeploymentFactory,
        redis: RedisServer) -> None:
    d = deployment(pg_cluster.create_database("faults_redis"), redis_url=redis.url,
                   FACEAPI_RATE_LIMIT_DEFAULT=f"{LIMIT}/minute")
    for subject in ("locked", "counting"):
        assert d.enroll(subject).status == 200
    assert d.server.request("GET", "/readyz").json()["checks"]["redis"] == "answers PING"
    # With Redis: one count for both workers, so exactly LIMIT of the requests pass.
    shared = _spend_budget(d, LIMIT + 10)
    assert shared == Counter({200: LIMIT, 429: 10}), shared
    lock_key, lock_source = d.create_key("app"), random_loopback()
    assert _lock(d, "locked", lock_key, lock_source) == [200] * FAILURES + [423]

    redis.kill()
    killed_at = time.monotonic()
    ready = d.server.request("GET", "/readyz")
    assert ready.status == 503, ready
    assert ready.json()["checks"]["redis"].startswith("redis_unavailable"), ready.json()

    # Lockout lives in the store: the locked subject stays locked ...
    still = d.verify("locked", GENUINE, key=lock_key, source=lock_source)
    assert still.status == 423, still
    assert int(still.headers["retry-after"]) >= 1
    # ... and failures still count, whichever worker serves them.
    assert _lock(d, "counting", d.create_key("app"), random_loopback()) == \
        [200] * FAILURES + [423]
    # Rate limits: counted in each worker's own memory, so still limited, at most
    # LIMIT per worker.
    alone = _spend_budget(d, 3 * LIMIT)
    assert set(alone) == {200, 429}, alone
    assert LIMIT <= alone[200] <= 2 * LIMIT, alone

    # Redis back: ready again, without a faceapi restart.
    redis.start()
    restarted_at = time.monotonic()
    deadline = restarted_at + 10
    while d.server.request("GET", "/readyz").status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    ready_again = time.monotonic() - restarted_at
    assert d.server.request("GET", "/readyz").status == 200
    report("redis_down", limit_per_minute=LIMIT, with_redis_passed=shared[200],
           without_redis_passed=alone[200], without_redis_sent=3 * LIMIT,
           readyz_ok_after_redis_start_s=round(ready_again, 3),
           redis_down_s=round(restarted_at - killed_at, 2))


def test_a_hung_redis_costs_a_request_a_bounded_wait_not_a_hung_worker(
        pg_cluster: PostgresCluster, deployment: DeploymentFactory,
        redis: RedisServer) -> None:
    d = deployment(pg_cluster.create_database("faults_hung"), redis_url=redis.url)
    assert redis.process is not None
    # Stopped, not dead: its connections stay open and nothing ever answers on them.
    redis.process.send_signal(signal.SIGSTOP)
    took, statuses = [], []
    for _ in range(6):
        started = time.monotonic()
        statuses.append(d.server.request("GET", "/v1/collections/door",
                                         key=d.operator_key, timeout=60).status)
        took.append(round(time.monotonic() - started, 3))
    ready = d.server.request("GET", "/readyz")
    assert statuses == [200] * 6
    assert max(took) < HUNG_BOUND_S, took
    assert ready.status == 503
    assert ready.json()["checks"]["redis"].startswith("redis_unavailable"), ready.json()
    report("redis_hung", slowest_request_s=max(took),
           requests_over_100ms=sum(t > 0.1 for t in took), requests=len(took))
