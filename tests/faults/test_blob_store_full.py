"""The blob directory full (a small tmpfs filled to the last byte) or read-only (the same
tmpfs remounted ro): requests that must write files there (an enrollment's face crops,
the evidence of a decision that waits for review) are refused with 503
`blob_store_unavailable` and Retry-After, nothing of them is written (no face row
without its crop, no decision or review without its evidence), the refusal is audited,
and everything works again once there is room. Requests that write no file go on.

We run as root, for whom a chmod does not make a directory read-only, so the faults are
real mounts; without permission to mount, the test skips."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceapi.adapters.blobs import DirectoryBlobStore
from faceapi.domain.errors import BlobStoreUnavailable
from tests.faults.conftest import GENUINE, Deployment, DeploymentFactory, report, rows
from tests.faults.invariants import assert_nothing_half_written
from tests.support.servers import PostgresCluster, faceapi_cli

TMPFS_SIZE = "4m"


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30,
                          check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own, unmounted after it."""
    point = tmp_path / "blobs"
    point.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(point))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the blob directory (needs root or "
                    f"CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30,
                       check=False)


def _fill(disk: Path) -> Path:
    """Write one file until the disk refuses another byte (ENOSPC)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        chunk = b"\0" * 65536
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


def _refused_events(d: Deployment, action: str) -> list[dict[str, object]]:
    return [{"subject_id": s, "reason": r} for s, r in rows(
        d.database_url, "SELECT subject_id, reason FROM audit_events "
                        "WHERE action = :a AND outcome = 'refused'", a=action)]


def _leftovers(disk: Path) -> list[str]:
    """Temporary files a failed write left behind (none may be)."""
    return [str(p) for p in disk.rglob(".tmp-*")]


def _assert_refused(d: Deployment, disk: Path, *, why: str) -> dict[str, int]:
    """While the disk takes no file: enrollment and a pending-review verify are 503 and
    leave nothing; a verify that needs no evidence still succeeds."""
    subject = f"{why}-{uuid.uuid4().hex[:6]}"
    faces_before = rows(d.database_url, "SELECT count(*) FROM faces")[0][0]
    decisions_before = rows(d.database_url, "SELECT count(*) FROM decisions")[0][0]

    enrolled = d.enroll(subject)
    assert enrolled.status == 503, enrolled
    assert enrolled.code == "blob_store_unavailable"
    assert int(enrolled.headers["retry-after"]) > 0
    pending = d.verify("angelina", GENUINE, policy="identity_check")
    assert pending.status == 503, pending
    assert pending.code == "blob_store_unavailable"
    final = d.verify("angelina", GENUINE, policy="login")
    assert final.status == 200, final  # no file to write: not refused
    ready = d.server.request("GET", "/readyz")
    assert ready.status == 503
    assert ready.json()["checks"]["blobs"].startswith("blob_dir_not_writable"), ready.json()

    assert rows(d.database_url, "SELECT count(*) FROM faces")[0][0] == faces_before
    assert rows(d.database_url, "SELECT count(*) FROM subjects WHERE subject_id = :s",
                s=subject)[0][0] == 0
    # Only the login verify's decision was written.
    assert rows(d.database_url, "SELECT count(*) FROM decisions")[0][0] == \
        decisions_before + 1
    assert {"subject_id": subject, "reason": "blob_store_unavailable"} in \
        _refused_events(d, "face.index")
    assert {"subject_id": "angelina", "reason": "blob_store_unavailable"} in \
        _refused_events(d, "verify.decision")
    assert _leftovers(disk) == []
    assert_nothing_half_written(d.database_url, d.blob_dir)
    return {"enroll": enrolled.status, "pending_verify": pending.status,
            "final_verify": final.status}


def _assert_works(d: Deployment) -> None:
    assert d.enroll(f"ok-{uuid.uuid4().hex[:6]}").status == 200
    pending = d.verify("angelina", GENUINE, policy="identity_check")
    assert pending.status == 200, pending
    assert pending.json()["outcome"] == "pending_review"
    assert d.server.request("GET", "/readyz").status == 200


def test_a_full_or_read_only_blob_directory_refuses_file_writes_with_503_and_leaves_nothing(
        pg_cluster: PostgresCluster, deployment: DeploymentFactory, small_disk: Path) -> None:
    d = deployment(pg_cluster.create_database("faults_blobs"), blob_dir=small_disk)
    assert d.enroll("angelina").status == 200
    _assert_works(d)

    filler = _fill(small_disk)
    full = _assert_refused(d, small_disk, why="full")
    filler.unlink()
    _assert_works(d)

    remounted = _mount("-o", "remount,ro", str(small_disk))
    assert remounted.returncode == 0, remounted.stderr
    try:
        read_only = _assert_refused(d, small_disk, why="read-only")
    finally:
        assert _mount("-o", "remount,rw", str(small_disk)).returncode == 0
    _assert_works(d)

    verified = faceapi_cli(d.env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    refusals = json.dumps(_refused_events(d, "face.index") + _refused_events(d, "verify.decision"))
    assert "angelina" in refusals
    report("blob_store", disk_full=full, read_only=read_only,
           refusals_audited=len(json.loads(refusals)), disk_size=TMPFS_SIZE)


def test_a_blob_that_only_partly_fits_is_refused_and_leaves_no_truncated_file(
        small_disk: Path) -> None:
    """On a nearly full disk os.write writes what fits and reports no error; the rest
    must fail the put, or a truncated crop would be renamed into place as if whole."""
    filler = _fill(small_disk)
    page = os.statvfs(small_disk).f_frsize
    os.truncate(filler, filler.stat().st_size - 2 * page)  # room for two pages, no more
    blobs = DirectoryBlobStore(small_disk)
    with pytest.raises(BlobStoreUnavailable):
        blobs.put("reviews/r1/probe.jpg", os.urandom(8 * page))
    assert not blobs.exists("reviews/r1/probe.jpg")
    assert _leftovers(small_disk) == []
    blobs.put("reviews/r1/small.jpg", b"x" * 100)  # what fits is still written
    assert blobs.get("reviews/r1/small.jpg") == b"x" * 100
