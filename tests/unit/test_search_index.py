"""The in-process search index: exact nearest faces, scored by the engine's own
similarity, rebuilt when the collection's version moves on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from faceapi.adapters.search.index import BruteForceIndex, Delta, Snapshot, snapshot_from_rows
from faceapi.domain.collections import embedding_to_bytes
from faceapi.domain.errors import InvalidParameter, NotFound
from tests.fakes import FakeEngine, unit_vector


@dataclass
class FakeSource:
    """Collections in memory: each row remembers the version it was added at, like the
    faces table. Counts full snapshots and incremental reads."""

    collections: dict[str, tuple[int, list[tuple[str, str, bytes, int]]]] = field(
        default_factory=dict)
    snapshots: int = 0
    deltas: int = 0

    def put(self, collection_id: str, rows: list[tuple[str, str, tuple[float, ...]]]) -> None:
        """Make the collection hold exactly `rows` (a new version)."""
        version, old = self.collections.get(collection_id, (0, []))
        added_at = {face_id: v for face_id, _, _, v in old}
        version += 1
        self.collections[collection_id] = (version, [
            (f, s, embedding_to_bytes(v), added_at.get(f, version)) for f, s, v in rows])

    def version(self, collection_id: str) -> int | None:
        found = self.collections.get(collection_id)
        return None if found is None else found[0]

    def snapshot(self, collection_id: str,
                 template_version: str | None = None) -> Snapshot | None:
        # Rows of one template version only (tests/unit/test_usecase_reindex.py has
        # the index over several).
        assert template_version is None
        found = self.collections.get(collection_id)
        if found is None:
            return None
        self.snapshots += 1
        return snapshot_from_rows(found[0], [(f, s, b) for f, s, b, _ in found[1]])

    def changes(self, collection_id: str, since: int,
                template_version: str | None = None) -> Delta | None:
        assert template_version is None
        found = self.collections.get(collection_id)
        if found is None:
            return None
        self.deltas += 1
        version, rows = found
        return Delta(version, [(f, s, b) for f, s, b, v in rows if v > since], len(rows))


def _index(source: FakeSource) -> BruteForceIndex:
    return BruteForceIndex(source, FakeEngine().similarity)


def _faces(n: int) -> list[tuple[str, str, tuple[float, ...]]]:
    return [(f"face-{i}", f"subject-{i % 7}", unit_vector(i)) for i in range(n)]


def test_the_probes_own_face_comes_first_with_the_engines_similarity() -> None:
    source = FakeSource()
    source.put("c", _faces(50))
    hits = _index(source).search("c", unit_vector(17), threshold=0, max_faces=3)
    assert hits[0].face_id == "face-17"
    assert hits[0].subject_id == "subject-3"
    assert hits[0].similarity == pytest.approx(100.0, abs=1e-3)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)


def test_results_match_an_exhaustive_comparison_with_the_engine() -> None:
    source = FakeSource()
    rows = _faces(300)
    source.put("c", rows)
    engine = FakeEngine()
    probe = tuple(float(x) for x in np.asarray(unit_vector(5)) * 0.6
                  + np.asarray(unit_vector(6)) * 0.4)
    expected = sorted(((engine.similarity(probe, v), f) for f, _, v in rows), reverse=True)[:10]
    hits = _index(source).search("c", probe, threshold=0, max_faces=10)
    assert [h.face_id for h in hits] == [f for _, f in expected]
    assert [h.similarity for h in hits] == pytest.approx([s for s, _ in expected], abs=1e-4)


def test_faces_below_the_threshold_are_left_out() -> None:
    source = FakeSource()
    source.put("c", _faces(40))
    hits = _index(source).search("c", unit_vector(3), threshold=90, max_faces=10)
    assert [h.face_id for h in hits] == ["face-3"]


def test_max_faces_caps_the_answer() -> None:
    source = FakeSource()
    source.put("c", _faces(40))
    assert len(_index(source).search("c", unit_vector(1), threshold=0, max_faces=5)) == 5


def test_an_empty_collection_finds_nothing() -> None:
    source = FakeSource()
    source.put("c", [])
    assert _index(source).search("c", unit_vector(1), threshold=0, max_faces=5) == []


def test_an_unknown_collection_is_not_found() -> None:
    with pytest.raises(NotFound):
        _index(FakeSource()).search("nope", unit_vector(1), threshold=0, max_faces=5)


def test_the_index_is_built_once_while_the_version_stays_the_same() -> None:
    source = FakeSource()
    source.put("c", _faces(10))
    index = _index(source)
    for _ in range(3):
        index.search("c", unit_vector(1), threshold=0, max_faces=1)
    assert (source.snapshots, source.deltas) == (1, 0)


def test_a_new_version_written_by_another_worker_is_picked_up_on_the_next_search() -> None:
    source = FakeSource()
    source.put("c", _faces(10))
    index = _index(source)
    assert index.search("c", unit_vector(99), threshold=99, max_faces=1) == []
    source.put("c", [*_faces(10), ("face-99", "late", unit_vector(99))])
    hits = index.search("c", unit_vector(99), threshold=99, max_faces=1)
    assert [(h.face_id, h.subject_id) for h in hits] == [("face-99", "late")]
    # Only the new face was read: the first copy was extended, not rebuilt.
    assert (source.snapshots, source.deltas) == (1, 1)


def test_erased_faces_disappear_when_the_version_moves_on() -> None:
    source = FakeSource()
    source.put("c", _faces(10))
    index = _index(source)
    assert index.search("c", unit_vector(4), threshold=99, max_faces=1)
    source.put("c", [row for row in _faces(10) if row[0] != "face-4"])
    assert index.search("c", unit_vector(4), threshold=99, max_faces=1) == []


def test_a_deleted_collection_is_forgotten() -> None:
    source = FakeSource()
    source.put("c", _faces(10))
    index = _index(source)
    index.search("c", unit_vector(4), threshold=0, max_faces=1)
    del source.collections["c"]
    with pytest.raises(NotFound):
        index.search("c", unit_vector(4), threshold=0, max_faces=1)


def test_a_probe_of_another_length_is_refused() -> None:
    source = FakeSource()
    source.put("c", _faces(10))
    with pytest.raises(InvalidParameter):
        _index(source).search("c", unit_vector(1)[:64], threshold=0, max_faces=1)


@pytest.mark.parametrize("max_faces", [0, 4097])
def test_max_faces_out_of_range_is_refused(max_faces: int) -> None:
    source = FakeSource()
    source.put("c", _faces(3))
    with pytest.raises(InvalidParameter):
        _index(source).search("c", unit_vector(1), threshold=0, max_faces=max_faces)


def test_a_deletion_since_the_last_search_rebuilds_the_whole_copy() -> None:
    source = FakeSource()
    source.put("c", _faces(10))
    index = _index(source)
    index.search("c", unit_vector(4), threshold=0, max_faces=1)
    # Delete one and add one: the count alone would not change.
    source.put("c", [*(r for r in _faces(10) if r[0] != "face-4"),
                     ("face-50", "new", unit_vector(50))])
    hits = index.search("c", unit_vector(4), threshold=0, max_faces=20)
    assert "face-4" not in {h.face_id for h in hits}
    assert "face-50" in {h.face_id for h in hits}
    assert source.snapshots == 2


def test_an_extended_copy_answers_like_a_fresh_one() -> None:
    source = FakeSource()
    source.put("c", _faces(30))
    index = _index(source)
    index.search("c", unit_vector(1), threshold=0, max_faces=1)
    for n in (35, 36, 50):
        source.put("c", _faces(n))
        index.search("c", unit_vector(1), threshold=0, max_faces=1)
    assert source.snapshots == 1
    fresh = _index(source)
    probe = unit_vector(7)
    assert index.search("c", probe, threshold=0, max_faces=50) == \
        fresh.search("c", probe, threshold=0, max_faces=50)


def test_the_first_faces_of_an_empty_collection_are_found() -> None:
    source = FakeSource()
    source.put("c", [])
    index = _index(source)
    assert index.search("c", unit_vector(2), threshold=0, max_faces=1) == []
    source.put("c", _faces(3))
    assert index.search("c", unit_vector(2), threshold=99, max_faces=1)[0].face_id == "face-2"
