"""The search index: the faces of a collection nearest to a probe descriptor.

Each worker process keeps its own copy of a collection's descriptors as one float32
matrix, built from the store. Before every search it reads the collection's `version`
(one indexed row): when another worker has indexed or deleted faces since, the copy is
rebuilt from the store, so every worker answers from the same data without any
messaging between them.

A collection may hold faces of several template versions while it is moved to a new
model (`faceapi collections reindex`); a probe is only compared with faces of its own
template version, so each version has its own copy. A reindexed face gets the
collection's new version as its `added_version`, so the new version's copy fetches it
as added, and the old version's copy (which lost it) is read again.

Ranking is by euclidean distance, which both descriptor engines' similarity maps are
strictly decreasing in (the local engine's calibrated map; cosine on unit vectors for
the fake). Only the `max_faces` nearest candidates are then scored with the engine's own
`similarity()`, so a search reports exactly the similarity a 1:1 comparison would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from faceapi.domain.errors import InvalidParameter, NotFound
from faceapi.services.ports import SearchHit, UnitOfWorkFactory

# Rekognition's SearchFacesByImage allows MaxFaces up to 4096.
MAX_FACES_LIMIT = 4096

Vectors = npt.NDArray[np.float32]
Similarity = Callable[[tuple[float, ...], tuple[float, ...]], float]


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A collection's descriptors at one version."""

    version: int
    face_ids: list[str]
    subject_ids: list[str]
    vectors: Vectors  # (n, dims) float32
    norms: Vectors = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def __post_init__(self) -> None:
        if len(self.norms) != len(self.vectors):
            # Squared norms, precomputed once: distances are then one matrix product.
            squared = np.einsum("ij,ij->i", self.vectors, self.vectors) if len(self.vectors) \
                else np.zeros(0, dtype=np.float32)
            object.__setattr__(self, "norms", squared.astype(np.float32))

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def extended(self, version: int, rows: Sequence[tuple[str, str, bytes]]) -> Snapshot:
        """This snapshot plus faces added since, at `version` (a new object: searches
        still running on this one are undisturbed)."""
        added = snapshot_from_rows(version, rows)
        if not added.face_ids:
            return Snapshot(version, self.face_ids, self.subject_ids, self.vectors, self.norms)
        if self.face_ids and added.dims != self.dims:
            raise InvalidParameter("stored descriptors of different lengths in one collection")
        if not self.face_ids:
            return added
        return Snapshot(version, self.face_ids + added.face_ids,
                        self.subject_ids + added.subject_ids,
                        np.concatenate([self.vectors, added.vectors]),
                        np.concatenate([self.norms, added.norms]))


@dataclass(frozen=True)
class Delta:
    """What changed in a collection since a version: the faces added, and how many
    faces the collection has now (fewer than old + added means some were deleted)."""

    version: int
    added: list[tuple[str, str, bytes]]
    total: int


class IndexSource(Protocol):
    """Where an index reads versions and descriptors from (the store)."""

    def version(self, collection_id: str) -> int | None:
        """The collection's current version, or None if it does not exist."""
        ...

    def snapshot(self, collection_id: str, template_version: str | None) -> Snapshot | None:
        """Every descriptor of the collection (of that template version, None: all)
        with the collection version they belong to."""
        ...

    def changes(self, collection_id: str, since: int,
                template_version: str | None) -> Delta | None:
        """The faces added after version `since`, and the collection's face count
        (both of that template version)."""
        ...


def snapshot_from_rows(version: int, rows: Sequence[tuple[str, str, bytes]]) -> Snapshot:
    """Build a snapshot from (face_id, subject_id, float32 bytes) rows."""
    if not rows:
        return Snapshot(version, [], [], np.zeros((0, 0), dtype=np.float32))
    size = len(rows[0][2])
    if size == 0 or size % 4 or any(len(blob) != size for _, _, blob in rows):
        raise InvalidParameter("stored descriptors of different lengths in one collection")
    # One join and one frombuffer: a million rows in well under a second.
    matrix = np.frombuffer(b"".join(blob for _, _, blob in rows), dtype="<f4")
    # Read-only view of the joined bytes (no copy on little-endian machines).
    matrix = matrix.reshape(len(rows), size // 4).astype(np.float32, copy=False)
    return Snapshot(version, [r[0] for r in rows], [r[1] for r in rows], matrix)


class StoreIndexSource:
    """Reads through short read-only units of work from the store."""

    def __init__(self, read_uow: UnitOfWorkFactory) -> None:
        self._read_uow = read_uow

    def version(self, collection_id: str) -> int | None:
        with self._read_uow() as uow:
            collection = uow.collections.get(collection_id)
            return None if collection is None else collection.version

    def snapshot(self, collection_id: str, template_version: str | None) -> Snapshot | None:
        # Version and rows in one transaction, so the snapshot is never labelled with
        # a version its rows do not belong to.
        with self._read_uow() as uow:
            collection = uow.collections.get(collection_id)
            if collection is None:
                return None
            return snapshot_from_rows(collection.version,
                                      uow.faces.embeddings(collection_id, template_version))

    def changes(self, collection_id: str, since: int,
                template_version: str | None) -> Delta | None:
        with self._read_uow() as uow:
            collection = uow.collections.get(collection_id)
            if collection is None:
                return None
            return Delta(collection.version,
                         uow.faces.embeddings_since(collection_id, since, template_version),
                         uow.faces.embedding_count(collection_id, template_version))


class BruteForceIndex:
    """Exact search: one matrix-vector product per query over the whole collection."""

    def __init__(self, source: IndexSource, similarity: Similarity) -> None:
        self._source = source
        self._similarity = similarity
        self._snapshots: dict[tuple[str, str | None], Snapshot] = {}
        self._lock = threading.Lock()

    def invalidate(self, collection_id: str) -> None:
        with self._lock:
            for key in [k for k in self._snapshots if k[0] == collection_id]:
                del self._snapshots[key]

    def current(self, collection_id: str, template_version: str | None = None) -> Snapshot:
        """This process's snapshot (of one template version, None: every face),
        rebuilt if the store's version moved on."""
        version = self._source.version(collection_id)
        if version is None:
            self.invalidate(collection_id)
            raise NotFound(f"collection {collection_id} not found")
        key = (collection_id, template_version)
        snapshot = self._snapshots.get(key)
        if snapshot is not None and snapshot.version == version:
            return snapshot
        with self._lock:
            snapshot = self._snapshots.get(key)
            if snapshot is None or snapshot.version != version:
                fresh = self._refreshed(collection_id, template_version, snapshot)
                if fresh is None:
                    self._snapshots.pop(key, None)
                    raise NotFound(f"collection {collection_id} not found")
                self._snapshots[key] = snapshot = fresh
        return snapshot

    def _refreshed(self, collection_id: str, template_version: str | None,
                   old: Snapshot | None) -> Snapshot | None:
        # Enrolment only adds faces: read just those. Any deletion since (or a face
        # reindexed away from this template version) shows as a count below
        # old + added, and only then is the whole collection read again.
        if old is not None:
            delta = self._source.changes(collection_id, old.version, template_version)
            if delta is None:
                return None
            if delta.total == len(old.face_ids) + len(delta.added):
                return old.extended(delta.version, delta.added)
        return self._source.snapshot(collection_id, template_version)

    def search(self, collection_id: str, embedding: Sequence[float], *, threshold: float,
               max_faces: int, template_version: str | None = None) -> list[SearchHit]:
        if not 1 <= max_faces <= MAX_FACES_LIMIT:
            raise InvalidParameter(f"max_faces must be between 1 and {MAX_FACES_LIMIT}")
        snapshot = self.current(collection_id, template_version)
        if not snapshot.face_ids:
            return []
        probe = np.asarray(embedding, dtype=np.float32)
        if probe.shape != (snapshot.dims,):
            raise InvalidParameter(
                f"the probe descriptor has {probe.size} values; this collection's have "
                f"{snapshot.dims}")
        order = nearest(snapshot, probe, max_faces)
        probe_t = tuple(float(v) for v in probe)
        hits: list[SearchHit] = []
        for row in order:
            stored = tuple(float(v) for v in snapshot.vectors[row])
            score = self._similarity(probe_t, stored)
            if score < threshold:
                break  # similarity falls with distance: nothing further can pass
            hits.append(SearchHit(snapshot.face_ids[row], snapshot.subject_ids[row], score))
        return hits


def nearest(snapshot: Snapshot, probe: Vectors, k: int) -> npt.NDArray[np.intp]:
    """Row numbers of the k nearest descriptors, nearest first (squared L2)."""
    distances = snapshot.norms - 2.0 * (snapshot.vectors @ probe)
    k = min(k, len(distances))
    top = (np.argpartition(distances, k - 1)[:k] if k < len(distances)
           else np.arange(len(distances)))
    ordered: npt.NDArray[np.intp] = top[np.argsort(distances[top], kind="stable")]
    return ordered
