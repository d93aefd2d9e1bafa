"""Concurrent appends from several processes and threads leave one unbroken chain."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from faceapi.adapters.store import Store
from faceapi.config import Settings
from faceapi.domain.audit import Action, Actor, AuditEvent

PER_WORKER = 100


def append_many(data_dir: str, database_url: str, worker: int, count: int) -> None:
    """Runs in a child process: its own engine, its own connections."""
    store = Store.from_settings(Settings(env="test", data_dir=Path(data_dir),
                                         database_url=database_url))
    try:
        for i in range(count):
            with store.uow() as uow:
                uow.audit.append(AuditEvent(action=Action.FACE_DETECT, outcome="success",
                                            actor=Actor(role="app", key_id=f"worker{worker}"),
                                            scores={"i": i}))
                uow.commit()
    finally:
        store.dispose()


def assert_one_unbroken_chain(store: Store, expected: int) -> None:
    report = store.verify()
    assert report.ok, report.problem
    assert report.events_checked == expected
    assert report.head_seq == expected


def test_four_processes_appending_at_once_leave_one_unbroken_chain(
        store: Store, settings: Settings) -> None:
    # fork: what gunicorn does, and it exercises the store's after-fork pool reset.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=append_many,
                               args=(str(settings.data_dir), settings.resolved_database_url,
                                     n, PER_WORKER))
               for n in range(4)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    elapsed = time.perf_counter() - started
    assert_one_unbroken_chain(store, 4 * PER_WORKER)
    with store.read_uow() as uow:
        actors = {r.event.actor.key_id for r in uow.audit.iter_events()}
    assert actors == {f"worker{n}" for n in range(4)}
    print(f"\n[{store.dialect}] 4 processes: {4 * PER_WORKER / elapsed:.0f} events/s "
          "including process start")


def test_eight_threads_appending_at_once_leave_one_unbroken_chain(store: Store) -> None:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            for i in range(PER_WORKER // 2):
                with store.uow() as uow:
                    uow.audit.append(AuditEvent(action=Action.FACE_COMPARE, outcome="success",
                                                actor=Actor(role="app", key_id=f"thread{n}"),
                                                scores={"i": i}))
                    uow.commit()
        except BaseException as exc:  # collected and re-raised by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert not errors, errors
    assert_one_unbroken_chain(store, 8 * (PER_WORKER // 2))
    print(f"\n[{store.dialect}] 8 threads: {8 * (PER_WORKER // 2) / elapsed:.0f} events/s")
