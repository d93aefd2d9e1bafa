"""Acceptance: 1,000 events, each kind of tampering done in the database itself, and
`faceapi audit verify` names the first bad event; the untouched chain verifies."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, select, text

from faceapi.adapters.store import Store
from faceapi.adapters.store.audit_repo import as_utc, event_row
from faceapi.adapters.store.tables import audit_events
from faceapi.config import Settings
from faceapi.domain.audit import RecordedEvent
from faceapi.domain.audit_chain import checkpoint_to_json, compute_hash
from faceapi.entrypoints.cli.audit import audit
from tests.integration.audit_support import drop_append_only_triggers, fill, sample_event

N = 1000


def run_verify(settings: Settings) -> tuple[int, str]:
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir),
           "FACEAPI_DATABASE_URL": settings.resolved_database_url, "FACEAPI_ENV": "test",
           "FACEAPI_LOG_FORMAT": "json"}
    result = CliRunner().invoke(audit, ["verify"], env=env)
    return result.exit_code, result.output


def edit_field(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_events SET outcome = 'failure' WHERE seq = 500"))


def edit_score(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_events SET scores = :scores WHERE seq = 500"),
                 {"scores": '{"face_count":0,"similarity":99.0}'})


def delete_row(conn: Connection) -> None:
    conn.execute(text("DELETE FROM audit_events WHERE seq = 500"))


def swap_rows(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_events SET seq = -1 WHERE seq = 500"))
    conn.execute(text("UPDATE audit_events SET seq = 500 WHERE seq = 600"))
    conn.execute(text("UPDATE audit_events SET seq = 600 WHERE seq = -1"))


def insert_forged_row(conn: Connection) -> None:
    # A forger who knows the algorithm: shift seq >= 500 up by one, then put a
    # well-formed event (correct prev_hash and hash) at 500.
    conn.execute(text("UPDATE audit_events SET seq = -(seq + 1) WHERE seq >= 500"))
    conn.execute(text("UPDATE audit_events SET seq = -seq WHERE seq < 0"))
    prev = conn.execute(select(audit_events.c.hash).where(audit_events.c.seq == 499)).scalar_one()
    when = as_utc(conn.execute(select(audit_events.c.occurred_at)
                               .where(audit_events.c.seq == 501)).scalar_one())
    forged = sample_event(4242)
    event_id = "00000000-0000-4000-8000-000000004242"
    digest = compute_hash(500, event_id, when, forged, prev)
    conn.execute(audit_events.insert().values(
        **event_row(RecordedEvent(500, event_id, when, forged, prev, digest))))


def truncate_after_checkpoint(conn: Connection) -> None:
    # Checkpoints sit at 1, 101, ..., 901: removing 851.. drops a signed head.
    conn.execute(text("DELETE FROM audit_events WHERE seq > 850"))


@pytest.mark.parametrize(("tamper", "kind", "first_bad"), [
    (edit_field, "edited", 500),
    (edit_score, "edited", 500),
    (delete_row, "missing", 500),
    (swap_rows, "edited", 500),
    (insert_forged_row, "edited", 501),
    (truncate_after_checkpoint, "truncated", 851),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_verify_names_the_first_bad_event_for_each_kind_of_tampering(
        store: Store, settings: Settings, tamper: Callable[[Connection], None], kind: str,
        first_bad: int) -> None:
    fill(store, N)
    code, output = run_verify(settings)
    assert code == 0, output
    assert f"OK: {N + 1} events" in output or f"OK: {N} events" in output

    drop_append_only_triggers(store.engine)
    with store.engine.begin() as conn:
        tamper(conn)
    report = store.verify()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (kind, first_bad)
    code, output = run_verify(settings)
    assert code == 1
    assert f"FAIL: {kind} at seq {first_bad}" in output


def test_an_untouched_chain_of_1000_events_verifies_quickly(store: Store) -> None:
    started = time.perf_counter()
    fill(store, N, per_transaction=1)
    append_rate = N / (time.perf_counter() - started)
    report = store.verify()
    assert report.ok, report.problem
    assert report.events_checked == N
    assert report.last_checkpoint_seq == 901
    print(f"\n[{store.dialect}] append {append_rate:.0f} events/s (one transaction each); "
          f"verify {N} events in {report.seconds * 1000:.1f} ms")
    assert report.seconds < 5


def test_a_tail_removed_with_its_checkpoints_is_caught_by_a_checkpoint_kept_outside(
        store: Store, settings: Settings, tmp_path) -> None:
    fill(store, 300)
    outside = tmp_path / "checkpoints.json"
    with store.read_uow() as uow:
        outside.write_text(json.dumps({"checkpoints": [
            checkpoint_to_json(cp) for cp in uow.audit.checkpoints()]}))
    drop_append_only_triggers(store.engine)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints WHERE seq > 100"))
        conn.execute(text("DELETE FROM audit_events WHERE seq > 150"))
    code, _ = run_verify(settings)
    # Without an outside anchor this removal is invisible (docs/audit.md says so); the
    # verify run itself appends event 151.
    assert code == 0
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir),
           "FACEAPI_DATABASE_URL": settings.resolved_database_url, "FACEAPI_ENV": "test"}
    result = CliRunner().invoke(audit, ["verify", "--checkpoints", str(outside)], env=env)
    assert result.exit_code == 1
    assert "FAIL: truncated at seq 152" in result.output
