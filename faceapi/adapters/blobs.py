"""The blob store: review evidence (probe images, face crops) and the crops of enrolled
faces (faceapi/services/face_crops.py), kept outside the database.

A port (`BlobStore`) and one adapter, a directory (settings.resolved_blob_dir). Keys are
`/`-separated names from a small alphabet, so a key can never climb out of the root.
Files are written to a temporary name and renamed, so a reader sees a whole file or
none, and are readable by the service's user only.

A directory that cannot take a write (full, read-only, permissions) or give a file back
raises `BlobStoreUnavailable` (a 503 the caller may retry) instead of the OSError: every
write happens inside the unit of work of the change that needs it, so the change is
refused whole and nothing in the store points at a missing file. Deletes keep raising
OSError: they run in clean-ups, which log and carry on (services/face_crops.py).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import structlog

from faceapi.adapters.private_files import write_private_file
from faceapi.domain.errors import BlobStoreUnavailable

log = structlog.get_logger(__name__)

# What a client is told to wait: a full or read-only disk needs an operator, not a moment.
RETRY_AFTER_S = 30

_PART_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}\Z")


def _unavailable(operation: str, exc: OSError) -> BlobStoreUnavailable:
    # The errno's name (ENOSPC, EROFS, EACCES ...) tells the operator what to fix; the
    # path is left out (it holds review and face ids).
    reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    log.error("blob_store_unavailable", operation=operation, reason=reason)
    return BlobStoreUnavailable(
        "the blob store cannot take the files this request needs; try again later",
        retry_after=RETRY_AFTER_S)


def _parts(key: str) -> list[str]:
    parts = key.split("/")
    if not parts or any(not _PART_RE.match(p) or p in (".", "..") for p in parts):
        raise ValueError("invalid blob key")
    return parts


class DirectoryBlobStore:
    """Blobs as files under one directory (mode 0700 directories, 0600 files)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_parts(key))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            write_private_file(path, data)
        except OSError as exc:
            raise _unavailable("put", exc) from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _unavailable("get", exc) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder)
        return count

    def keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)).replace(os.sep, "/")
                      for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
