"""The directory blob store that keeps review evidence."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from faceapi.adapters.blobs import DirectoryBlobStore
from faceapi.domain.images import DecodedImage
from faceapi.services.review import PROBE, PROBE_FACE, evidence_images
from tests.fakes import face


def test_blobs_round_trip_and_are_private_to_the_service_user(tmp_path: Path) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    blobs.put("reviews/r1/probe.jpg", b"jpeg")
    assert blobs.get("reviews/r1/probe.jpg") == b"jpeg"
    assert blobs.keys("reviews/r1") == ["reviews/r1/probe.jpg"]
    mode = (tmp_path / "reviews" / "r1" / "probe.jpg").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_exists_tells_a_blob_from_none_and_from_a_folder(tmp_path: Path) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    blobs.put("faces/c1/f1.jpg", b"jpeg")
    assert blobs.exists("faces/c1/f1.jpg")
    assert not blobs.exists("faces/c1/f2.jpg")
    assert not blobs.exists("faces/c1")
    assert blobs.delete("faces/c1/f1.jpg")
    assert not blobs.exists("faces/c1/f1.jpg")


def test_deleting_a_prefix_removes_every_blob_under_it(tmp_path: Path) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    blobs.put("reviews/r1/a.jpg", b"a")
    blobs.put("reviews/r1/b.jpg", b"b")
    blobs.put("reviews/r2/a.jpg", b"c")
    assert blobs.delete_prefix("reviews/r1") == 2
    assert blobs.get("reviews/r1/a.jpg") is None
    assert blobs.get("reviews/r2/a.jpg") == b"c"
    assert blobs.delete_prefix("reviews/none") == 0


@pytest.mark.parametrize("key", ["../escape", "reviews/../../etc", "/abs", "a//b", "a/b c"])
def test_a_key_can_never_leave_the_blob_directory(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        DirectoryBlobStore(tmp_path).put(key, b"x")


def test_evidence_is_re_encoded_jpeg_with_a_face_crop() -> None:
    pixels = np.full((100, 80, 3), 128, dtype=np.uint8)
    image = DecodedImage(data=b"original", sha256="0" * 64, format="png", pixels=pixels)
    evidence = evidence_images(image, face(left=0.25, top=0.25, size=0.5))
    assert set(evidence) == {PROBE, PROBE_FACE}
    assert all(data.startswith(b"\xff\xd8") for data in evidence.values())
    assert b"original" not in evidence[PROBE]
