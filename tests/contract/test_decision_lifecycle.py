"""Decision rows' lifecycle in the repositories (fake and SQL): pseudonymised when their
subject is erased, deleted after retention unless their review still holds evidence."""

from __future__ import annotations

from datetime import timedelta

from faceapi.domain.decisions import Candidate, DecisionKind
from faceapi.services.ports import UnitOfWorkFactory
from tests.contract.test_repositories import T0, audited, decision, review


def test_pseudonymising_a_subject_blanks_its_ids_and_keeps_everyone_elses(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    search = decision("d2", kind=DecisionKind.SEARCH, subject_id=None, review_id=None,
                      matched_face_id="f1",
                      candidates=(Candidate("f1", "s1", 95.0), Candidate("f2", "s2", 80.0)))
    other = decision("d3", subject_id="s2", review_id=None,
                     candidates=(Candidate("f2", "s2", 90.0),), matched_face_id="f2")
    elsewhere = decision("d4", collection_id="c2", review_id=None)
    with uow:
        for d in (decision(matched_face_id="f1"), search, other, elsewhere):
            uow.decisions.add(d)
        audited(uow)
    with uow:
        assert uow.decisions.pseudonymise_subject("c1", "s1") == 2
        audited(uow)
    with uow:
        own = uow.decisions.get("d1")
        assert own is not None
        assert (own.subject_id, own.matched_face_id) == (None, None)
        assert own.candidates == (Candidate("", "", 91.5),)
        assert own.similarity == 91.5
        assert own.outcome == decision().outcome
        found = uow.decisions.get("d2")
        assert found is not None
        assert found.candidates == (Candidate("", "", 95.0), Candidate("f2", "s2", 80.0))
        assert found.matched_face_id is None
        assert uow.decisions.get("d3") == other
        assert uow.decisions.get("d4") == elsewhere
        assert uow.decisions.pseudonymise_subject("c1", "s1") == 0  # nothing left to do


def test_pseudonymising_a_whole_collection_blanks_every_subject(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    with uow:
        uow.decisions.add(decision(review_id=None))
        uow.decisions.add(decision("d2", subject_id="s2", review_id=None,
                                   candidates=(Candidate("f2", "s2", 70.0),)))
        audited(uow)
    with uow:
        assert uow.decisions.pseudonymise_subject("c1", None) == 2
        audited(uow)
    with uow:
        for did in ("d1", "d2"):
            row = uow.decisions.get(did)
            assert row is not None
            assert row.subject_id is None
            assert {c.subject_id for c in row.candidates} == {""}


def test_deleting_before_a_time_spares_newer_rows_other_policies_and_held_evidence(
        new_uow: UnitOfWorkFactory) -> None:
    uow = new_uow()
    old = T0 - timedelta(days=400)
    with uow:
        uow.decisions.add(decision("old", created_at=old, review_id=None))
        uow.decisions.add(decision("new", created_at=T0, review_id=None))
        uow.decisions.add(decision("login", created_at=old, review_id=None,
                                   policy_name="login"))
        uow.decisions.add(decision("held", created_at=old, review_id="r-held"))
        uow.reviews.add(review("r-held", decision_id="held", created_at=old))
        uow.decisions.add(decision("purged", created_at=old, review_id="r-purged"))
        uow.reviews.add(review("r-purged", decision_id="purged", created_at=old,
                               evidence_purged=True))
        audited(uow)
    with uow:
        assert sorted(uow.decisions.policy_names()) == ["identity_check", "login"]
        assert uow.decisions.delete_before("identity_check", T0 - timedelta(days=365)) == 2
        audited(uow)
    with uow:
        assert uow.decisions.get("old") is None
        assert uow.decisions.get("purged") is None
        assert uow.reviews.get("r-purged") is None  # the review goes with its decision
        for kept in ("new", "login", "held"):
            assert uow.decisions.get(kept) is not None
        assert uow.reviews.get("r-held") is not None
