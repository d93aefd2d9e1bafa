"""`faceapi blobs check`: does the blob store hold every file the database points at?

The database and the blob directory are backed up separately (docs/operations.md,
"Backup and restore"); a database restored without the matching blob archive (or with
an older one) serves faces whose crops and reviews whose evidence are gone. Nothing
else notices until a reviewer opens a review, so a restore ends with this check.

Two kinds of reference are checked: the crop `faces/<collection>/<face id>.jpg` of each
face of a collection that keeps crops, and every evidence file a review not yet purged
names (`reviews/<review id>/<name>`). Crop files no face row names are counted too
(`orphan_crops`: e.g. a blob archive taken after the database dump holds the crops of
enrollments made in between); they do not fail the check but are biometric data to
delete. Read-only: nothing is written, so nothing is audited. A face enrolled from an
S3 object (the Rekognition API's S3Object) has no pixels to crop and shows as a missing
crop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faceapi.services.face_crops import collection_prefix, crop_key
from faceapi.services.ports import BlobStore, UnitOfWork
from faceapi.services.review import evidence_prefix

PAGE = 500
# How many missing names the report lists (the counts are always whole).
EXAMPLES = 20


@dataclass
class BlobCheck:
    collections: int = 0
    faces: int = 0
    crops_missing: int = 0
    orphan_crops: int = 0
    reviews: int = 0
    evidence_files: int = 0
    evidence_missing: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.crops_missing == 0 and self.evidence_missing == 0

    def missing(self, key: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(key)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "collections": self.collections, "faces": self.faces,
                "crops_missing": self.crops_missing, "orphan_crops": self.orphan_crops,
                "reviews": self.reviews,
                "evidence_files": self.evidence_files,
                "evidence_missing": self.evidence_missing, "missing_examples": self.examples}


def check_blobs(*, read_uow: Callable[[], UnitOfWork], blobs: BlobStore) -> BlobCheck:
    """Walk every collection (a read transaction per page, so a large store is not held
    in one) and count the referenced files the blob store lacks."""
    report = BlobCheck()
    after: str | None = None
    while True:
        with read_uow() as uow:
            page = uow.collections.page(limit=PAGE, after=after)
        if not page:
            return report
        for collection in page:
            report.collections += 1
            cid = collection.collection_id
            if collection.keep_face_crops:
                _check_crops(report, read_uow, blobs, cid)
            _check_evidence(report, read_uow, blobs, cid)
        after = page[-1].collection_id


def _check_crops(report: BlobCheck, read_uow: Callable[[], UnitOfWork], blobs: BlobStore,
                 collection_id: str) -> None:
    present = set(blobs.keys(collection_prefix(collection_id)))
    after: str | None = None
    while True:
        with read_uow() as uow:
            faces = uow.faces.page(collection_id, limit=PAGE, after=after)
        if not faces:
            break
        for face in faces:
            report.faces += 1
            key = crop_key(collection_id, face.face_id)
            if key in present:
                present.discard(key)
            else:
                report.crops_missing += 1
                report.missing(key)
        after = faces[-1].face_id
    report.orphan_crops += len(present)


def _check_evidence(report: BlobCheck, read_uow: Callable[[], UnitOfWork], blobs: BlobStore,
                    collection_id: str) -> None:
    with read_uow() as uow:
        reviews = [r for r in uow.reviews.with_evidence_in(collection_id)
                   if not r.evidence_purged]
    for review in reviews:
        report.reviews += 1
        prefix = evidence_prefix(review.id)
        present = set(blobs.keys(prefix))
        for name in review.evidence:
            report.evidence_files += 1
            key = f"{prefix}/{name}"
            if key not in present:
                report.evidence_missing += 1
                report.missing(key)
