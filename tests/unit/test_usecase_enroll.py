"""Use case: index the faces of an image under a subject (services/enroll.py), on fakes."""

from __future__ import annotations

import pytest

from faceapi.domain.collections import ConsentBasis
from faceapi.domain.errors import FaceApiError, InvalidImage, NotFound
from faceapi.services.collections import ConsentInput
from faceapi.services.enroll import IndexFacesRequest, IndexFacesResult, index_faces
from tests.unit.usecase_world import OPERATOR, World


def enroll(w: World, image: bytes, subject: str = "s1", cid: str = "c1",
           **kw: object) -> IndexFacesResult:
    return index_faces(IndexFacesRequest(collection_id=cid, image=image, subject_id=subject,
                                         **kw),  # type: ignore[arg-type]
                       actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                       decoder=w.decoder, blobs=w.blobs)


def test_enrolling_stores_the_face_with_its_descriptor_and_one_audit_event() -> None:
    w = World()
    w.collection()
    result = enroll(w, w.photo(1))
    [record] = result.face_records
    stored = w.store.state.faces[("c1", record.face.face_id)]
    assert stored.subject_id == "s1"
    assert stored.embedding is not None
    assert stored.added_version == 1 == w.store.state.collections["c1"].version
    assert ("c1", "s1") in w.store.state.subjects
    assert w.store.actions == ["face.index"]
    assert w.store.audit.committed[0].id == result.audit_event_id


def test_an_image_without_a_face_stores_nothing_but_is_audited() -> None:
    w = World()
    w.collection()
    result = enroll(w, b"no face here")
    assert result.face_records == []
    assert w.store.state.faces == {}
    assert w.store.state.subjects == {}
    assert [r.event.outcome for r in w.store.audit.committed] == ["no_face_indexed"]


def test_a_collection_that_requires_consent_refuses_a_subject_without_it() -> None:
    w = World()
    w.collection(consent_required=True)
    with pytest.raises(FaceApiError) as refused:
        enroll(w, w.photo(1))
    assert refused.value.code == "consent_required"
    assert w.store.state.faces == {}
    assert w.store.audit.committed == []
    assert w.engine.calls == []  # refused before any engine time was spent


def test_consent_given_with_the_enrollment_is_recorded_with_the_faces() -> None:
    w = World()
    w.collection(consent_required=True)
    enroll(w, w.photo(1), consent=ConsentInput(basis=ConsentBasis.EXPLICIT_CONSENT,
                                               reference="form-17"))
    [consent] = w.store.state.consents
    assert (consent.subject_id, consent.reference) == ("s1", "form-17")
    assert len(w.store.state.faces) == 1
    assert sorted(w.store.actions) == ["face.index", "subject.consent"]


def test_enrolling_into_an_unknown_collection_is_not_found() -> None:
    w = World()
    with pytest.raises(NotFound):
        enroll(w, w.photo(1), cid="nope")


def test_an_undecodable_image_stores_nothing() -> None:
    w = World()
    w.collection()
    with pytest.raises(InvalidImage):
        enroll(w, b"broken bytes")
    assert w.store.state.faces == {}
    assert w.store.audit.committed == []


def test_face_crops_written_for_a_failed_commit_are_deleted_again() -> None:
    w = World()
    w.collection(keep_face_crops=True)
    w.store.audit.append = _refuse  # type: ignore[method-assign, assignment]
    with pytest.raises(RuntimeError):
        enroll(w, w.photo(1))
    assert w.blobs.blobs == {}
    assert w.store.state.faces == {}


def test_face_crops_are_kept_for_a_committed_enrollment() -> None:
    w = World()
    w.collection(keep_face_crops=True)
    result = enroll(w, w.photo(1))
    [record] = result.face_records
    assert any(record.face.face_id in key for key in w.blobs.blobs)


def _refuse(event: object) -> object:
    raise RuntimeError("audit log down")
