"""Cost of scoped audit reads (issue 12, finding 6) and of migration 0008's back-fill.

Fills a trail with events spread over 50 collections and two policies, then times a
page of 50 (median of 20) for an unscoped reader, a reader scoped to one collection,
and one scoped to a collection and a policy; then downgrades to 0007 and times the
upgrade that back-fills `audit_events.collection_id`. Prints the figures.

    .venv/bin/python bench/audit_scope.py [--events 20000] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import time

try:
    from bench.audit import postgres_store, sqlite_store
except ModuleNotFoundError:  # run as a script: bench/ is on sys.path, the repo is not
    from audit import postgres_store, sqlite_store  # type: ignore[no-redef]

from faceapi.adapters.store import Store
from faceapi.adapters.store.migrate import downgrade_engine
from faceapi.domain import access
from faceapi.domain.audit import SYSTEM, Action, Actor, AuditEvent, AuditQuery
from faceapi.services import audit_trail


def fill(store: Store, events: int) -> None:
    done = 0
    while done < events:
        with store.uow() as uow:
            for _ in range(min(500, events - done)):
                done += 1
                uow.audit.append(AuditEvent(
                    action=Action.VERIFY_DECISION, outcome="match",
                    actor=Actor(role="app", key_id="k1"),
                    resource=f"collections/c{done % 50}/subjects/s{done % 7}",
                    policy_name=("login", "identity_check")[done % 2]))
            uow.commit()


def median_page_ms(store: Store, reader: Actor, query: AuditQuery) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(20):
        start = time.perf_counter()
        page, _ = audit_trail.list_events(query, 50, uow=store.read_uow(), reader=reader)
        times.append(time.perf_counter() - start)
        rows = len(page)
    return sorted(times)[len(times) // 2] * 1000, rows


def measure(store: Store, events: int) -> None:
    store.upgrade()
    fill(store, events)
    one = frozenset({"c7"})
    readers = {
        "unscoped": SYSTEM,
        "1 of 50 collections": access.Actor(role="auditor", key_id="a", collections=one),
        "collection + policy": access.Actor(role="auditor", key_id="a", collections=one,
                                            policies=frozenset({"identity_check"})),
    }
    print(f"{store.dialect}: {events} events")
    for name, reader in readers.items():
        for newest in (True, False):
            ms, rows = median_page_ms(store, reader, AuditQuery(newest_first=newest))
            order = "newest" if newest else "oldest"
            print(f"  page of 50, {order} first, {name}: median {ms:.2f} ms ({rows} rows)")
    downgrade_engine(store.engine, "0007_key_owners")
    start = time.perf_counter()
    store.upgrade()
    print(f"  upgrade 0007 -> head (0008 back-fills {events} events): "
          f"{time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--pg-url", default="")
    args = parser.parse_args()
    with sqlite_store() as store:
        measure(store, args.events)
    if args.pg_url:
        with postgres_store(args.pg_url) as store:
            measure(store, args.events)


if __name__ == "__main__":
    main()
