"""The audit chain without a database: hashing, value checks, verification, export."""

from __future__ import annotations

import base64
import io
import json
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from faceapi.adapters.signing_keys import CheckpointSigner
from faceapi.domain.audit import (
    ANONYMOUS,
    GENESIS_HASH,
    Action,
    Actor,
    AuditEvent,
    Checkpoint,
    InvalidAuditEvent,
    RecordedEvent,
    validate_event,
)
from faceapi.domain.audit_chain import compute_hash, record_from_json, record_to_json, verify_chain
from faceapi.domain.audit_export import export_header, jsonl_lines, read_jsonl_export, verify_export

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def sample_event(i: int) -> AuditEvent:
    return AuditEvent(action=Action.FACE_COMPARE if i % 2 else Action.FACE_DETECT,
                      outcome="success", actor=Actor(role="app", key_id=f"key{i % 3}"),
                      resource=f"collections/c{i % 5}", scores={"similarity": 90.0 + i / 7},
                      input_digests=(f"{i:064x}",), request_id=f"req-{i}",
                      details={"face_count": i % 4})


def build_chain(n: int, signer: CheckpointSigner,
                every: int = 10) -> tuple[list[RecordedEvent], list[Checkpoint]]:
    events: list[RecordedEvent] = []
    checkpoints: list[Checkpoint] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        when = T0 + timedelta(seconds=seq)
        event_id = f"00000000-0000-4000-8000-{seq:012d}"
        event = sample_event(seq)
        digest = compute_hash(seq, event_id, when, event, prev)
        events.append(RecordedEvent(seq, event_id, when, event, prev, digest))
        if seq % every == 0:
            checkpoints.append(signer.sign(seq, digest, when))
        prev = digest
    return events, checkpoints


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner(Ed25519PrivateKey.generate())


def test_an_untouched_chain_verifies_and_reaches_its_last_checkpoint(signer):
    events, cps = build_chain(100, signer)
    report = verify_chain(events, cps, [signer.public_key])
    assert report.ok, report.problem
    assert (report.events_checked, report.head_seq, report.last_checkpoint_seq) == (100, 100, 100)
    assert report.checkpoints_checked == 10


def test_the_hash_covers_every_field_and_the_position(signer):
    events, _ = build_chain(3, signer)
    e = events[1]
    base = compute_hash(e.seq, e.id, e.time, e.event, e.prev_hash)
    assert base == e.hash
    changes = [
        compute_hash(e.seq + 1, e.id, e.time, e.event, e.prev_hash),
        compute_hash(e.seq, e.id, e.time + timedelta(microseconds=1), e.event, e.prev_hash),
        compute_hash(e.seq, e.id, e.time, replace(e.event, outcome="failure"), e.prev_hash),
        compute_hash(e.seq, e.id, e.time, replace(e.event, scores={"similarity": 1.0}),
                     e.prev_hash),
        compute_hash(e.seq, e.id, e.time, e.event, GENESIS_HASH),
    ]
    assert base not in changes


@pytest.mark.parametrize(("tamper", "kind", "seq"), [
    ("edit", "edited", 37),
    ("delete", "missing", 37),
    ("swap", "edited", 37),
    ("insert", "edited", 38),
    ("truncate", "truncated", 96),
])
def test_each_kind_of_tampering_is_found_at_the_first_bad_event(signer, tamper, kind, seq):
    events, cps = build_chain(100, signer)
    if tamper == "edit":
        events[36] = replace(events[36], event=replace(events[36].event, outcome="failure"))
    elif tamper == "delete":
        del events[36]
    elif tamper == "swap":
        a, b = events[36], events[41]
        events[36] = replace(b, seq=a.seq)
        events[41] = replace(a, seq=b.seq)
    elif tamper == "insert":
        # A forger who knows the algorithm: a well-formed event at 37, the rest shifted.
        forged_event = sample_event(999)
        forged_hash = compute_hash(37, "forged", T0, forged_event, events[35].hash)
        shifted = [replace(r, seq=r.seq + 1) for r in events[36:]]
        events = [*events[:36], RecordedEvent(37, "forged", T0, forged_event, events[35].hash,
                                              forged_hash), *shifted]
    elif tamper == "truncate":
        events = events[:95]
    report = verify_chain(events, cps, [signer.public_key])
    assert not report.ok
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (kind, seq)


def test_a_rewritten_and_rehashed_chain_is_caught_by_the_signed_checkpoint(signer):
    events, cps = build_chain(30, signer)
    rewritten: list[RecordedEvent] = []
    prev = GENESIS_HASH
    for r in events:
        event = replace(r.event, outcome="failure") if r.seq == 5 else r.event
        digest = compute_hash(r.seq, r.id, r.time, event, prev)
        rewritten.append(replace(r, event=event, prev_hash=prev, hash=digest))
        prev = digest
    report = verify_chain(rewritten, cps, [signer.public_key])
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("checkpoint_mismatch", 10)


def test_checkpoints_signed_by_an_untrusted_key_fail_verification(signer):
    events, cps = build_chain(20, signer)
    other = CheckpointSigner(Ed25519PrivateKey.generate())
    report = verify_chain(events, [other.sign(c.seq, c.event_hash, c.created_at) for c in cps],
                          [signer.public_key])
    assert report.problem is not None
    assert report.problem.kind == "unknown_key"
    forged = [replace(cps[0], event_hash="f" * 64)]
    report = verify_chain(events, forged, [signer.public_key])
    assert report.problem is not None
    assert report.problem.kind == "bad_signature"


def test_an_export_round_trips_and_an_edited_line_is_named(signer):
    events, cps = build_chain(25, signer)
    header = export_header(signer.public_key, {}, T0, complete=True)
    text = "".join(jsonl_lines(header, events, cps))
    assert verify_export(read_jsonl_export(io.StringIO(text)), [signer.public_key]).ok
    lines = text.splitlines()
    line = json.loads(lines[13])  # header is line 1, so this is seq 13
    line["scores"]["similarity"] = 99.9
    lines[13] = json.dumps(line)
    report = verify_export(read_jsonl_export(io.StringIO("\n".join(lines))), [signer.public_key])
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("edited", 13)


def test_records_survive_a_json_round_trip_byte_for_byte(signer):
    events, _ = build_chain(5, signer)
    for r in events:
        again = record_from_json(json.loads(json.dumps(record_to_json(r))))
        assert compute_hash(again.seq, again.id, again.time, again.event, again.prev_hash) == r.hash


def test_plain_values_pass_the_event_check():
    validate_event(sample_event(3))
    validate_event(AuditEvent(action=Action.SUBJECT_ERASE, outcome="success",
                              actor=Actor.system("retention"),
                              resource="collections/staff/subjects/550e8400-e29b-41d4-a716-446655440000",
                              policy_version="a" * 64, reason="erasure requested by subject"))


JPEG_B64 = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2).decode()
EMBEDDING = [((i * 37) % 100) / 100 - 0.5 for i in range(128)]
EMBEDDING_B64 = base64.b64encode(struct.pack("<128f", *EMBEDDING)).decode()


@pytest.mark.parametrize("bad", [
    {"reason": JPEG_B64[:200]},
    {"reason": "data:image/jpeg;base64,/9j/4AAQ"},
    {"resource": EMBEDDING_B64[:250]},
    {"details": {"embedding": EMBEDDING}},
    {"details": {"vector": tuple(EMBEDDING[:17])}},
    {"reason": "key fa_ab12cd34_" + "x" * 32},
    {"details": {"note": "Bearer fa_Q1w2E3r4_abcdefghijABCDEFGHIJ1234"}},
    {"reason": "x" * 257},
    {"details": {"image": {"nested": 1}}},
    {"details": {"Bad Key": 1}},
    {"scores": {"similarity": float("nan")}},
    {"scores": {"label": "text"}},
    {"input_digests": ("not-a-digest",)},
    {"outcome": "Success!"},
    {"actor": Actor(role="root")},
    {"actor": Actor(role="app", key_id="fa_abcdef12_" + "s" * 30)},
    {"reason": "line\x00break"},
])
def test_values_that_could_carry_images_embeddings_or_keys_are_refused(bad):
    with pytest.raises(InvalidAuditEvent):
        validate_event(replace(sample_event(1), **bad))


def test_actions_come_only_from_the_vocabulary():
    with pytest.raises(InvalidAuditEvent):
        validate_event(replace(sample_event(1), action="face.steal"))  # type: ignore[arg-type]
    assert ANONYMOUS.role == "none"
