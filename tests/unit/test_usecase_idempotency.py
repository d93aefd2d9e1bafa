"""services/idempotency.py on the fakes of the ports: the claim's states and clocks."""

from __future__ import annotations

import pytest

from faceapi.domain.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyResponseUnavailable,
)
from faceapi.services import idempotency as idem
from tests.fakes import FakeClock
from tests.fakes_store import FakeStore

REQ = idem.IdempotentRequest(key_id="k1", key="retry-1", fingerprint="a" * 64,
                             collection_id="staff")


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def claim(store: FakeStore, clock: FakeClock,
          req: idem.IdempotentRequest = REQ) -> idem.Claim | idem.Replay:
    return idem.claim(req, uow=store.uow(), clock=clock)


def committed(store: FakeStore, held: idem.Claim) -> None:
    with store.uow() as uow:
        assert uow.idempotency.mark_committed(held.key_id, held.key, held.claim_token)
        uow.commit()


def answered(store: FakeStore, held: idem.Claim, body: str = '{"ok": true}') -> None:
    committed(store, held)
    assert idem.save_response(held, status=200, body=body,
                              headers=(("Content-Type", "application/json"),),
                              collection_id=None, uow=store.uow())


def test_a_new_key_is_claimed_and_a_second_claim_is_in_progress(store: FakeStore) -> None:
    clock = FakeClock()
    assert isinstance(claim(store, clock), idem.Claim)
    with pytest.raises(IdempotencyInProgress) as raised:
        claim(store, clock)
    assert raised.value.retry_after == 1


def test_an_answered_key_replays_its_answer(store: FakeStore) -> None:
    clock = FakeClock()
    held = claim(store, clock)
    assert isinstance(held, idem.Claim)
    answered(store, held)
    replay = claim(store, clock)
    assert isinstance(replay, idem.Replay)
    assert (replay.status, replay.body) == (200, '{"ok": true}')
    assert replay.headers == (("Content-Type", "application/json"),)


def test_another_request_under_the_key_is_refused_even_while_pending(
        store: FakeStore) -> None:
    clock = FakeClock()
    claim(store, clock)
    other = idem.IdempotentRequest(key_id="k1", key="retry-1", fingerprint="b" * 64)
    with pytest.raises(IdempotencyKeyReused):
        claim(store, clock, other)


def test_the_same_key_of_another_api_key_is_its_own(store: FakeStore) -> None:
    clock = FakeClock()
    claim(store, clock)
    theirs = idem.IdempotentRequest(key_id="k2", key="retry-1", fingerprint="b" * 64)
    assert isinstance(claim(store, clock, theirs), idem.Claim)


def test_a_committed_key_without_its_answer_is_never_run_again(store: FakeStore) -> None:
    clock = FakeClock()
    held = claim(store, clock)
    assert isinstance(held, idem.Claim)
    committed(store, held)
    clock.advance(hours=1)  # long past the lease: still not taken over
    with pytest.raises(IdempotencyResponseUnavailable):
        claim(store, clock)


def test_a_dead_claim_is_taken_over_after_its_lease_and_then_cannot_commit(
        store: FakeStore) -> None:
    clock = FakeClock()
    dead = claim(store, clock)
    assert isinstance(dead, idem.Claim)
    clock.advance(seconds=idem.LEASE.total_seconds() - 1)
    with pytest.raises(IdempotencyInProgress):
        claim(store, clock)
    clock.advance(seconds=2)
    taker = claim(store, clock)
    assert isinstance(taker, idem.Claim)
    with store.uow() as uow:
        assert not uow.idempotency.mark_committed(dead.key_id, dead.key, dead.claim_token)


def test_after_24_hours_the_key_is_new_and_purged(store: FakeStore) -> None:
    clock = FakeClock()
    held = claim(store, clock)
    assert isinstance(held, idem.Claim)
    answered(store, held)
    clock.advance(hours=24)
    assert isinstance(claim(store, clock, idem.IdempotentRequest(
        key_id="k1", key="retry-1", fingerprint="c" * 64)), idem.Claim)
    clock.advance(hours=24, seconds=1)
    assert idem.purge_expired(uow=store.uow(), clock=clock) == 1
    assert idem.purge_expired(uow=store.uow(), clock=clock) == 0


def test_a_released_claim_frees_the_key(store: FakeStore) -> None:
    clock = FakeClock()
    held = claim(store, clock)
    assert isinstance(held, idem.Claim)
    idem.release(held, uow=store.uow())
    assert isinstance(claim(store, clock, idem.IdempotentRequest(
        key_id="k1", key="retry-1", fingerprint="d" * 64)), idem.Claim)


def test_erasure_drops_the_answers_of_its_collection(store: FakeStore) -> None:
    clock = FakeClock()
    held = claim(store, clock)
    assert isinstance(held, idem.Claim)
    answered(store, held)
    with store.uow() as uow:
        erased = idem.IdempotencyEraser()(uow, "staff", "alice")
        uow.commit()
    assert erased.counts == {"idempotent_answers_erased": 1}
    with pytest.raises(IdempotencyResponseUnavailable):
        claim(store, clock)
