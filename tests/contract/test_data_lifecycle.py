"""The data lifecycle's repository methods (fake and SQL): consent expiry, review rows
pseudonymised on erasure, the subject lock, and kept policy versions."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from faceapi.domain.collections import Consent, ConsentBasis, Subject
from faceapi.domain.decisions import Candidate, DecisionKind, ReviewVote, Vote
from faceapi.domain.lockout import LockoutKey
from faceapi.domain.policies import PolicyVersion
from faceapi.services.ports import UnitOfWork, UnitOfWorkFactory
from tests.contract.test_repositories import (
    T0,
    add_review,
    audited,
    collection,
    review,
    with_collection,
)


def consent(subject: str, reference: str, *, at: timedelta = timedelta(0),
            expires: timedelta | None = None, cid: str = "c1") -> Consent:
    return Consent(cid, subject, ConsentBasis.EXPLICIT_CONSENT, reference, T0 + at,
                   expires_at=None if expires is None else T0 + expires)


def seeded(new_uow: UnitOfWorkFactory) -> UnitOfWork:
    """s1: lapses at T0+1d; s2: lapsed at T0+2d, then renewed for good; s3: lapses at
    T0+3d; s4: never; c2/s1: lapses at T0+1d too."""
    uow = with_collection(new_uow, "c1", "c2")
    with uow:
        for subject in ("s3", "s4"):
            uow.subjects.ensure(Subject("c1", subject, T0))
        uow.consents.record(consent("s1", "a", expires=timedelta(days=1)))
        uow.consents.record(consent("s2", "b", expires=timedelta(days=2)))
        uow.consents.record(consent("s2", "b2", at=timedelta(hours=1)))
        uow.consents.record(consent("s3", "c", expires=timedelta(days=3)))
        uow.consents.record(consent("s4", "d"))
        uow.consents.record(consent("s1", "e", expires=timedelta(days=1), cid="c2"))
        audited(uow)
    return uow


def test_a_consents_expiry_reads_back_as_the_same_moment(new_uow: UnitOfWorkFactory) -> None:
    uow = seeded(new_uow)
    with uow:
        current = uow.consents.current("c1", "s1")
        renewed = uow.consents.current("c1", "s2")
    assert current is not None
    assert current.expires_at == T0 + timedelta(days=1)
    assert current.lapsed(T0 + timedelta(days=1))
    assert not current.lapsed(T0)
    assert renewed is not None
    assert renewed.expires_at is None


def test_lapsed_among_names_only_subjects_whose_newest_consent_has_lapsed(
        new_uow: UnitOfWorkFactory) -> None:
    uow = seeded(new_uow)
    everyone = ["s1", "s2", "s3", "s4", "ghost"]
    with uow:
        assert uow.consents.lapsed_among("c1", everyone, T0) == set()
        assert uow.consents.lapsed_among("c1", everyone, T0 + timedelta(days=1)) == {"s1"}
        assert uow.consents.lapsed_among("c1", everyone, T0 + timedelta(days=9)) == {"s1", "s3"}
        assert uow.consents.lapsed_among("c1", ["s3"], T0 + timedelta(days=9)) == {"s3"}
        assert uow.consents.lapsed_among("c1", [], T0 + timedelta(days=9)) == set()
        assert uow.consents.lapsed_among("c2", everyone, T0 + timedelta(days=9)) == {"s1"}


def test_lapsed_lists_every_collection_oldest_expiry_first_up_to_the_limit(
        new_uow: UnitOfWorkFactory) -> None:
    uow = seeded(new_uow)
    later = T0 + timedelta(days=9)
    with uow:
        assert uow.consents.lapsed(T0, 10) == []
        assert uow.consents.lapsed(later, 10) == [("c1", "s1"), ("c2", "s1"), ("c1", "s3")]
        assert uow.consents.lapsed(later, 2) == [("c1", "s1"), ("c2", "s1")]


def test_locking_a_subject_says_whether_it_exists(new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        assert uow.subjects.lock("c1", "s1") is True
        assert uow.subjects.lock("c1", "ghost") is False


def test_pseudonymising_a_subject_in_reviews_blanks_its_ids_and_picked_faces(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow, "c1", "c2")
    own = review("r1")  # a verify of s1
    search = review("r2", kind=DecisionKind.SEARCH, subject_id=None,
                    candidates=(Candidate("f1", "s1", 95.0), Candidate("f2", "s2", 80.0)))
    other = review("r3", subject_id="s2", candidates=(Candidate("f2", "s2", 90.0),))
    elsewhere = review("r4", collection_id="c2")
    picked_s1 = ReviewVote("k2", "reviewer", Vote.CONFIRM, "same", "f1", T0)
    picked_s2 = ReviewVote("k3", "reviewer", Vote.CONFIRM, "same", "f2", T0)
    with uow:
        for r in (own, search, other, elsewhere):
            add_review(uow, r)
        uow.reviews.add_vote("r2", picked_s1)
        uow.reviews.add_vote("r3", picked_s2)
        audited(uow)
    with uow:
        assert uow.reviews.pseudonymise_subject("c1", "s1") == 2
        audited(uow)
    with uow:
        got_own, got_search = uow.reviews.get("r1"), uow.reviews.get("r2")
        got_other, got_elsewhere = uow.reviews.get("r3"), uow.reviews.get("r4")
        assert uow.reviews.pseudonymise_subject("c1", "s1") == 0  # nothing left to do
    assert got_own is not None
    assert got_search is not None
    assert got_own.subject_id is None
    assert got_own.candidates == (Candidate("", "", 91.5),)
    assert got_own.status is own.status
    assert got_search.candidates == (Candidate("", "", 95.0), Candidate("f2", "s2", 80.0))
    assert [v.face_id for v in got_search.votes] == [None]
    assert got_other == review("r3", subject_id="s2", candidates=other.candidates,
                               votes=(picked_s2,))
    assert got_elsewhere == elsewhere


def test_pseudonymising_a_whole_collections_reviews_blanks_every_subject(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        add_review(uow, review("r1"))
        add_review(uow, review("r2", subject_id="s2", candidates=(Candidate("f2", "s2", 70.0),)))
        audited(uow)
    with uow:
        assert uow.reviews.pseudonymise_subject("c1", None) == 2
        audited(uow)
    with uow:
        for rid in ("r1", "r2"):
            got = uow.reviews.get(rid)
            assert got is not None
            assert got.subject_id is None
            assert {c.subject_id for c in got.candidates} == {""}


def version(name: str, text: str, at: timedelta = timedelta(0)) -> PolicyVersion:
    return PolicyVersion(name=name, version=hashlib.sha256(text.encode()).hexdigest(),
                         canonical_text=text, first_loaded_at=T0 + at,
                         audit_event_id="e-" + text)


def test_policy_versions_read_back_by_name_and_version_oldest_first(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    first, second = version("login", '{"a":1}'), version("login", '{"a":2}', timedelta(days=1))
    other = version("identity_check", '{"b":1}')
    with uow:
        uow.policy_versions.lock()
        for v in (second, first, other):
            uow.policy_versions.add(v)
        audited(uow)
    with uow:
        assert uow.policy_versions.get("login", first.version) == first
        assert uow.policy_versions.get("login", other.version) is None
        assert uow.policy_versions.versions_of("login") == [first, second]
        assert uow.policy_versions.versions_of("nosuch") == []


def test_a_policy_version_is_recorded_once(new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    kept = version("login", '{"a":1}')
    with uow:
        uow.policy_versions.add(kept)
        audited(uow)
    # SQL: IntegrityError on the primary key; the fake: ValueError.
    with uow, pytest.raises((IntegrityError, ValueError)):
        uow.policy_versions.add(kept)
    with uow:
        assert uow.policy_versions.versions_of("login") == [kept]


def test_erasing_a_subjects_consents_takes_it_off_the_lapsed_list(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        uow.collections.add(collection("c9"))
        uow.subjects.ensure(Subject("c9", "s1", T0))
        uow.consents.record(consent("s1", "x", expires=timedelta(days=1), cid="c9"))
        audited(uow)
    with uow:
        assert uow.consents.lapsed(T0 + timedelta(days=2), 5) == [("c9", "s1")]
        assert uow.consents.delete_for_subject("c9", "s1") == 1
        audited(uow)
    with uow:
        assert uow.consents.lapsed(T0 + timedelta(days=2), 5) == []


def test_quiet_lockout_states_are_deleted_per_policy(new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    hour = timedelta(hours=1)
    with uow:
        for subject, policy, last, until in (
                ("old", "login", T0 - 3 * hour, None),
                ("new", "login", T0, None),
                ("locked", "login", T0 - 3 * hour, T0 + hour),
                ("other", "identity_check", T0 - 3 * hour, None)):
            state = uow.lockouts.get_for_update(LockoutKey("c1", subject, policy))
            uow.lockouts.save(replace(state, failures=1, last_failure_at=last,
                                      locked_until=until))
        audited(uow)
    with uow:
        assert sorted(uow.lockouts.policy_names()) == ["identity_check", "login"]
        assert uow.lockouts.delete_quiet("login", T0 - hour) == 1
        audited(uow)
    with uow:
        left = {s.key.subject_id for s in uow.lockouts.for_subjects(
            "c1", ["old", "new", "locked", "other"])}
    assert left == {"new", "locked", "other"}
