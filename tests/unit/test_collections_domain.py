"""Collections domain rules: ids, descriptor bytes, the IndexFaces quality filter and
the choice of faces to index."""

from __future__ import annotations

import pytest

from faceapi.domain.collections import (
    QUALITY_BARS,
    QualityFilter,
    UnindexedReason,
    embedding_from_bytes,
    embedding_to_bytes,
    quality_reasons,
    valid_id,
)
from faceapi.domain.faces import EmbeddedFace
from faceapi.services.enroll import select_faces
from tests.fakes import face, unit_vector


def test_a_descriptor_survives_the_trip_through_float32_bytes() -> None:
    vector = unit_vector(3)
    data = embedding_to_bytes(vector)
    assert len(data) == 128 * 4
    assert embedding_from_bytes(data) == pytest.approx(vector, abs=1e-7)


@pytest.mark.parametrize("value", ["alice", "A-1_b.c", "x" * 128])
def test_ids_of_letters_digits_dots_dashes_and_underscores_are_valid(value: str) -> None:
    assert valid_id(value)


@pytest.mark.parametrize("value", ["", "x" * 129, "a/b", "a b", "../etc", "é", "a:b"])
def test_ids_that_could_break_urls_paths_or_reports_are_refused(value: str) -> None:
    assert not valid_id(value)


def test_a_good_face_passes_every_quality_level() -> None:
    for level in QualityFilter:
        assert quality_reasons(face(), level) == []


def test_none_filters_nothing_even_a_tiny_blurred_profile() -> None:
    bad = face(confidence=10, yaw=89, sharpness=1, width_px=5)
    assert quality_reasons(bad, QualityFilter.NONE) == []


def test_auto_is_the_medium_bar() -> None:
    assert QUALITY_BARS[QualityFilter.AUTO] == QUALITY_BARS[QualityFilter.MEDIUM]


def test_each_failed_check_is_named_with_rekognitions_reason() -> None:
    bad = face(confidence=20, yaw=80, sharpness=2, width_px=10)
    assert quality_reasons(bad, QualityFilter.LOW) == [
        UnindexedReason.LOW_CONFIDENCE, UnindexedReason.SMALL_BOUNDING_BOX,
        UnindexedReason.EXTREME_POSE, UnindexedReason.LOW_SHARPNESS]


def test_higher_levels_are_stricter() -> None:
    borderline = face(confidence=70, yaw=35, sharpness=30, width_px=60)
    assert quality_reasons(borderline, QualityFilter.LOW) == []
    assert quality_reasons(borderline, QualityFilter.MEDIUM) == []
    assert set(quality_reasons(borderline, QualityFilter.HIGH)) == {
        UnindexedReason.LOW_CONFIDENCE, UnindexedReason.SMALL_BOUNDING_BOX,
        UnindexedReason.EXTREME_POSE, UnindexedReason.LOW_SHARPNESS}


def _embedded(size: float, sharpness: float = 80.0) -> EmbeddedFace:
    return EmbeddedFace(detail=face(size=size, sharpness=sharpness),
                        embedding=unit_vector(int(size * 100)))


def test_max_faces_keeps_the_largest_faces_and_reports_the_rest() -> None:
    faces = [_embedded(0.1), _embedded(0.5), _embedded(0.3)]
    kept, dropped = select_faces(faces, QualityFilter.NONE, max_faces=2)
    assert [f.detail.bounding_box.width for f in kept] == [0.5, 0.3]
    assert [(d.reasons, d.detail.bounding_box.width) for d in dropped] == [
        ((UnindexedReason.EXCEEDS_MAX_FACES,), 0.1)]


def test_the_quality_filter_runs_before_max_faces() -> None:
    blurred_big = _embedded(0.6, sharpness=1.0)
    faces = [blurred_big, _embedded(0.2)]
    kept, dropped = select_faces(faces, QualityFilter.AUTO, max_faces=1)
    assert [f.detail.bounding_box.width for f in kept] == [0.2]
    assert dropped[0].reasons == (UnindexedReason.LOW_SHARPNESS,)


def test_a_face_without_a_descriptor_is_not_indexed() -> None:
    kept, dropped = select_faces([EmbeddedFace(detail=face(), embedding=())],
                                 QualityFilter.NONE, None)
    assert kept == []
    assert dropped[0].reasons == (UnindexedReason.LOW_FACE_QUALITY,)
