"""Helpers for the audit integration tests: filling a trail, tampering with raw SQL."""

from __future__ import annotations

from sqlalchemy import Engine, text

from faceapi.adapters.store import Store
from faceapi.domain.audit import Action, Actor, AuditEvent


def sample_event(i: int) -> AuditEvent:
    actions = (Action.FACE_DETECT, Action.FACE_COMPARE, Action.VERIFY_DECISION,
               Action.FACE_INDEX)
    return AuditEvent(action=actions[i % 4], outcome=("success", "match", "no_match")[i % 3],
                      actor=Actor(role="app", key_id=f"key{i % 3}"),
                      resource=f"collections/c{i % 5}", subject_id=f"s{i % 7}",
                      policy_name="login" if i % 2 else None,
                      scores={"similarity": round(50 + (i % 50) * 0.97, 4), "face_count": i % 3},
                      input_digests=(f"{i:064x}",), request_id=f"req-{i}",
                      engine="local", model_version="dlib-20.0/resnet-v1",
                      details={"n": i, "flags": [True, False]})


def fill(store: Store, n: int, *, per_transaction: int = 100) -> None:
    done = 0
    while done < n:
        with store.uow() as uow:
            for _ in range(min(per_transaction, n - done)):
                done += 1
                uow.audit.append(sample_event(done))
            uow.commit()


def drop_append_only_triggers(engine: Engine) -> None:
    """What an attacker with DBA rights would do first (the test does it in the open)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in ("audit_events", "audit_checkpoints"):
                conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
        else:
            for table in ("audit_events", "audit_checkpoints"):
                for verb in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER {table}_no_{verb}"))
