"""Crops of enrolled faces, kept for reviewers (issue 6 item 7).

Enrollment keeps no images, except this: a small JPEG of each indexed face (the box plus
a margin, at most MAX_SIDE px a side, re-encoded so no metadata of the upload survives)
in the blob store under `faces/<collection id>/<face id>.jpg`, unless the collection was
created with `keep_face_crops` false. When a verify or search decision waits for a
reviewer, the crops of its candidate faces are copied into the review's evidence as
`candidate_<face id>.jpg`, so they follow the evidence's retention, not the face's.

A crop is biometric data: it goes when its face goes (DeleteFaces), when its subject is
erased (`FaceCropEraser`, a SubjectEraser) and when its collection is deleted.

Writes: crops are written before the enrollment's commit and deleted again if the commit
does not happen (`discard_crops`), like review evidence. Writing after the commit would
race with an erasure of the same subject: an erasure that commits between the enroll's
commit and its late write would miss the file, leaving a crop of an erased subject with
no row pointing at it. Written first, a crop can outlive its row only if the process dies
between the write and the commit; the collection's deletion removes such files with the
whole `faces/<collection id>/` folder.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import structlog
from PIL import Image

from faceapi.domain.decisions import Candidate
from faceapi.domain.faces import BoundingBox, OrientationCorrection
from faceapi.domain.images import DecodedImage
from faceapi.services.ports import BlobStore, ErasedData, UnitOfWork

log = structlog.get_logger(__name__)

CROPS_PREFIX = "faces"
MAX_SIDE = 160
# A margin around the box (a fifth of its size on each side) so a reviewer sees the
# hair line and chin, as in the probe crop of review evidence.
MARGIN = 0.2
JPEG_QUALITY = 85
# At most this many candidate crops go into one review's evidence (best first): what a
# reviewer can compare side by side; a verify of a subject with more faces still lists
# every candidate, the rest without a picture.
MAX_CANDIDATE_CROPS = 20


def collection_prefix(collection_id: str) -> str:
    return f"{CROPS_PREFIX}/{collection_id}"


def crop_key(collection_id: str, face_id: str) -> str:
    return f"{collection_prefix(collection_id)}/{face_id}.jpg"


def evidence_name(face_id: str) -> str:
    """The name of a candidate's crop in review evidence (the console looks for it)."""
    return f"candidate_{face_id}.jpg"


# Quarter turns (numpy.rot90's k) of an OrientationCorrection: when the engine found the
# faces only in a rotated copy of the image, their boxes are in that copy's frame.
_QUARTER_TURNS = {OrientationCorrection.ROTATE_90: 1, OrientationCorrection.ROTATE_180: 2,
                  OrientationCorrection.ROTATE_270: 3}


def face_region(pixels: npt.NDArray[np.uint8],
                box: BoundingBox) -> npt.NDArray[np.uint8] | None:
    """The pixels of a face box plus MARGIN on each side (clipped to the image), or
    None when the image has no pixels or the box falls outside it."""
    h, w = int(pixels.shape[0]), int(pixels.shape[1])
    left = max(0, int((box.left - box.width * MARGIN) * w))
    top = max(0, int((box.top - box.height * MARGIN) * h))
    right = min(w, int((box.left + box.width * (1 + MARGIN)) * w))
    bottom = min(h, int((box.top + box.height * (1 + MARGIN)) * h))
    if right <= left or bottom <= top:
        return None
    return np.ascontiguousarray(pixels[top:bottom, left:right])


def face_crop(image: DecodedImage, box: BoundingBox,
              orientation: OrientationCorrection | None = None) -> bytes | None:
    """The face box plus margin as a JPEG of at most MAX_SIDE px a side; None when the
    image has no pixels (an S3 object) or the box falls outside it."""
    pixels = image.pixels
    turns = _QUARTER_TURNS.get(orientation) if orientation is not None else None
    if turns:
        pixels = np.rot90(pixels, turns)
    region = face_region(pixels, box)
    if region is None:
        return None
    crop = Image.fromarray(region)
    crop.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_crops(blobs: BlobStore, collection_id: str, crops: dict[str, bytes]) -> None:
    """Store the crops of freshly indexed faces (face id -> JPEG)."""
    for face_id, data in crops.items():
        blobs.put(crop_key(collection_id, face_id), data)


def discard_crops(blobs: BlobStore, collection_id: str, face_ids: Iterable[str]) -> int:
    """Delete the crops of these faces; how many files went. Never raises for a file
    that cannot be deleted (logged), so it is safe in clean-ups and rollbacks."""
    gone = 0
    for face_id in face_ids:
        try:
            gone += blobs.delete(crop_key(collection_id, face_id))
        except OSError as exc:
            log.warning("face_crop_delete_failed", error_type=type(exc).__name__)
    return gone


def candidate_crops(blobs: BlobStore, collection_id: str | None,
                    candidates: Sequence[Candidate]) -> dict[str, bytes]:
    """Review evidence for the candidates of a decision: `candidate_<face id>.jpg`
    for each candidate (best first, at most MAX_CANDIDATE_CROPS) that has a crop."""
    if collection_id is None:
        return {}
    out: dict[str, bytes] = {}
    for candidate in candidates[:MAX_CANDIDATE_CROPS]:
        data = blobs.get(crop_key(collection_id, candidate.face_id))
        if data is not None:
            out[evidence_name(candidate.face_id)] = data
    return out


class FaceCropEraser:
    """A `faceapi.services.erase.SubjectEraser` for the crops of enrolled faces: the
    subject's crops (or, when the collection is deleted, the collection's whole crop
    folder) are deleted once the erasure has committed."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        blobs = self._blobs
        cleanup: Callable[[], None]
        if subject_id is None:
            count = len(blobs.keys(collection_prefix(collection_id)))

            def cleanup() -> None:
                blobs.delete_prefix(collection_prefix(collection_id))
        else:
            face_ids = [face_id for face_id, _ in uow.faces.subject_face_ids(collection_id,
                                                                             subject_id)]
            count = sum(1 for f in face_ids if blobs.exists(crop_key(collection_id, f)))

            def cleanup() -> None:
                discard_crops(blobs, collection_id, face_ids)
        return ErasedData(counts={"face_crop": count}, after_commit=(cleanup,))
