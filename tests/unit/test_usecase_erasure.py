"""Use case: erase a subject (services/erase.py), on fakes."""

from __future__ import annotations

import pytest

from faceapi.domain.collections import ConsentBasis
from faceapi.domain.errors import NotFound
from faceapi.domain.lockout import LockoutKey, LockoutState
from faceapi.services.collections import ConsentInput
from faceapi.services.enroll import IndexFacesRequest, index_faces
from faceapi.services.erase import erase_subject
from faceapi.services.ports import ErasedData, UnitOfWork
from tests.unit.usecase_world import ADMIN, OPERATOR, World


def enroll(w: World, subject: str, seed: int) -> None:
    index_faces(IndexFacesRequest(collection_id="c1", image=w.photo(seed), subject_id=subject,
                                  consent=ConsentInput(ConsentBasis.EXPLICIT_CONSENT, "f1")),
                actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                decoder=w.decoder, blobs=w.blobs)


def test_erasing_a_subject_deletes_its_faces_consents_and_row_and_is_audited() -> None:
    w = World()
    w.collection(consent_required=True)
    enroll(w, "s1", 1)
    enroll(w, "s2", 2)
    version = w.store.state.collections["c1"].version
    report = erase_subject("c1", "s1", actor=ADMIN, uow=w.store.uow())
    assert (report.face_count, report.consent_count) == (1, 1)
    assert {f.subject_id for f in w.store.state.faces.values()} == {"s2"}
    assert [c.subject_id for c in w.store.state.consents] == ["s2"]
    assert ("c1", "s1") not in w.store.state.subjects
    assert w.store.state.collections["c1"].version == version + 1
    assert w.store.actions[-1] == "subject.erase"
    assert w.store.audit.committed[-1].id == report.audit_event_id


def test_erasing_a_subject_nobody_knows_is_not_found_and_records_nothing() -> None:
    w = World()
    w.collection()
    before = list(w.store.actions)
    with pytest.raises(NotFound):
        erase_subject("c1", "ghost", actor=ADMIN, uow=w.store.uow())
    assert w.store.actions == before


def test_erasers_run_in_the_same_transaction_and_their_cleanups_after_commit() -> None:
    w = World()
    w.collection()
    enroll(w, "s1", 1)
    w.store.state.lockouts[LockoutKey("c1", "s1", "login")] = \
        LockoutState(LockoutKey("c1", "s1", "login"), failures=3)
    cleaned: list[str] = []

    def lockouts(uow: UnitOfWork, collection_id: str, subject_id: str | None) -> ErasedData:
        n = uow.lockouts.delete_for_subject(collection_id, subject_id)
        return ErasedData(counts={"lockout": n},
                          after_commit=(lambda: cleaned.append("done"),))

    report = erase_subject("c1", "s1", actor=ADMIN, uow=w.store.uow(), erasers=(lockouts,))
    assert report.other == {"lockout": 1}
    assert w.store.state.lockouts == {}
    assert cleaned == ["done"]
    assert w.store.audit.committed[-1].event.scores["lockout_count"] == 1


def test_the_search_index_copy_is_dropped_after_the_erasure() -> None:
    w = World()
    w.collection()
    enroll(w, "s1", 1)
    dropped: list[str] = []
    erase_subject("c1", "s1", actor=ADMIN, uow=w.store.uow(), on_erased=dropped.append)
    assert dropped == ["c1"]
