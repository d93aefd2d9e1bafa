"""Audit trail throughput and verification time on SQLite and PostgreSQL.

For each backend: appends with one event per transaction, with 100 events per
transaction, from 8 threads at once (one event per transaction each), then the time
`verify()` takes to walk the whole chain. Prints a table and writes
bench/results/audit.json.

    .venv/bin/python bench/audit.py [--events 2000] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

try:
    from bench.common import environment, table, write_json
except ModuleNotFoundError:  # run as a script: bench/ is on sys.path, the repo is not
    from common import environment, table, write_json  # type: ignore[no-redef]

from faceapi.adapters.store import Store
from faceapi.config import Settings
from faceapi.domain.audit import Action, Actor, AuditEvent


def event(i: int) -> AuditEvent:
    return AuditEvent(action=Action.FACE_DETECT, outcome="success",
                      actor=Actor(role="app", key_id=f"key{i % 3}"),
                      resource=f"collections/c{i % 5}", scores={"face_count": i % 3},
                      input_digests=(f"{i:064x}",), request_id=f"bench-{i}",
                      engine="local", model_version="bench")


def append(store: Store, count: int, per_transaction: int, start: int = 0) -> None:
    done = 0
    while done < count:
        with store.uow() as uow:
            for _ in range(min(per_transaction, count - done)):
                uow.audit.append(event(start + done))
                done += 1
            uow.commit()


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def measure(store: Store, events: int) -> dict[str, Any]:
    store.upgrade()
    t0 = time.perf_counter()
    append(store, events, 1)
    single = rate(events, time.perf_counter() - t0)

    t0 = time.perf_counter()
    append(store, events * 5, 100, start=events)
    batched = rate(events * 5, time.perf_counter() - t0)

    per_thread = max(1, events // 8)
    threads = [threading.Thread(target=append, args=(store, per_thread, 1, 10**6 * (k + 1)))
               for k in range(8)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent = rate(per_thread * 8, time.perf_counter() - t0)

    t0 = time.perf_counter()
    report = store.verify()
    verify_s = round(time.perf_counter() - t0, 3)
    total = events + events * 5 + per_thread * 8
    return {"events_in_chain": total, "single_per_s": single, "batch100_per_s": batched,
            "threads8_per_s": concurrent, "verify_seconds": verify_s,
            "chain_ok": bool(report.ok)}


@contextmanager
def sqlite_store() -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_settings(Settings(env="test", data_dir=Path(tmp)))
        try:
            yield store
        finally:
            store.dispose()


@contextmanager
def postgres_store(admin_url: str) -> Iterator[Store]:
    name = f"faceapi_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    store = Store.from_settings(Settings(env="test", data_dir=Path(tempfile.mkdtemp()),
                                         database_url=url))
    try:
        yield store
    finally:
        store.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--pg-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with sqlite_store() as store:
        results["sqlite"] = measure(store, args.events)
    try:
        with postgres_store(args.pg_url) as store:
            results["postgresql"] = measure(store, args.events)
    except Exception as exc:  # a laptop without PostgreSQL still gets the SQLite row
        print(f"PostgreSQL skipped: {type(exc).__name__}: {exc}")
    rows = [[name, r["single_per_s"], r["batch100_per_s"], r["threads8_per_s"],
             r["events_in_chain"], r["verify_seconds"], r["chain_ok"]]
            for name, r in results.items()]
    print(table(["backend", "1/txn ev/s", "100/txn ev/s", "8 threads ev/s", "chain",
                 "verify s", "ok"], rows))
    env = environment()
    path = write_json("audit.json", {"environment": env, "events": args.events,
                                     "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
