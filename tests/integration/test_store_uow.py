"""The unit of work: a change and its audit event commit together or not at all."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.exc import IntegrityError

from faceapi.adapters.store import Store
from faceapi.adapters.store.db import UNAUDITED
from faceapi.adapters.store.tables import audit_checkpoints, audit_events
from faceapi.adapters.store.uow import UnauditedChange
from faceapi.domain.audit import SYSTEM, Action, AuditEvent

# A stand-in for any domain table: the rule under test is the unit of work's, not a repo's.
scratch = Table("scratch_changes", MetaData(), Column("id", Integer, primary_key=True),
                Column("name", String(40), nullable=False))


class Boom(RuntimeError):
    pass


@pytest.fixture
def store_with_scratch(store: Store) -> Store:
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE scratch_changes (id INTEGER PRIMARY KEY, "
                          "name VARCHAR(40) NOT NULL)"))
    return store


def change_then(store: Store, *, append: bool, fail: bool, commit: bool, row_id: int = 1) -> None:
    """One unit of work: the change, optionally its event, an injected failure, commit."""
    with store.uow() as uow:
        uow.conn.execute(scratch.insert().values(id=row_id, name="a"))
        if append:
            uow.audit.append(event("a"))
        if fail:
            raise Boom("injected")
        if commit:
            uow.commit()


def counts(store: Store) -> tuple[int, int]:
    with store.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(scratch)).scalar_one(),
                conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def event(name: str) -> AuditEvent:
    return AuditEvent(action=Action.COLLECTION_CREATE, outcome="success", actor=SYSTEM,
                      resource=f"collections/{name}")


def test_a_change_and_its_event_commit_together(store_with_scratch: Store) -> None:
    store = store_with_scratch
    with store.uow() as uow:
        uow.conn.execute(scratch.insert().values(id=1, name="a"))
        uow.audit.append(event("a"))
        uow.commit()
    assert counts(store) == (1, 1)


def test_a_failure_between_the_change_and_its_event_leaves_neither(
        store_with_scratch: Store) -> None:
    store = store_with_scratch
    with pytest.raises(Boom):
        change_then(store, append=False, fail=True, commit=True)
    assert counts(store) == (0, 0)


def test_a_failure_after_the_event_but_before_commit_leaves_neither(
        store_with_scratch: Store) -> None:
    store = store_with_scratch
    with pytest.raises(Boom):
        change_then(store, append=True, fail=True, commit=True)
    assert counts(store) == (0, 0)


def test_a_change_that_fails_in_the_database_takes_its_event_with_it(
        store_with_scratch: Store) -> None:
    store = store_with_scratch
    change_then(store, append=True, fail=False, commit=True)
    with pytest.raises(IntegrityError):
        change_then(store, append=True, fail=False, commit=True)  # same primary key
    assert counts(store) == (1, 1)
    assert store.verify().ok


def test_a_database_error_does_not_carry_the_values_it_was_given(
        store_with_scratch: Store) -> None:
    store = store_with_scratch
    change_then(store, append=True, fail=False, commit=True)
    with store.uow() as uow, pytest.raises(IntegrityError) as caught:
        uow.conn.execute(scratch.insert().values(id=1, name="secret-descriptor-bytes"))
    assert "secret-descriptor-bytes" not in str(caught.value)


def test_leaving_the_block_without_commit_rolls_back(store_with_scratch: Store) -> None:
    store = store_with_scratch
    with store.uow() as uow:
        uow.conn.execute(scratch.insert().values(id=1, name="a"))
        uow.audit.append(event("a"))
    assert counts(store) == (0, 0)


def test_a_change_without_an_event_never_commits(store_with_scratch: Store) -> None:
    store = store_with_scratch
    with pytest.raises(UnauditedChange, match="scratch_changes"):
        change_then(store, append=False, fail=False, commit=True)
    assert counts(store) == (0, 0)


def test_a_write_marked_unaudited_may_commit_alone(store_with_scratch: Store) -> None:
    store = store_with_scratch
    with store.uow() as uow:
        uow.conn.execute(scratch.insert().values(id=1, name="a").execution_options(
            **{UNAUDITED: True}))
        uow.commit()
    assert counts(store) == (1, 0)


def test_a_second_transaction_in_the_same_block_is_checked_again(
        store_with_scratch: Store) -> None:
    store = store_with_scratch
    with store.uow() as uow:
        uow.conn.execute(scratch.insert().values(id=1, name="a"))
        uow.audit.append(event("a"))
        uow.commit()
        uow.conn.execute(scratch.insert().values(id=2, name="b"))
        with pytest.raises(UnauditedChange):
            uow.commit()
    assert counts(store) == (1, 1)


def test_a_read_only_unit_of_work_refuses_to_append(store: Store) -> None:
    with store.read_uow() as uow, pytest.raises(RuntimeError, match="read-only"):
        uow.audit.append(event("x"))


def test_the_first_event_is_signed_and_then_every_n_events(store: Store) -> None:
    with store.uow() as uow:
        for i in range(250):
            uow.audit.append(event(f"c{i}"))
        uow.commit()
    with store.engine.connect() as conn:
        seqs = conn.execute(select(audit_checkpoints.c.seq).order_by("seq")).scalars().all()
    assert seqs == [1, 101, 201]
    with store.uow() as uow:
        on_demand = uow.audit.checkpoint()
        uow.commit()
    assert on_demand is not None
    assert on_demand.seq == 250
    assert store.verify().last_checkpoint_seq == 250


def test_a_checkpoint_is_also_made_after_the_configured_seconds(store: Store) -> None:
    moments = iter([datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=s)
                    for s in (0, 10, 400, 401)])
    store.now = lambda: next(moments)
    with store.uow() as uow:
        for i in range(4):
            uow.audit.append(event(f"t{i}"))
        uow.commit()
    with store.read_uow() as uow:
        assert [cp.seq for cp in uow.audit.checkpoints()] == [1, 3]


def test_a_quiet_system_gets_its_unsigned_events_signed_by_the_timer(store: Store) -> None:
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    store.now = lambda: moment[0]
    with store.uow() as uow:
        for i in range(3):
            uow.audit.append(event(f"q{i}"))
        uow.commit()
    assert store.checkpoint_if_due() is None  # seq 1 was signed moments ago
    moment[0] += timedelta(seconds=store.checkpoint_seconds + 1)
    timer = store.start_checkpoint_timer(interval=0.02)
    try:
        for _ in range(200):
            with store.read_uow() as uow:
                if [cp.seq for cp in uow.audit.checkpoints()] == [1, 3]:
                    break
            time.sleep(0.02)
    finally:
        timer.stop()
    with store.read_uow() as uow:
        assert [cp.seq for cp in uow.audit.checkpoints()] == [1, 3]
    assert store.checkpoint_if_due() is None  # nothing new to sign


def _timer_thread_running() -> None:
    names = [t.name for t in threading.enumerate()]
    raise SystemExit(0 if "audit-checkpoints" in names else 3)


def test_the_checkpoint_timer_runs_again_in_a_forked_worker(store: Store) -> None:
    timer = store.start_checkpoint_timer(interval=60)
    try:
        child = multiprocessing.get_context("fork").Process(target=_timer_thread_running)
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
    finally:
        timer.stop()
