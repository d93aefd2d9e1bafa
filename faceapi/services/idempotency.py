"""Idempotency-Key: the same key with the same request, from the same API key, within
24 h gets the first answer again and writes nothing new (docs/api.md, "Idempotent
requests").

A request with a key goes through three short steps around its use case:

1. `claim` (a transaction of its own): insert the row `pending` with a fresh claim
   token, or find the key's row: the same request answered before is a `Replay`; the
   same key with another request is `idempotency_key_reused` (422); a request still
   running with it is `idempotency_in_progress` (409). An expired row (24 h) or a claim
   whose holder died (pending past the lease) is taken over.
2. the use case runs; its write commits with the row turned `committed` in the same
   transaction (adapters/store/idempotency_repo.py, `mark_active_claim`).
3. `save_response` stores the answer (`done`); a refused request is `release`d instead
   (refusals are not stored: a retry is judged again, and audited again).

Between 2 and 3 a crash leaves a `committed` row without an answer: the write happened
exactly once, and a retry with the key gets `idempotency_response_unavailable` (409)
rather than a second write. Rows hold a SHA-256 fingerprint of the request, never the
request or its image. Their writes are bookkeeping and carry no audit event; a replay
writes nothing at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from faceapi.domain.clock import Clock
from faceapi.domain.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyResponseUnavailable,
)
from faceapi.services.ports import ErasedData, IdempotencyRecord, UnitOfWork

# How long a key holds its first answer.
TTL = timedelta(hours=24)
# How long a `pending` claim is trusted to belong to a live request. Longer than any
# request may run (gunicorn's timeout, FACEAPI_TIMEOUT, 60 s by default); a request that
# outlives it anyway cannot commit: its claim token no longer holds the row.
LEASE = timedelta(minutes=5)

PENDING, COMMITTED, DONE, ERASED = "pending", "committed", "done", "erased"


@dataclass(frozen=True)
class IdempotentRequest:
    """What identifies a request under its key: the caller's API key id, the key, and
    the SHA-256 of method, path and body (entrypoints/web/api/idempotency.py)."""

    key_id: str
    key: str
    fingerprint: str
    collection_id: str | None = None


@dataclass(frozen=True)
class Claim:
    """This request holds the key: run it."""

    key_id: str
    key: str
    claim_token: str


@dataclass(frozen=True)
class Replay:
    """The first answer to this request, to send again."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...]
    first_seen: datetime


def claim(req: IdempotentRequest, *, uow: UnitOfWork, clock: Clock) -> Claim | Replay:
    """Claim the key for this request, or answer from its first answer (see the module
    docstring); raises IdempotencyKeyReused, IdempotencyInProgress,
    IdempotencyResponseUnavailable."""
    now = clock.now()
    fresh = IdempotencyRecord(key_id=req.key_id, key=req.key, fingerprint=req.fingerprint,
                              state=PENDING, claim_token=str(uuid.uuid4()), created_at=now,
                              claimed_at=now, collection_id=req.collection_id)
    mine = Claim(req.key_id, req.key, fresh.claim_token)
    with uow:
        found = uow.idempotency.claim(fresh)
        if found is None:
            uow.commit()
            return mine
        expired = found.created_at <= now - TTL
        if not expired and found.fingerprint != req.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different request in the last 24 h; "
                "use a new key for a new request")
        abandoned = found.state == PENDING and found.claimed_at <= now - LEASE
        if expired or abandoned:
            if not uow.idempotency.take_over(fresh, previous_token=found.claim_token):
                raise _in_progress()
            uow.commit()
            return mine
        if found.state == DONE and found.status is not None and found.body is not None:
            return Replay(status=found.status, body=found.body, headers=found.headers,
                          first_seen=found.created_at)
        if found.state == PENDING:
            raise _in_progress()
        raise IdempotencyResponseUnavailable(
            "the first request with this Idempotency-Key was carried out, but its answer "
            "is not available (lost before it was saved, or erased with its subject); "
            "nothing was done again", details={"state": found.state})


def _in_progress() -> IdempotencyInProgress:
    return IdempotencyInProgress("a request with this Idempotency-Key is still being "
                                 "processed; retry shortly", retry_after=1)


def save_response(held: Claim, *, status: int, body: str,
                  headers: tuple[tuple[str, str], ...], collection_id: str | None,
                  uow: UnitOfWork) -> bool:
    """Store the answer of a request whose write committed; False if the claim was lost
    (taken over after its lease), when the other request's answer stands."""
    with uow:
        saved = uow.idempotency.save_response(held.key_id, held.key, held.claim_token,
                                              status=status, body=body, headers=headers,
                                              collection_id=collection_id)
        uow.commit()
    return saved


def release(held: Claim, *, uow: UnitOfWork) -> None:
    """Forget the claim of a request that was refused or failed before writing."""
    with uow:
        uow.idempotency.release(held.key_id, held.key, held.claim_token)
        uow.commit()


def purge_expired(*, uow: UnitOfWork, clock: Clock) -> int:
    """Delete records past their 24 h (`faceapi retention run`); how many. Unaudited:
    the rows are request bookkeeping, and an expired row is already ignored."""
    with uow:
        count = uow.idempotency.delete_before(clock.now() - TTL)
        uow.commit()
    return count


class IdempotencyEraser:
    """A `SubjectEraser`: the saved answers of a collection's requests may name its
    subjects (a verify's subject id, a search's matches), so erasing any subject drops
    the answers saved for that collection, keeping the fingerprints: a retry then gets
    `idempotency_response_unavailable`, never a second write. Counted as
    `idempotent_answers_erased` in the erasure's audit event."""

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        erased = uow.idempotency.erase_collection(collection_id)
        return ErasedData(counts={"idempotent_answers_erased": erased} if erased else {})
