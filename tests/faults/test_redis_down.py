"""Redis killed (SIGKILL) under a deployment that counts its rate limits there
(FACEAPI_REDIS_URL): nothing fails. Lockout does not use Redis (its state is a row in
the store, written with the verify's decision), so a locked subject stays locked and
failures keep counting; rate limits fall back to counting in each worker's memory, as
docs/security.md says (so with 2 workers a budget may be spent up to twice); /readyz
names Redis until it is back."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.conftest import GENUINE, IMPOSTOR, Deployment, DeploymentFactory, report
from tests.support.servers import PostgresCluster, RedisServer, random_loopback, redis_missing

LIMIT = 20  # FACEAPI_RATE_LIMIT_DEFAULT per minute, per key and per address
FAILURES = 5  # the login policy's lockout.failures


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


def test_with_redis_killed_lockout_holds_and_rate_limits_fall_back_to_each_worker(
        pg_cluster: PostgresCluster, deployment: DeploymentFactory, tmp_path: Path) -> None:
    missing = redis_missing()
    if missing:
        pytest.skip(missing)
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        d = deployment(pg_cluster.create_database("faults_redis"), redis_url=redis.url,
                       FACEAPI_RATE_LIMIT_DEFAULT=f"{LIMIT}/minute")
        _run(d, redis)
    finally:
        redis.kill()


def _run(d: Deployment, redis: RedisServer) -> None:
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
