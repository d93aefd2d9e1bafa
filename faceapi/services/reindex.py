"""Use case: move a collection to the engine's current template version without the
original photos (`faceapi collections reindex`), and the eraser of kept face chips.

Each face records the template version of its descriptor. Reindexing re-embeds the
aligned chip the collection kept of each face (`keep_chips`) with the engine in use and
replaces the descriptor and version, a batch per transaction. It can be interrupted at
any moment and run again: a face already at the target version is not selected again,
and the update only applies to a face still at the version it was read at, so two runs
at once never re-embed a face twice. Searches go on throughout: every batch bumps the
collection's version, and search indexes compare a probe with the faces of its own
template version only (adapters/search/index.py).

Audit: `collection.reindex` events with counts and versions only (no chip, no
descriptor): `started`, one `batch` per committed batch (each in the batch's own
transaction), and `finished` when no face is left to do but those without a chip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from faceapi.domain.audit import Action, Actor, AuditEvent, DetailValue
from faceapi.domain.collections import StoredFace, embedding_to_bytes
from faceapi.domain.errors import InvalidParameter
from faceapi.services.collection_lookup import load_collection, resource
from faceapi.services.collections import check_engine
from faceapi.services.ports import (
    ChipEmbedder,
    ErasedData,
    FaceEngine,
    UnitOfWork,
    UnitOfWorkFactory,
    chip_embedder,
)

DEFAULT_BATCH = 64
MAX_BATCH = 1000
# Face ids of faces without a usable chip named in the report (all are counted).
MAX_LISTED = 1000


@dataclass(frozen=True)
class ReindexProgress:
    """Where a run is: faces done so far out of those it found to do."""

    done: int
    to_do: int
    without_chip: int


@dataclass(frozen=True)
class ReindexReport:
    collection_id: str
    template_version: str  # the target
    reindexed: int  # faces this run re-embedded
    already_current: int  # faces at the target version when the run started
    # Faces with no kept chip (enrolled before chips were kept, with keep_chips off, or
    # a chip of another format): only re-enrollment from a photo can move them.
    without_chip: int
    without_chip_ids: tuple[str, ...]
    remaining: int  # faces still at another version when the run ended


def reindex_collection(collection_id: str, *, actor: Actor, engine: FaceEngine,
                       uow: UnitOfWorkFactory, to_version: str = "current",
                       batch_size: int = DEFAULT_BATCH,
                       progress: Callable[[ReindexProgress], None] | None = None
                       ) -> ReindexReport:
    """Re-embed every face of the collection not yet at the engine's template version
    from its kept chip, a batch per transaction, audited."""
    embedder = chip_embedder(engine)
    target = engine.template_version
    if to_version not in ("current", target):
        raise InvalidParameter(
            f"the engine in use computes template version {target!r}; configure the "
            f"engine for {to_version!r} first, then reindex to `current`",
            details={"field": "to_version"})
    if embedder is None:
        raise InvalidParameter(f"the {engine.name} engine cannot re-embed kept face chips",
                               details={"field": "engine"})
    if not 1 <= batch_size <= MAX_BATCH:
        raise InvalidParameter(f"batch size must be 1-{MAX_BATCH}",
                               details={"field": "batch_size"})
    with uow() as start:
        collection = load_collection(start, actor, collection_id)
        check_engine(collection, engine)
        counts = start.faces.template_counts(collection_id)
        already = counts.get(target, 0)
        to_do = sum(n for v, n in counts.items() if v != target)
        start.audit.append(AuditEvent(
            action=Action.COLLECTION_REINDEX, outcome="started", actor=actor,
            resource=resource(collection_id), engine=engine.name,
            model_version=engine.model_version,
            scores={"faces_to_reindex": to_do, "faces_current": already},
            details={"template_version": target,
                     "from_versions": sorted(v for v in counts if v != target)[:16]}))
        start.commit()
    done = 0
    skipped: list[str] = []
    skipped_count = 0
    after: str | None = None
    while True:
        with uow() as work:
            load_collection(work, actor, collection_id)  # gone meanwhile: NotFound
            faces = work.faces.not_at_template(collection_id, target, after=after,
                                               limit=batch_size)
            if not faces:
                break
            after = faces[-1].face_id
            migrated, missing = _reindex_batch(work, embedder, collection_id, faces, target)
            skipped_count += len(missing)
            skipped += missing[:max(0, MAX_LISTED - len(skipped))]
            if migrated:
                work.audit.append(AuditEvent(
                    action=Action.COLLECTION_REINDEX, outcome="batch", actor=actor,
                    resource=resource(collection_id), engine=engine.name,
                    model_version=engine.model_version,
                    scores={"reindexed_count": migrated, "without_chip_count": len(missing)},
                    details={"template_version": target}))
                work.commit()
            done += migrated
        if progress is not None:
            progress(ReindexProgress(done=done, to_do=to_do, without_chip=skipped_count))
    with uow() as end:
        collection = load_collection(end, actor, collection_id)
        remaining = sum(n for v, n in end.faces.template_counts(collection_id).items()
                        if v != target)
        details: dict[str, DetailValue] = {"template_version": target}
        if remaining == 0 and collection.model_version != engine.model_version:
            # Every face is now the current model's: the collection says so.
            end.collections.set_model_version(collection_id, engine.model_version)
            details.update(old_model_version=collection.model_version,
                           new_model_version=engine.model_version)
        end.audit.append(AuditEvent(
            action=Action.COLLECTION_REINDEX, outcome="finished", actor=actor,
            resource=resource(collection_id), engine=engine.name,
            model_version=engine.model_version,
            scores={"reindexed_count": done, "faces_current_before": already,
                    "without_chip_count": skipped_count, "remaining_count": remaining},
            details=details))
        end.commit()
    return ReindexReport(collection_id=collection_id, template_version=target,
                         reindexed=done, already_current=already,
                         without_chip=skipped_count, without_chip_ids=tuple(skipped),
                         remaining=remaining)


def _reindex_batch(uow: UnitOfWork, embedder: ChipEmbedder, collection_id: str,
                   faces: list[StoredFace], target: str) -> tuple[int, list[str]]:
    """Re-embed one batch inside the caller's unit of work: (faces updated, ids of
    faces without a usable chip)."""
    chips = uow.chips.get_many(collection_id, [f.face_id for f in faces])
    usable = [f for f in faces if f.face_id in chips
              and chips[f.face_id].chip_format == embedder.chip_format]
    missing = [f.face_id for f in faces if f not in usable]
    if not usable:
        return 0, missing
    vectors = embedder.embed_chips([chips[f.face_id].pixels for f in usable])
    version = uow.collections.bump_version(collection_id)
    migrated = 0
    for face, vector in zip(usable, vectors, strict=True):
        # Only if still at the version read: another run may have moved it meanwhile.
        migrated += uow.faces.set_template(collection_id, face.face_id,
                                           embedding=embedding_to_bytes(vector),
                                           template_version=target,
                                           from_version=face.template_version,
                                           added_version=version)
    return migrated, missing


class FaceChipEraser:
    """A `faceapi.services.erase.SubjectEraser` for kept face chips: the subject's
    chips (or the whole collection's) are deleted in the erasure's own transaction."""

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        return ErasedData(counts={"face_chip": uow.chips.delete_for_subject(collection_id,
                                                                             subject_id)})
