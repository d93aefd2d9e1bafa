"""Enrollment warnings (services/enrollment_checks.py): the operator is told when a new
face makes a poor template under the collection's policies; nothing is refused."""

from __future__ import annotations

from faceapi.domain.policies import NO_POLICIES, PolicySet
from faceapi.services.enroll import IndexFacesRequest, IndexFacesResult, index_faces
from tests.fakes import ScriptedFace, face, unit_vector
from tests.unit.usecase_world import OPERATOR, World


def enroll(w: World, image: bytes, subject: str = "s1",
           policies: PolicySet | None = None) -> IndexFacesResult:
    return index_faces(IndexFacesRequest(collection_id="c1", image=image, subject_id=subject),
                       actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                       decoder=w.decoder, blobs=w.blobs,
                       policies=w.policies if policies is None else policies)


def last_event_details(w: World) -> dict[str, object]:
    return dict(w.store.audit.committed[-1].event.details)


def test_another_persons_photo_under_an_enrolled_subject_is_enrolled_with_a_warning() -> None:
    w = World()
    w.collection()
    enroll(w, w.photo(1))
    result = enroll(w, w.photo(2))
    assert len(result.face_records) == 1  # warned, not refused: the operator decides
    [warning] = result.warnings
    assert warning.startswith("inconsistent_with_subject:")
    assert "below the lowest threshold bound here (80, policy 'identity_check')" in warning
    event = w.store.audit.committed[-1].event
    assert event.details["template_warnings"] == ["inconsistent_with_subject"]
    assert event.scores["subject_similarity"] < 80
    # The audit event carries codes and a score, never a descriptor.
    assert all(not isinstance(v, (list, tuple)) for v in event.scores.values())
    assert all(isinstance(x, str) for v in event.details.values()
               if isinstance(v, (list, tuple)) for x in v)


def test_the_same_persons_second_photo_gives_no_warning_and_records_its_similarity() -> None:
    w = World()
    w.collection()
    enroll(w, w.photo(1))
    result = enroll(w, w.other_photo(1, "second"))
    assert result.warnings == ()
    event = w.store.audit.committed[-1].event
    assert "template_warnings" not in event.details
    assert event.scores["subject_similarity"] == 100.0


def test_a_face_a_bound_policy_would_refuse_as_a_probe_is_a_poor_template() -> None:
    w = World()
    w.collection(policies=("login",))
    small = b"small face"
    w.engine.script(small, [ScriptedFace(face(width_px=40), unit_vector(1))])
    result = enroll(w, small)
    assert len(result.face_records) == 1
    [warning] = result.warnings
    assert warning.startswith("poor_template:")
    assert "'login'" in warning
    assert "small_face" in warning
    assert last_event_details(w)["template_warnings"] == ["poor_template"]


def test_the_first_face_of_a_subject_has_nothing_to_be_inconsistent_with() -> None:
    w = World()
    w.collection()
    result = enroll(w, w.photo(1))
    assert result.warnings == ()
    assert "subject_similarity" not in w.store.audit.committed[-1].event.scores


def test_without_the_policies_in_force_nothing_is_checked() -> None:
    w = World()
    w.collection()
    enroll(w, w.photo(1), policies=NO_POLICIES)
    assert enroll(w, w.photo(2), policies=NO_POLICIES).warnings == ()
