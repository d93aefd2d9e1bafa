"""Filters and cursor pagination return the right events on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from faceapi.adapters.store import Store
from faceapi.domain import access
from faceapi.domain.audit import SYSTEM, Action, Actor, AuditEvent, AuditQuery
from faceapi.domain.errors import NotFound
from faceapi.services import audit_trail

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_events() -> list[AuditEvent]:
    """40 events whose fields cycle independently, so each filter has a known answer."""
    out = []
    for i in range(1, 41):
        out.append(AuditEvent(
            action=(Action.FACE_DETECT, Action.VERIFY_DECISION, Action.SUBJECT_ERASE)[i % 3],
            outcome=("success", "match", "no_match", "rejected")[i % 4],
            actor=Actor(role=("app", "operator")[i % 2], key_id=f"k{i % 5}"),
            resource=f"collections/c{i % 2}/subjects/s{i % 6}" if i % 7 else "collections/c10",
            subject_id=f"s{i % 6}", policy_name=("login", "identity_check", None)[i % 3],
            request_id=f"req-{i}"))
    return out


@pytest.fixture
def filled(store: Store) -> Store:
    moments = iter([T0 + timedelta(minutes=i) for i in range(1, 200)])
    store.now = lambda: next(moments)
    for e in make_events():
        audit_trail.record(e, uow=store.uow())
    return store


def seqs(store: Store, limit: int = 100, **filters) -> list[int]:
    page, _ = audit_trail.list_events(AuditQuery(**filters), limit, uow=store.read_uow(),
                                      reader=SYSTEM)
    return [r.seq for r in page]


def expected(pred) -> list[int]:
    return sorted((i for i, e in enumerate(make_events(), start=1) if pred(i, e)), reverse=True)


@pytest.mark.parametrize(("filters", "pred"), [
    ({}, lambda i, e: True),
    ({"actions": ("verify.decision",)}, lambda i, e: e.action is Action.VERIFY_DECISION),
    ({"actions": ("face.detect", "subject.erase")},
     lambda i, e: e.action in (Action.FACE_DETECT, Action.SUBJECT_ERASE)),
    ({"outcome": "match"}, lambda i, e: e.outcome == "match"),
    ({"actor_key_id": "k3"}, lambda i, e: e.actor.key_id == "k3"),
    ({"actor_role": "operator"}, lambda i, e: e.actor.role == "operator"),
    ({"policy_name": "login"}, lambda i, e: e.policy_name == "login"),
    ({"subject_id": "s4"}, lambda i, e: e.subject_id == "s4"),
    ({"request_id": "req-17"}, lambda i, e: i == 17),
    ({"resource": "collections/c1"},
     lambda i, e: (e.resource or "").startswith("collections/c1/")),
    ({"resource": "collections/c10"}, lambda i, e: e.resource == "collections/c10"),
    ({"resource": "collections/c1/subjects/s5"},
     lambda i, e: e.resource == "collections/c1/subjects/s5"),
    ({"since": T0 + timedelta(minutes=10), "until": T0 + timedelta(minutes=20)},
     lambda i, e: 10 <= i < 20),
    ({"since": T0 + timedelta(minutes=35), "outcome": "no_match", "actor_role": "app"},
     lambda i, e: i >= 35 and e.outcome == "no_match" and e.actor.role == "app"),
], ids=lambda v: ",".join(v) if isinstance(v, dict) else "")
def test_each_filter_returns_exactly_the_matching_events(filled: Store, filters, pred) -> None:
    assert seqs(filled, **filters) == expected(pred)


def test_a_time_filter_in_another_timezone_means_the_same_instant(filled: Store) -> None:
    plus2 = T0.astimezone(timezone(timedelta(hours=2)))
    assert plus2.hour == 14
    assert seqs(filled, since=plus2 + timedelta(minutes=38)) == [40, 39, 38]


@pytest.mark.parametrize("newest_first", [True, False])
def test_cursor_pages_cover_every_event_once_in_order(filled: Store, newest_first: bool) -> None:
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        page, after = audit_trail.list_events(
            AuditQuery(outcome="success", newest_first=newest_first, after_seq=after), 3,
            uow=filled.read_uow(), reader=SYSTEM)
        seen += [r.seq for r in page]
        pages += 1
        if after is None:
            break
    want = expected(lambda i, e: e.outcome == "success")
    assert seen == (want if newest_first else sorted(want))
    assert pages == -(-len(want) // 3)


def test_getting_one_event_by_id_returns_it_with_its_hashes(filled: Store) -> None:
    page, _ = audit_trail.list_events(AuditQuery(request_id="req-9"), 5, uow=filled.read_uow(),
                                      reader=SYSTEM)
    record = audit_trail.get_event(page[0].id, uow=filled.read_uow(), reader=SYSTEM)
    assert (record.seq, record.event.request_id) == (9, "req-9")
    assert len(record.hash) == 64


def scoped_reader(**scope: frozenset[str] | None) -> access.Actor:
    return access.Actor(role="auditor", key_id="scoped", **scope)


@pytest.mark.parametrize(("scope", "pred"), [
    ({"collections": frozenset({"c1"})},
     lambda i, e: (e.resource or "").startswith("collections/c1/")),
    ({"collections": frozenset({"c10", "c0"})},
     lambda i, e: e.resource == "collections/c10" or (e.resource or "").startswith(
         "collections/c0/")),
    ({"policies": frozenset({"login"})}, lambda i, e: e.policy_name == "login"),
    ({"collections": frozenset({"c1"}), "policies": frozenset({"identity_check"})},
     lambda i, e: (e.resource or "").startswith("collections/c1/")
     and e.policy_name == "identity_check"),
    ({"collections": frozenset()}, lambda i, e: False),
], ids=["one collection", "two collections", "one policy", "both", "empty scope"])
def test_a_scoped_reader_lists_only_the_events_its_scope_covers(filled: Store, scope,
                                                                 pred) -> None:
    page, _ = audit_trail.list_events(AuditQuery(), 100, uow=filled.read_uow(),
                                      reader=scoped_reader(**scope))
    assert [r.seq for r in page] == expected(pred)


def test_a_scoped_reader_gets_an_event_outside_its_scope_as_missing(filled: Store) -> None:
    reader = scoped_reader(collections=frozenset({"c0"}))
    inside = audit_trail.get_event(
        audit_trail.list_events(AuditQuery(request_id="req-2"), 1, uow=filled.read_uow(),
                                reader=SYSTEM)[0][0].id, uow=filled.read_uow(), reader=reader)
    assert inside.event.resource.startswith("collections/c0/")
    outside = audit_trail.list_events(AuditQuery(request_id="req-1"), 1,
                                      uow=filled.read_uow(), reader=SYSTEM)[0][0]
    with pytest.raises(access.OutOfScope) as refused:
        audit_trail.get_event(outside.id, uow=filled.read_uow(), reader=reader)
    with pytest.raises(NotFound) as missing:
        audit_trail.get_event("no-such-event", uow=filled.read_uow(), reader=reader)
    assert refused.value.code == missing.value.code == "not_found"


def test_migration_0008_attributes_existing_events_and_keeps_the_trail_append_only(
        filled: Store) -> None:
    from sqlalchemy import select, text
    from sqlalchemy.exc import DBAPIError

    from faceapi.adapters.store.migrate import downgrade_engine
    from faceapi.adapters.store.tables import audit_events

    def attributed() -> dict[int, str | None]:
        with filled.engine.connect() as conn:
            rows = conn.execute(select(audit_events.c.seq, audit_events.c.collection_id))
            return {row.seq: row.collection_id for row in rows}

    at_append = attributed()
    assert at_append[1] == "c1"
    assert at_append[7] == "c10"
    downgrade_engine(filled.engine, "0007_key_owners")
    filled.upgrade()
    # Filled again from each event's hashed content: the same as at append.
    assert attributed() == at_append
    with pytest.raises(DBAPIError), filled.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET outcome = 'x' WHERE seq = 1"))
    with filled.read_uow() as uow:
        from faceapi.domain.audit_chain import verify_chain

        report = verify_chain(uow.audit.iter_events(), uow.audit.checkpoints(),
                              [filled.signer.public_key])
    assert report.ok, report.problem
