"""Model changes without re-enrolling (services/reindex.py, and the like-with-like rule
in search and verify), on fakes: the fake engine's template version "fake-2" computes
other descriptors (the scripted ones reversed) from the same chips."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from faceapi.adapters.search.index import BruteForceIndex, StoreIndexSource
from faceapi.domain.collections import embedding_to_bytes
from faceapi.domain.decisions import Decision, Outcome
from faceapi.domain.errors import FaceApiError
from faceapi.services.collections import CreateCollectionRequest, create_collection
from faceapi.services.enroll import IndexFacesRequest, index_faces
from faceapi.services.erase import erase_subject
from faceapi.services.reindex import (
    FaceChipEraser,
    ReindexProgress,
    ReindexReport,
    reindex_collection,
)
from faceapi.services.search import SearchRequest, SearchResult, search
from faceapi.services.verify import VerifyRequest, verify
from tests.fakes import unit_vector
from tests.unit.usecase_world import APP, OPERATOR, World


def enroll(w: World, subject: str, seed: int) -> str:
    result = index_faces(IndexFacesRequest(collection_id="c1", image=w.photo(seed),
                                           subject_id=subject),
                         actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                         decoder=w.decoder, blobs=w.blobs)
    return result.face_records[0].face.face_id


def world_of(*subjects: tuple[str, int]) -> World:
    w = World()
    w.collection(policies=("login", "photo_tagging"))
    for subject, seed in subjects:
        enroll(w, subject, seed)
    return w


def find(w: World, seed: int, tag: str = "probe") -> SearchResult:
    return search(SearchRequest(collection_id="c1", image=w.other_photo(seed, tag),
                                policy="photo_tagging"),
                  actor=APP, engine=w.engine, uow=w.store.uow(), index=w.index,
                  policies=w.policies, clock=w.clock, blobs=w.blobs, decoder=w.decoder)


def verify_decision(w: World, seed: int, subject: str, tag: str = "selfie") -> Decision:
    return verify(VerifyRequest(collection_id="c1", subject_id=subject,
                                image=w.other_photo(seed, tag), policy="login"),
                  actor=APP, engine=w.engine, uow=w.store.uow(), policies=w.policies,
                  clock=w.clock, blobs=w.blobs, decoder=w.decoder)


def reindex(w: World, *, to_version: str = "current", batch_size: int = 64,
            progress: Callable[[ReindexProgress], None] | None = None) -> ReindexReport:
    return reindex_collection("c1", actor=OPERATOR, engine=w.engine, uow=w.store.uow,
                              to_version=to_version, batch_size=batch_size,
                              progress=progress)


def templates(w: World) -> dict[str, str]:
    return {f.face_id: f.template_version for f in w.store.state.faces.values()}


def test_each_enrolled_face_records_its_template_version_and_keeps_its_chip() -> None:
    w = world_of(("alice", 1))
    [stored] = w.store.state.faces.values()
    assert stored.template_version == "fake-1"
    chip = w.store.state.chips[("c1", stored.face_id)]
    assert (chip.subject_id, chip.chip_format) == ("alice", "fake-chip")


def test_a_collection_with_keep_chips_off_keeps_none() -> None:
    w = World()
    create_collection(CreateCollectionRequest("c1", keep_chips=False, consent_required=False,
                                              policies=("login", "photo_tagging")),
                      actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock)
    enroll(w, "alice", 1)
    assert w.store.state.chips == {}
    assert w.store.state.faces


def test_a_detector_change_alone_keeps_every_face_searchable_and_verifiable() -> None:
    w = world_of(("alice", 1))
    w.engine.detector = "cnn"  # the model version changes, the template version does not
    assert w.engine.model_version != w.store.state.collections["c1"].model_version
    assert [m.face.subject_id for m in find(w, 1).face_matches] == ["alice"]
    assert verify_decision(w, 1, "alice").outcome is Outcome.MATCH


def test_after_a_model_change_search_compares_only_migrated_faces_and_says_how_many_not() -> None:
    w = world_of(("alice", 1), ("bob", 2))
    w.engine.template = "fake-2"
    result = find(w, 1)
    # Alice's old descriptor is never compared with a fake-2 probe: not found, and the
    # decision's audit event counts the faces the search could not look at.
    assert result.decision.candidates == ()
    [event] = [r.event for r in w.store.audit.committed if r.event.action == "search.decision"]
    assert event.scores["faces_not_migrated"] == 2


def test_after_a_model_change_verify_says_template_not_migrated_instead_of_no_match() -> None:
    w = world_of(("alice", 1))
    w.engine.template = "fake-2"
    decision = verify_decision(w, 1, "alice")
    assert decision.outcome is Outcome.REJECTED
    assert decision.reasons == ("template_not_migrated",)
    assert w.store.state.lockouts == {}  # not a failed match: nothing was compared
    # An unknown subject still answers like one: nothing enrolled, nothing compared.
    assert verify_decision(w, 1, "nobody", tag="n").outcome is Outcome.NO_MATCH


def test_reindex_moves_every_face_to_the_new_version_and_search_and_verify_work_again() -> None:
    w = world_of(("alice", 1), ("bob", 2), ("carol", 3))
    w.engine.template = "fake-2"
    steps: list[ReindexProgress] = []
    report = reindex(w, batch_size=2, progress=steps.append)
    assert (report.reindexed, report.already_current, report.without_chip,
            report.remaining) == (3, 0, 0, 0)
    assert set(templates(w).values()) == {"fake-2"}
    assert [s.done for s in steps] == [2, 3]
    for face in w.store.state.faces.values():
        # The descriptor is the new model's, computed from the kept chip.
        seed = {"alice": 1, "bob": 2, "carol": 3}[face.subject_id]
        assert face.embedding == embedding_to_bytes(tuple(reversed(unit_vector(seed))))
    assert [m.face.subject_id for m in find(w, 2).face_matches] == ["bob"]
    assert verify_decision(w, 3, "carol").outcome is Outcome.MATCH


def test_reindex_is_audited_with_counts_and_no_biometric_data() -> None:
    w = world_of(("alice", 1), ("bob", 2))
    w.engine.template = "fake-2"
    reindex(w, batch_size=1)
    events = [r.event for r in w.store.audit.committed
              if r.event.action == "collection.reindex"]
    assert [e.outcome for e in events] == ["started", "batch", "batch", "finished"]
    assert events[0].scores == {"faces_to_reindex": 2, "faces_current": 0}
    assert events[-1].scores["reindexed_count"] == 2
    assert events[-1].details["template_version"] == "fake-2"
    # Every face moved: the collection now records the model version it holds.
    assert (events[-1].details["old_model_version"],
            events[-1].details["new_model_version"]) == ("fake-1", "fake-2/scripted")
    assert w.store.state.collections["c1"].model_version == "fake-2/scripted"
    text = repr([(e.scores, e.details) for e in events])
    assert "embedding" not in text
    assert "chip" not in text.replace("without_chip", "")


def test_a_second_run_re_embeds_nothing_and_a_run_after_new_enrollments_only_those() -> None:
    w = world_of(("alice", 1), ("bob", 2))
    w.engine.template = "fake-2"
    reindex(w)
    before = dict(w.store.state.faces)
    again = reindex(w)
    assert (again.reindexed, again.already_current) == (0, 2)
    assert w.store.state.faces == before
    w.engine.template = "fake-1"
    enroll(w, "carol", 3)  # enrolled under the old model by a server not yet switched
    w.engine.template = "fake-2"
    assert reindex(w).reindexed == 1


def test_a_run_interrupted_between_batches_resumes_where_it_stopped() -> None:
    w = world_of(("alice", 1), ("bob", 2), ("carol", 3))
    w.engine.template = "fake-2"

    def stop_after_first(step: ReindexProgress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reindex(w, batch_size=2, progress=stop_after_first)
    assert sorted(templates(w).values()) == ["fake-1", "fake-2", "fake-2"]
    calls = len(w.engine.calls)
    report = reindex(w, batch_size=2)
    assert (report.reindexed, report.already_current) == (1, 2)
    assert w.engine.calls[calls:] == [("embed_chips", "1")]  # only the face left


def test_faces_without_a_chip_are_reported_for_re_enrollment_and_left_as_they_are() -> None:
    w = world_of(("alice", 1), ("bob", 2))
    bob = next(f for f in w.store.state.faces.values() if f.subject_id == "bob")
    del w.store.state.chips[("c1", bob.face_id)]  # enrolled before chips were kept
    w.engine.template = "fake-2"
    report = reindex(w)
    assert (report.reindexed, report.without_chip, report.remaining) == (1, 1, 1)
    assert report.without_chip_ids == (bob.face_id,)
    assert templates(w)[bob.face_id] == "fake-1"
    # A face is left at the old model: the collection still records the old one.
    assert w.store.state.collections["c1"].model_version == "fake-1"


def test_reindex_only_to_the_engines_own_version() -> None:
    w = world_of(("alice", 1))
    w.engine.template = "fake-2"
    with pytest.raises(FaceApiError) as refused:
        reindex(w, to_version="fake-3")
    assert refused.value.code == "invalid_parameter"
    assert reindex(w, to_version="fake-2").reindexed == 1


def test_erasing_a_subject_erases_its_kept_chips_and_counts_them() -> None:
    w = world_of(("alice", 1), ("bob", 2))
    report = erase_subject("c1", "alice", actor=OPERATOR, uow=w.store.uow(),
                           erasers=(FaceChipEraser(),))
    assert [c.subject_id for c in w.store.state.chips.values()] == ["bob"]
    assert report.other["face_chip"] == 1


def test_the_store_index_keeps_one_copy_per_template_version_through_a_reindex() -> None:
    w = world_of(("alice", 1), ("bob", 2))
    index = BruteForceIndex(StoreIndexSource(w.store.uow), w.engine.similarity)
    old_probe = unit_vector(1)
    new_probe = tuple(reversed(unit_vector(1)))
    assert [h.subject_id for h in index.search("c1", old_probe, threshold=99, max_faces=5,
                                               template_version="fake-1")] == ["alice"]
    assert index.search("c1", new_probe, threshold=99, max_faces=5,
                        template_version="fake-2") == []
    w.engine.template = "fake-2"
    reindex(w, batch_size=1)
    assert [h.subject_id for h in index.search("c1", new_probe, threshold=99, max_faces=5,
                                               template_version="fake-2")] == ["alice"]
    assert index.search("c1", old_probe, threshold=99, max_faces=5,
                        template_version="fake-1") == []


def test_the_log_redactor_blanks_a_face_chip_but_keeps_counts_and_ids() -> None:
    from faceapi.entrypoints.web.logging import redact

    event = redact(None, "info", {"event": "x", "chip": b"\x01" * 30, "face_chip": "...",
                                  "pixels": [1, 2], "without_chip_count": 2,
                                  "face_id": "f1"})
    assert [event[k] for k in ("chip", "face_chip", "pixels")] == ["[redacted]"] * 3
    assert (event["without_chip_count"], event["face_id"]) == (2, "f1")
