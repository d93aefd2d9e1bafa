"""One set of repository tests over the fake and the SQL unit of work (conftest.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from faceapi.domain.access import ApiKey
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.collections import (
    Collection,
    CollectionExists,
    Consent,
    ConsentBasis,
    StoredFace,
    Subject,
)
from faceapi.domain.decisions import (
    AlreadyVoted,
    Candidate,
    Decision,
    DecisionKind,
    Outcome,
    Review,
    ReviewStatus,
    ReviewVote,
    Vote,
)
from faceapi.domain.errors import FaceApiError
from faceapi.domain.faces import BoundingBox
from faceapi.domain.lockout import LockoutKey
from faceapi.services.ports import UnitOfWork, UnitOfWorkFactory

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACTOR = Actor(role="admin", key_id="k1")


def audited(uow: UnitOfWork) -> None:
    """Append an event and commit: every change here is committed with its event."""
    uow.audit.append(AuditEvent(action=Action.COLLECTION_CREATE, outcome="created",
                                actor=ACTOR, resource="collections/c"))
    uow.commit()


def collection(cid: str = "c1", **kw: object) -> Collection:
    values: dict[str, object] = {"collection_id": cid, "description": "d", "engine": "fake",
                                     "model_version": "fake-1", "created_at": T0, "version": 0,
                                     "consent_required": False, "keep_face_crops": False,
                                     "policies": ("login",)}
    values.update(kw)
    return Collection(**values)  # type: ignore[arg-type]


def stored_face(face_id: str, subject_id: str = "s1", cid: str = "c1", *,
                embedding: bytes | None = b"\x00\x00\x80?", version: int = 1,
                sha: str = "a" * 64, engine_face_id: str | None = None,
                at: datetime = T0) -> StoredFace:
    return StoredFace(face_id=face_id, collection_id=cid, subject_id=subject_id,
                      image_id="img", image_sha256=sha,
                      bounding_box=BoundingBox(width=0.4, height=0.4, left=0.1, top=0.2),
                      confidence=99.0, created_at=at, width_px=100, height_px=100,
                      embedding=embedding, engine_face_id=engine_face_id,
                      added_version=version)


def with_collection(new_uow: UnitOfWorkFactory, *cids: str) -> UnitOfWork:
    uow = new_uow()
    with uow:
        for cid in cids or ("c1",):
            uow.collections.add(collection(cid))
            for subject in ("s1", "s2"):  # faces and consents need their subject
                uow.subjects.ensure(Subject(cid, subject, T0))
        audited(uow)
    return uow


# --- the unit of work -------------------------------------------------------------------

def test_a_change_left_without_commit_is_rolled_back_with_its_event(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        uow.collections.add(collection())
        uow.audit.append(AuditEvent(action=Action.COLLECTION_CREATE, outcome="created",
                                    actor=ACTOR))
    with uow:
        assert uow.collections.get("c1") is None
        assert uow.audit.head() is None


def test_a_committed_change_is_seen_by_the_next_unit_of_work(
        new_uow: UnitOfWorkFactory) -> None:
    with_collection(new_uow)
    with new_uow() as uow:
        found = uow.collections.get("c1")
        head = uow.audit.head()
    assert found == collection()
    assert head is not None
    assert head.event.action is Action.COLLECTION_CREATE


def test_an_explicit_rollback_discards_the_change_and_keeps_the_block_usable(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        uow.collections.add(collection("gone"))
        uow.rollback()
        uow.collections.add(collection("kept"))
        audited(uow)
    with uow:
        assert [c.collection_id for c in uow.collections.page(limit=10)] == ["kept"]


def test_commit_refuses_a_change_without_an_audit_event(new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        uow.collections.add(collection())
        with pytest.raises(FaceApiError) as refused:
            uow.commit()
    assert refused.value.code == "unaudited_change"
    with uow:
        assert uow.collections.get("c1") is None


def test_touching_a_key_needs_no_audit_event(new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        uow.api_keys.add(api_key("a1"))
        audited(uow)
    with uow:
        uow.api_keys.touch("a1", T0 + timedelta(minutes=5))
        uow.commit()
    with uow:
        key = uow.api_keys.get("a1")
    assert key is not None
    assert key.last_used_at == T0 + timedelta(minutes=5)


# --- collections, subjects, faces, consents ---------------------------------------------

def test_a_duplicate_collection_raises_and_leaves_the_transaction_usable(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        with pytest.raises(CollectionExists):
            uow.collections.add(collection())
        uow.collections.add(collection("c2"))
        audited(uow)
    with uow:
        assert [c.collection_id for c in uow.collections.page(limit=10)] == ["c1", "c2"]


def test_collections_page_by_id_after_a_cursor(new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow, "b", "a", "d", "c")
    with uow:
        assert [c.collection_id for c in uow.collections.page(limit=2)] == ["a", "b"]
        assert [c.collection_id for c in uow.collections.page(limit=2, after="b")] == \
            ["c", "d"]


def test_policies_are_stored_sorted_without_duplicates(new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        uow.collections.add(collection(policies=("login", "identity_check", "login")))
        audited(uow)
    with uow:
        stored = uow.collections.get("c1")
        assert stored is not None
        assert stored.policies == ("identity_check", "login")
        uow.collections.set_policies("c1", ["watchlist_search", "login"])
        audited(uow)
    with uow:
        stored = uow.collections.get("c1")
    assert stored is not None
    assert stored.policies == ("login", "watchlist_search")


def test_bump_version_counts_up_from_the_stored_version(new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        assert [uow.collections.bump_version("c1") for _ in range(3)] == [1, 2, 3]
        audited(uow)
    with uow:
        stored = uow.collections.get("c1")
    assert stored is not None
    assert stored.version == 3


def test_deleting_a_collection_deletes_its_subjects_faces_and_consents_only(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow, "c1", "c2")
    with uow:
        for cid in ("c1", "c2"):
            uow.subjects.ensure(Subject(cid, "s1", T0))
            uow.faces.add(stored_face("f-" + cid, cid=cid))
            uow.consents.record(Consent(cid, "s1", ConsentBasis.EXPLICIT_CONSENT, "ref", T0))
        audited(uow)
    with uow:
        uow.collections.delete("c1")
        audited(uow)
    with uow:
        assert uow.collections.get("c1") is None
        assert uow.subjects.ids("c1") == []
        assert uow.subjects.ids("c2") == ["s1", "s2"]
        assert uow.faces.get("c1", "f-c1") is None
        assert uow.consents.current("c1", "s1") is None
        assert uow.consents.current("c2", "s1") is not None
        assert uow.collections.stats("c2").face_count == 1


def test_ensure_keeps_the_first_subject_and_stats_count_subjects_and_faces(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        first = uow.subjects.ensure(Subject("c1", "s1", T0))
        again = uow.subjects.ensure(Subject("c1", "s1", T0 + timedelta(days=1)))
        uow.subjects.ensure(Subject("c1", "s0", T0))
        uow.faces.add(stored_face("f1"))
        uow.faces.add(stored_face("f2"))
        audited(uow)
    assert again == first
    with uow:
        assert uow.subjects.ids("c1") == ["s0", "s1", "s2"]
        stats = uow.collections.stats("c1")
        assert (stats.face_count, stats.subject_count) == (2, 3)
        assert uow.subjects.delete("c1", "s0") is True
        assert uow.subjects.delete("c1", "nobody") is False


def test_face_listings_hide_embeddings_but_get_and_list_for_subject_keep_them(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        uow.faces.add(stored_face("f2", at=T0))
        uow.faces.add(stored_face("f1", at=T0 + timedelta(seconds=1)))
        uow.faces.add(stored_face("f3", subject_id="s2", sha="b" * 64))
        audited(uow)
    with uow:
        page = uow.faces.page("c1", limit=10)
        assert [f.face_id for f in page] == ["f1", "f2", "f3"]
        assert all(f.embedding is None for f in page)
        assert [f.face_id for f in uow.faces.page("c1", limit=1, after="f1")] == ["f2"]
        assert [f.face_id for f in uow.faces.page("c1", subject_id="s2", limit=9)] == ["f3"]
        listed = uow.faces.list_for_subject("c1", "s1")
        assert [f.face_id for f in listed] == ["f2", "f1"]  # oldest first
        assert all(f.embedding == b"\x00\x00\x80?" for f in listed)
        got = uow.faces.get("c1", "f3")
        assert got is not None
        assert got.vector() == (1.0,)
        assert [f.face_id for f in uow.faces.find_by_image("c1", "b" * 64)] == ["f3"]


def test_embeddings_since_a_version_are_in_version_order(new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        uow.faces.add(stored_face("fa", version=3))
        uow.faces.add(stored_face("fb", version=1))
        uow.faces.add(stored_face("fc", version=2))
        uow.faces.add(stored_face("fr", version=4, embedding=None, engine_face_id="e1"))
        audited(uow)
    with uow:
        assert [r[0] for r in uow.faces.embeddings("c1")] == ["fa", "fb", "fc"]
        assert [r[0] for r in uow.faces.embeddings_since("c1", 1)] == ["fc", "fa"]
        assert uow.faces.embedding_count("c1") == 3
        assert list(uow.faces.by_engine_face_ids("c1", ["e1", "nope"])) == ["e1"]
        assert uow.faces.engine_face_ids("c1", ["fa", "fr"]) == ["e1"]
        assert uow.faces.subject_face_ids("c1", "s1") == [
            ("fa", None), ("fb", None), ("fc", None), ("fr", "e1")]


def test_deleting_faces_returns_only_those_that_existed(new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        for face_id, subject in (("f1", "s1"), ("f2", "s1"), ("f3", "s2")):
            uow.faces.add(stored_face(face_id, subject))
        audited(uow)
    with uow:
        assert sorted(uow.faces.delete("c1", ["f1", "missing"])) == ["f1"]
        assert uow.faces.delete("c1", []) == []
        assert sorted(uow.faces.delete_for_subject("c1", "s1")) == ["f2"]
        audited(uow)
    with uow:
        assert [f.face_id for f in uow.faces.page("c1", limit=9)] == ["f3"]


def test_the_latest_consent_is_in_force_and_erasure_counts_them(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow)
    with uow:
        uow.consents.record(Consent("c1", "s1", ConsentBasis.EXPLICIT_CONSENT, "r1", T0))
        uow.consents.record(Consent("c1", "s1", ConsentBasis.EMPLOYMENT, "r2",
                                    T0 + timedelta(hours=1), recorded_by="k9"))
        audited(uow)
    with uow:
        current = uow.consents.current("c1", "s1")
        assert current is not None
        assert (current.basis, current.reference, current.recorded_by) == \
            (ConsentBasis.EMPLOYMENT, "r2", "k9")
        assert uow.consents.delete_for_subject("c1", "s1") == 2
        assert uow.consents.current("c1", "s1") is None


# --- decisions, reviews, lockouts -------------------------------------------------------

def decision(did: str = "d1", **kw: object) -> Decision:
    values: dict[str, object] = {
        "id": did, "kind": DecisionKind.VERIFY, "outcome": Outcome.PENDING_REVIEW,
        "reasons": ("review_required",), "policy_name": "identity_check", "policy_version": "v1",
        "threshold": 80.0, "collection_id": "c1", "subject_id": "s1", "similarity": 91.5,
        "candidates": (Candidate("f1", "s1", 91.5),), "review_id": "r1", "requester_key_id": "k1",
        "requester_role": "app", "probe_sha256": "c" * 64, "created_at": T0, "engine": "fake",
        "model_version": "fake-1"}
    values.update(kw)
    return Decision(**values)  # type: ignore[arg-type]


def review(rid: str = "r1", **kw: object) -> Review:
    values: dict[str, object] = {
        "id": rid, "decision_id": "d-" + rid, "kind": DecisionKind.VERIFY,
        "policy_name": "identity_check", "policy_version": "v1", "collection_id": "c1",
        "subject_id": "s1", "requester_key_id": "k1", "required_reviewers": 1,
        "status": ReviewStatus.PENDING, "created_at": T0, "expires_at": T0 + timedelta(hours=72),
        "retention_days": 30, "candidates": (Candidate("f1", "s1", 91.5),),
        "evidence": ("probe.jpg",)}
    values.update(kw)
    return Review(**values)  # type: ignore[arg-type]


def test_a_decision_reads_back_and_update_changes_only_its_outcome_fields(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        uow.decisions.add(decision())
        audited(uow)
    with uow:
        assert uow.decisions.get("d1") == decision()
        final = replace(decision(), outcome=Outcome.MATCH, reasons=("confirmed",),
                        matched_face_id="f1", decided_at=T0 + timedelta(hours=1),
                        similarity=1.0, threshold=1.0)
        uow.decisions.update(final)
        audited(uow)
    with uow:
        assert uow.decisions.get("d1") == replace(final, similarity=91.5, threshold=80.0)
        assert uow.decisions.get("nope") is None


def add_review(uow: UnitOfWork, r: Review) -> None:
    """A review with the decision it reviews (the SQL store's foreign key)."""
    uow.decisions.add(decision(r.decision_id, collection_id=r.collection_id, review_id=None))
    uow.reviews.add(r)


def test_one_vote_per_reviewer_key_and_votes_read_back_in_order(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow, "c1", "c2")
    later = ReviewVote("k3", "reviewer", Vote.REJECT, "not them", None,
                       T0 + timedelta(minutes=2))
    first = ReviewVote("k2", "reviewer", Vote.CONFIRM, "same person", "f1",
                       T0 + timedelta(minutes=1))
    with uow:
        add_review(uow, review(required_reviewers=2))
        uow.reviews.add_vote("r1", later)
        uow.reviews.add_vote("r1", first)
        with pytest.raises(AlreadyVoted):
            uow.reviews.add_vote("r1", replace(first, vote=Vote.REJECT))
        audited(uow)
    with uow:
        got = uow.reviews.get("r1", for_update=True)
    assert got is not None
    assert got.votes == (first, later)
    assert got == review(required_reviewers=2, votes=(first, later))


def test_closing_a_review_stores_its_end(new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        add_review(uow, review())
        audited(uow)
    end = T0 + timedelta(hours=2)
    closed = replace(review(), status=ReviewStatus.CONFIRMED, closed_at=end,
                     evidence_expires_at=end + timedelta(days=30), flagged=True)
    with uow:
        uow.reviews.close(closed)
        audited(uow)
    with uow:
        assert uow.reviews.get("r1") == closed
        assert uow.reviews.evidence_due(end + timedelta(days=29), 10) == []
        assert [r.id for r in uow.reviews.evidence_due(end + timedelta(days=30), 10)] == ["r1"]
        uow.reviews.mark_evidence_purged("r1")
        audited(uow)
    with uow:
        assert uow.reviews.evidence_due(end + timedelta(days=31), 10) == []
        assert uow.reviews.with_evidence_in("c1") == []


def test_review_pages_are_oldest_first_within_the_readers_scope(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow, "c1", "c2")
    with uow:
        add_review(uow, review("r3", created_at=T0 + timedelta(minutes=3)))
        add_review(uow, review("r1", created_at=T0 + timedelta(minutes=1)))
        add_review(uow, review("r2", created_at=T0 + timedelta(minutes=1),
                               collection_id="c2", policy_name="watchlist_search"))
        add_review(uow, review("rx", collection_id=None, kind=DecisionKind.COMPARE))
        audited(uow)

    def ids(**kw: object) -> list[str]:
        args: dict[str, object] = {"status": None, "policy_name": None, "created_before": None,
                                       "collection_ids": None, "limit": 10, "after": None}
        args.update(kw)
        return [r.id for r in uow.reviews.page(**args)]  # type: ignore[arg-type]

    with uow:
        assert ids() == ["rx", "r1", "r2", "r3"]
        assert ids(after="r1", limit=1) == ["r2"]
        assert ids(collection_ids=["c1"]) == ["r1", "r3"]  # no compare review (no collection)
        assert ids(policy_names=["watchlist_search"]) == ["r2"]
        assert ids(policy_name="identity_check", created_before=T0 + timedelta(minutes=2)) \
            == ["rx", "r1"]
        assert all(r.votes == () for r in uow.reviews.page(
            status=ReviewStatus.PENDING, policy_name=None, created_before=None,
            collection_ids=None, limit=10, after=None))


def test_waiting_and_expiring_reviews_split_at_the_deadline(
        new_uow: UnitOfWorkFactory) -> None:
    uow = with_collection(new_uow, "c1", "c2")
    with uow:
        add_review(uow, review("early", expires_at=T0 + timedelta(hours=1)))
        add_review(uow, review("late", expires_at=T0 + timedelta(hours=5)))
        add_review(uow, review("closed", status=ReviewStatus.REJECTED,
                               expires_at=T0 + timedelta(hours=1)))
        audited(uow)
    with uow:
        now = T0 + timedelta(hours=1)
        assert uow.reviews.count_waiting(now, None) == 1
        assert uow.reviews.count_waiting(T0, None) == 2
        assert uow.reviews.count_waiting(T0, ["other"]) == 0
        assert [r.id for r in uow.reviews.due_for_expiry(now, 10)] == ["early"]
        assert sorted(r.id for r in uow.reviews.with_evidence_in("c1")) == \
            ["closed", "early", "late"]


def test_lockout_state_is_created_on_first_use_and_erased_per_subject(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    k1, k2 = LockoutKey("c1", "s1", "login"), LockoutKey("c1", "s1", "identity_check")
    k3 = LockoutKey("c1", "s2", "login")
    with uow:
        assert uow.lockouts.get(k1) is None
        state = uow.lockouts.get_for_update(k1)
        assert (state.failures, state.lock_count, state.locked_until) == (0, 0, None)
        uow.lockouts.save(replace(state, failures=3, last_failure_at=T0))
        uow.lockouts.get_for_update(k2)
        uow.lockouts.get_for_update(k3)
        audited(uow)
    with uow:
        assert uow.lockouts.get_for_update(k1).failures == 3
        assert sorted(s.key.policy_name for s in uow.lockouts.for_subject("c1", "s1")) == \
            ["identity_check", "login"]
        assert len(uow.lockouts.for_subjects("c1", ["s1", "s2", "s9"])) == 3
        assert uow.lockouts.for_subjects("c1", []) == []
        assert uow.lockouts.delete(k3) is True
        assert uow.lockouts.delete(k3) is False
        assert uow.lockouts.delete_for_subject("c1", "s1") == 2
        audited(uow)
    with uow:
        assert uow.lockouts.for_subject("c1", "s1") == []


# --- API keys ---------------------------------------------------------------------------

def api_key(kid: str, at: datetime = T0, **kw: object) -> ApiKey:
    values: dict[str, object] = {"id": kid, "name": "n-" + kid, "role": "reviewer",
                                     "key_hash": "h" * 64, "created_at": at, "owner": "alice"}
    values.update(kw)
    return ApiKey(**values)  # type: ignore[arg-type]


def test_keys_list_oldest_first_and_a_revocation_keeps_its_first_time(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    scoped = api_key("b2", T0, collections=frozenset({"c1"}), policies=frozenset({"login"}))
    with uow:
        uow.api_keys.add(api_key("a1", T0 + timedelta(seconds=1)))
        uow.api_keys.add(scoped)
        audited(uow)
    with uow:
        assert [k.id for k in uow.api_keys.list()] == ["b2", "a1"]
        assert uow.api_keys.get("b2") == scoped
        uow.api_keys.lock()
        uow.api_keys.revoke("a1", T0 + timedelta(hours=1))
        uow.api_keys.revoke("a1", T0 + timedelta(hours=2))
        audited(uow)
    with uow:
        assert uow.api_keys.count() == 2
        assert [k.id for k in uow.api_keys.list(include_revoked=False)] == ["b2"]
        revoked = uow.api_keys.get("a1")
        assert revoked is not None
        assert revoked.revoked_at == T0 + timedelta(hours=1)
