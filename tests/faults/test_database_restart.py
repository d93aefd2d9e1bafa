"""PostgreSQL stopped (`pg_ctl stop -m fast`, which ends every session) and started again
under load, with faceapi left running.

While it is down every request that needs the store is a 503 `store_unavailable` with
Retry-After, answered at once (never a 500, never a hang) and /readyz is 503 naming the
store; once it is back the same workers serve again: the pool's pre-ping finds its
connections dead and opens new ones, with no faceapi restart."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from faceapi.adapters.store import Store
from faceapi.adapters.store.db import PG_CONNECT_TIMEOUT_S, make_engine
from faceapi.adapters.store.uow import SqlAlchemyUnitOfWork
from faceapi.config import Settings
from faceapi.domain.audit import Action, Actor
from faceapi.domain.errors import StoreUnavailable
from faceapi.services.collections import CreateCollectionRequest, create_collection
from tests.fakes import FakeClock, FakeEngine
from tests.faults.conftest import GENUINE, DeploymentFactory, report
from tests.faults.invariants import assert_nothing_half_written
from tests.support.servers import PostgresCluster, faceapi_cli

CLIENTS = 3
UP_BEFORE_S = 2.0  # load on a healthy database first
DOWN_FOR_S = 4.0
REQUEST_BOUND_S = 10.0  # no request may take longer than this, outage or not
RECOVERY_BOUND_S = 15.0


@dataclass(frozen=True)
class Sent:
    kind: str
    started: float
    took: float
    status: int | None  # None: the connection broke
    code: str | None
    retry_after: str | None


def test_requests_get_503_while_the_database_is_down_and_succeed_after_without_a_restart(
        pg_cluster: PostgresCluster, deployment: DeploymentFactory) -> None:
    d = deployment(pg_cluster.create_database("faults_restart"))
    assert d.enroll("angelina").status == 200
    workers = d.server.wait_workers(2)
    sent: list[Sent] = []
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            # Mostly cheap reads (the store, no engine); every 4th: a verify (store, then
            # the engine, then a write) or an enrollment (engine, crops, then a write).
            kind = ("verify", "enroll")[(i // 4 + n) % 2] if i % 4 == 0 else "read"
            started = time.monotonic()
            try:
                if kind == "read":
                    answer = d.server.request("GET", "/v1/collections/door",
                                              key=d.operator_key, timeout=REQUEST_BOUND_S)
                elif kind == "verify":
                    answer = d.verify("angelina", GENUINE, timeout=REQUEST_BOUND_S)
                else:
                    answer = d.enroll(f"client-{n}-{i}", timeout=REQUEST_BOUND_S)
            except (OSError, http.client.HTTPException):
                sent.append(Sent(kind, started, time.monotonic() - started, None, None, None))
                continue
            sent.append(Sent(kind, started, time.monotonic() - started, answer.status,
                             answer.code, answer.headers.get("retry-after")))
            if answer.status == 503:
                time.sleep(0.02)  # keep on asking, at a pace the logs can take

    threads = [threading.Thread(target=client, args=(n,), daemon=True)
               for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(UP_BEFORE_S)
        pg_cluster.stop("fast")
        down_at = time.monotonic()
        time.sleep(DOWN_FOR_S / 2)
        ready = d.server.request("GET", "/readyz", timeout=REQUEST_BOUND_S)
        time.sleep(DOWN_FOR_S / 2)
        starting_at = time.monotonic()
        pg_cluster.start()
        up_at = time.monotonic()
        deadline = up_at + RECOVERY_BOUND_S
        while time.monotonic() < deadline and not any(
                s.started >= up_at and s.status == 200 and s.kind == "read" for s in sent):
            time.sleep(0.05)
        time.sleep(2.0)  # and keep the load on a while after the recovery
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_BOUND_S + 5)

    assert ready.status == 503, ready
    assert ready.json()["checks"]["store"] == "store_unavailable", ready.json()
    broken = [s for s in sent if s.status is None]
    assert not broken, broken
    assert {s.status for s in sent} <= {200, 503}, sorted({s.status for s in sent if s.status})
    refused = [s for s in sent if s.status == 503]
    assert refused, "no request reached faceapi while the database was down"
    assert all(s.code == "store_unavailable" and s.retry_after == "5" for s in refused), \
        {(s.code, s.retry_after) for s in refused}
    assert max(s.took for s in sent) < REQUEST_BOUND_S
    # Every request sent while the database was fully down was refused ...
    assert all(s.status == 503 for s in sent
               if down_at <= s.started and s.started + s.took <= starting_at)
    # ... and it recovered by itself: reads succeed again soon after the start, and once
    # one has, every request after it succeeds.
    first_ok = min((s.started + s.took for s in sent
                    if s.started >= starting_at and s.status == 200 and s.kind == "read"),
                   default=None)
    assert first_ok is not None, "no request succeeded after the database came back"
    late = [s for s in sent if s.started > first_ok]
    assert late
    assert all(s.status == 200 for s in late), [(s.kind, s.status) for s in late]
    assert d.server.worker_pids() == workers  # the same workers: nothing restarted
    ready = d.server.request("GET", "/readyz")
    assert ready.status == 200, ready.json()

    assert_nothing_half_written(d.database_url, d.blob_dir)
    verified = faceapi_cli(d.env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    during = [s for s in sent if down_at <= s.started < starting_at]
    report("database_restart", requests=len(sent),
           during_outage_503=sum(s.status == 503 for s in during),
           during_outage_200=sum(s.status == 200 for s in during),
           outage_s=round(up_at - down_at, 2),
           slowest_503_s=round(max(s.took for s in refused), 3),
           pg_ctl_start_s=round(up_at - starting_at, 3),
           first_success_after_start_s=round(first_ok - starting_at, 3),
           after_recovery_200=len(late))


def test_a_transaction_cut_by_a_database_shutdown_is_a_503_and_writes_nothing(
        pg_cluster: PostgresCluster, tmp_path: Path) -> None:
    """The one case the load above rarely hits: the server goes away while a unit of
    work holds its connection, here at the commit of a new collection."""
    settings = Settings(env="test", data_dir=tmp_path / "data",
                        database_url=pg_cluster.create_database("faults_cut"))
    store = Store.from_settings(settings)
    store.upgrade()

    class ShutsTheServerDownAtCommit(SqlAlchemyUnitOfWork):
        def commit(self) -> None:
            pg_cluster.stop("fast")
            super().commit()

    try:
        with pytest.raises(StoreUnavailable):
            create_collection(CreateCollectionRequest("cut", consent_required=False),
                              actor=Actor.system("tests"), engine=FakeEngine(),
                              uow=ShutsTheServerDownAtCommit(store), clock=FakeClock())
        pg_cluster.start()
        # The same engine (its pool held the dead connection) serves again, and the
        # collection was never written, nor its audit event.
        with store.read_uow() as uow:
            assert uow.collections.get("cut") is None
            assert not [e for e in uow.audit.iter_events()
                        if e.event.action is Action.COLLECTION_CREATE]
        assert store.verify().ok
    finally:
        store.dispose()


def test_a_database_that_accepts_but_never_answers_costs_a_bounded_wait() -> None:
    """A server that takes the TCP connection and then says nothing (hung, or a
    half-open network path): opening a connection gives up after PG_CONNECT_TIMEOUT_S,
    as a 503, instead of holding the worker until gunicorn kills it."""
    outcome: list[BaseException | None] = []

    def connect(engine: Engine) -> None:
        try:
            with engine.connect():
                outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # the kernel completes handshakes; nobody ever reads
        engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:"
                             f"{mute.getsockname()[1]}/none")
        started = time.monotonic()
        # In a thread, so that a wait without end fails this test instead of hanging it
        # (closing the socket then ends the attempt).
        attempt = threading.Thread(target=connect, args=(engine,), daemon=True)
        attempt.start()
        attempt.join(PG_CONNECT_TIMEOUT_S + 10)
        waited = time.monotonic() - started
    attempt.join(10)
    engine.dispose()
    assert waited <= PG_CONNECT_TIMEOUT_S + 5, waited
    assert len(outcome) == 1
    assert isinstance(outcome[0], StoreUnavailable), outcome
    assert waited >= PG_CONNECT_TIMEOUT_S - 1, waited
