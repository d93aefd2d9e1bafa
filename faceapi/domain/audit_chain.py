"""The append-only, hash-chained audit log: canonical form, hashing, checkpoint
payloads and verification of the chain and its signatures.

No SQL and no files here: the store appends (faceapi/adapters/store/audit_repo.py) and
hands events back in sequence order; the signing key lives in
faceapi/adapters/signing_keys.py and the export format in faceapi/domain/audit_export.py.
Everything that decides whether the chain is intact lives in this module so the live
database and an exported file are checked by the same code.

Chain rule: `hash = sha256(canonical_json(payload))`, where the payload holds every
field of the event plus its `seq`, `id`, `time` and the previous event's hash
(`prev_hash`; 64 zeros for the first event). A checkpoint is an Ed25519 signature
over `{seq, hash, created_at, key_id}` of the head at that moment.

Key rotation: each checkpoint names the key that signed it (`key_id`, the first 16 hex
digits of the SHA-256 of the raw public key) and is checked with that key alone. Which
keys are trusted is the verifier's to say (the configured signing key plus the retired
public keys of FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS, or an auditor's pinned `--public-key`
files), never the database's: whoever can write the tables could otherwise add a key of
their own and sign a rewritten chain with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from faceapi.domain.audit import (
    GENESIS_HASH,
    Action,
    Actor,
    AuditEvent,
    Checkpoint,
    RecordedEvent,
)

FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- canonical form

def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: one byte string per value, on every machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def format_time(moment: datetime) -> str:
    """UTC, microseconds, `Z`: the one text form of a time that goes into a hash."""
    if moment.tzinfo is None:
        # The SQLite driver hands back naive datetimes; we only ever store UTC.
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """The event's own fields as JSON values (what the hash covers besides position)."""
    return {
        "action": event.action.value,
        "outcome": event.outcome,
        "actor": {"key_id": event.actor.key_id, "role": event.actor.role},
        "resource": event.resource,
        "subject_id": event.subject_id,
        "policy": {"name": event.policy_name, "version": event.policy_version},
        "engine": {"name": event.engine, "model_version": event.model_version},
        "scores": dict(event.scores),
        "input_digests": list(event.input_digests),
        "request_id": event.request_id,
        "reason": event.reason,
        "details": {k: list(v) if isinstance(v, (list, tuple)) else v
                    for k, v in event.details.items()},
    }


def event_from_fields(data: Mapping[str, Any]) -> AuditEvent:
    """Inverse of event_fields (reading an export)."""
    return AuditEvent(
        action=Action(data["action"]),
        outcome=data["outcome"],
        actor=Actor(role=data["actor"]["role"], key_id=data["actor"]["key_id"]),
        resource=data["resource"],
        subject_id=data["subject_id"],
        policy_name=data["policy"]["name"],
        policy_version=data["policy"]["version"],
        engine=data["engine"]["name"],
        model_version=data["engine"]["model_version"],
        scores=dict(data["scores"]),
        input_digests=tuple(data["input_digests"]),
        request_id=data["request_id"],
        reason=data["reason"],
        details=dict(data["details"]),
    )


def hash_payload(seq: int, event_id: str, time: datetime, event: AuditEvent,
                 prev_hash: str) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "seq": seq, "id": event_id, "time": format_time(time),
            **event_fields(event), "prev_hash": prev_hash}


def compute_hash(seq: int, event_id: str, time: datetime, event: AuditEvent,
                 prev_hash: str) -> str:
    payload = hash_payload(seq, event_id, time, event, prev_hash)
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def record_to_json(record: RecordedEvent) -> dict[str, Any]:
    """The stored event as JSON: the API response, the export line, the CLI output."""
    return {"seq": record.seq, "id": record.id, "time": format_time(record.time),
            **event_fields(record.event), "prev_hash": record.prev_hash, "hash": record.hash}


def record_from_json(data: Mapping[str, Any]) -> RecordedEvent:
    return RecordedEvent(seq=int(data["seq"]), id=str(data["id"]), time=parse_time(data["time"]),
                         event=event_from_fields(data), prev_hash=str(data["prev_hash"]),
                         hash=str(data["hash"]))


# ----------------------------------------------------------------------------- signing

def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def load_public_keys(pem: bytes) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key of a PEM bundle (one or more `PUBLIC KEY` blocks, e.g.
    the retired keys of a rotation concatenated). A private key is refused: the
    verifier must never need one, and a copy of it is a copy too many."""
    blocks = list(_PEM_BLOCK.finditer(pem))
    if not blocks:
        raise ValueError("no PEM block found")
    keys = []
    for block in blocks:
        if b"PRIVATE" in block.group(1):
            raise ValueError("holds a private key: give its public key "
                             "(`faceapi audit public-key --key-file <private key>`)")
        keys.append(load_public_key(block.group(0)))
    return keys


def keys_by_id(public_keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """The keys by key id, each once, in the order given."""
    return {key_id_of(k): k for k in public_keys}


def checkpoint_payload(seq: int, event_hash: str, created_at: datetime, key_id: str) -> bytes:
    return canonical_json({"v": FORMAT_VERSION, "seq": seq, "hash": event_hash,
                           "created_at": format_time(created_at), "key_id": key_id})


def verify_checkpoint_signature(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        public_key.verify(signature, checkpoint_payload(checkpoint.seq, checkpoint.event_hash,
                                                        checkpoint.created_at, checkpoint.key_id))
    except (InvalidSignature, ValueError):
        return False
    return True


def rotation_event(old_key_id: str, new_key_id: str, *, old_key_trusted: bool) -> AuditEvent:
    """`audit.signing_key.rotated`: appended in the transaction of the first checkpoint
    a new key signs, just before it, so that checkpoint covers the record of the change.
    Key ids only: a key id is a digest of the public key, never key material."""
    return AuditEvent(action=Action.AUDIT_SIGNING_KEY_ROTATED, outcome="success",
                      actor=Actor.system("audit-signer"), resource="audit",
                      details={"old_key_id": old_key_id, "new_key_id": new_key_id,
                               "old_key_trusted": old_key_trusted})


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    return {"seq": checkpoint.seq, "hash": checkpoint.event_hash,
            "created_at": format_time(checkpoint.created_at), "key_id": checkpoint.key_id,
            "signature": checkpoint.signature}


def checkpoint_from_json(data: Mapping[str, Any]) -> Checkpoint:
    return Checkpoint(seq=int(data["seq"]), event_hash=str(data["hash"]),
                      created_at=parse_time(data["created_at"]), key_id=str(data["key_id"]),
                      signature=str(data["signature"]))


# ----------------------------------------------------------------------------- verification

class CorruptRecord(ValueError):
    """A stored event that cannot even be decoded (e.g. its action edited to nonsense)."""

    def __init__(self, seq: int, event_id: str, reason: str) -> None:
        super().__init__(f"event seq {seq} cannot be decoded: {reason}")
        self.seq = seq
        self.event_id = event_id


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the chain, and where."""

    # edited | missing | broken_link | out_of_order | checkpoint_mismatch | bad_signature
    # | unknown_key | truncated
    kind: str
    seq: int  # the first bad (or first missing) sequence number
    event_id: str | None
    message: str


@dataclass
class VerifyReport:
    """Result of walking the chain: `ok`, how far it got, and the first problem."""

    ok: bool = True
    events_checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints_checked: int = 0
    last_checkpoint_seq: int | None = None  # highest checkpoint whose signature and hash held
    # Checkpoints whose signature held, by the key id that signed them (rotation: more
    # than one key; every one of them was trusted by the verifier, none by the database).
    keys_used: dict[str, int] = field(default_factory=dict)
    problem: Problem | None = None
    complete: bool = True  # False for a filtered export: gaps are expected there
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "complete": self.complete, "events_checked": self.events_checked,
            "head_seq": self.head_seq, "head_hash": self.head_hash,
            "checkpoints_checked": self.checkpoints_checked,
            "last_checkpoint_seq": self.last_checkpoint_seq,
            "keys_used": dict(sorted(self.keys_used.items())),
            "problem": None if self.problem is None else {
                "kind": self.problem.kind, "seq": self.problem.seq,
                "event_id": self.problem.event_id, "message": self.problem.message},
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Walk:
    report: VerifyReport
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    trusted: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    def fail(self, kind: str, seq: int, event_id: str | None, message: str) -> VerifyReport:
        self.report.ok = False
        self.report.problem = Problem(kind, seq, event_id, message)
        return self.report


def verify_chain(events: Iterable[RecordedEvent], checkpoints: Sequence[Checkpoint],
                 public_keys: Sequence[Ed25519PublicKey], *, complete: bool = True,
                 clock: Callable[[], float] | None = None) -> VerifyReport:
    """Walk events in ascending `seq` and report the first bad one.

    complete=True (the live database, an unfiltered export): the chain must start at
    seq 1 and have no gaps, and every checkpoint must be covered. complete=False (a
    filtered export): each event must match its own hash, adjacent sequence numbers
    must link, and checkpoints are checked for the events present."""
    tick = clock or perf_counter
    started = tick()
    walk = _Walk(VerifyReport(complete=complete), trusted=keys_by_id(public_keys))
    iterator = iter(events)
    try:
        return _verify(walk, iterator, checkpoints, complete)
    finally:
        walk.report.seconds = tick() - started
        # A reader that stops early must release what it holds (a server-side cursor).
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _verify(walk: _Walk, iterator: Iterator[RecordedEvent], checkpoints: Sequence[Checkpoint],
            complete: bool) -> VerifyReport:
    # Signatures first: a forged or unknown-key checkpoint must never anchor anything.
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        key = walk.trusted.get(cp.key_id)
        if key is None:
            # A checkpoint nobody trusted signed is treated as forged: otherwise an
            # attacker could re-sign a rewritten chain with a key of their own.
            trusted = ", ".join(sorted(walk.trusted)) or "none"
            return walk.fail("unknown_key", cp.seq, None,
                             f"checkpoint at seq {cp.seq} is signed by key {cp.key_id}, "
                             f"which is not a trusted audit key (trusted: {trusted}); if it "
                             "is a retired key of yours, add its public key to "
                             "FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS or pass it with --public-key")
        if not verify_checkpoint_signature(cp, key):
            return walk.fail("bad_signature", cp.seq, None,
                             f"checkpoint at seq {cp.seq} has an invalid signature "
                             f"for key {cp.key_id}")
        walk.report.keys_used[cp.key_id] = walk.report.keys_used.get(cp.key_id, 0) + 1
        known = walk.checkpoints.get(cp.seq)
        if known is not None and known.event_hash != cp.event_hash:
            return walk.fail("checkpoint_mismatch", cp.seq, None,
                             f"two validly signed checkpoints disagree about seq {cp.seq}")
        walk.checkpoints[cp.seq] = cp
    return _walk_events(walk, iterator, complete)


def _walk_events(walk: _Walk, iterator: Iterator[RecordedEvent], complete: bool) -> VerifyReport:
    report = walk.report
    prev_seq = 0
    prev_hash = GENESIS_HASH
    first = True
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            break
        except CorruptRecord as exc:
            return walk.fail("edited", exc.seq, exc.event_id, str(exc))
        seq = record.seq
        if seq <= prev_seq:
            return walk.fail("out_of_order", seq, record.id,
                             f"event seq {seq} comes after seq {prev_seq}: duplicated or reordered")
        gap = seq != prev_seq + 1
        if gap and complete:
            return walk.fail("missing", prev_seq + 1, None,
                             f"event seq {prev_seq + 1} is missing (next present is seq {seq})")
        expected = compute_hash(seq, record.id, record.time, record.event, record.prev_hash)
        if expected != record.hash:
            return walk.fail("edited", seq, record.id,
                             f"event seq {seq} does not match its hash: edited, moved or forged")
        if not gap and (complete or not first) and record.prev_hash != prev_hash:
            return walk.fail("broken_link", seq, record.id,
                             f"event seq {seq} does not link to seq {prev_seq}: an event was "
                             "inserted, deleted or reordered before it")
        signed = walk.checkpoints.get(seq)
        if signed is not None:
            if signed.event_hash != record.hash:
                return walk.fail("checkpoint_mismatch", seq, record.id,
                                 f"event seq {seq} differs from the signed checkpoint at that seq")
            report.checkpoints_checked += 1
            report.last_checkpoint_seq = seq
        prev_seq, prev_hash, first = seq, record.hash, False
        report.events_checked += 1
    report.head_seq, report.head_hash = prev_seq, prev_hash
    beyond = [s for s in walk.checkpoints if s > prev_seq]
    if beyond and complete:
        return walk.fail("truncated", prev_seq + 1, None,
                         f"a signed checkpoint covers seq {max(beyond)} but the chain ends at "
                         f"seq {prev_seq}: events from seq {prev_seq + 1} were removed")
    return report
