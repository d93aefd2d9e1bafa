"""The blob store: review evidence (probe images, face crops) kept outside the database.

A port (`BlobStore`) and one adapter, a directory (settings.resolved_blob_dir). Keys are
`/`-separated names from a small alphabet, so a key can never climb out of the root.
Files are written to a temporary name and renamed, so a reader sees a whole file or
none, and are readable by the service's user only.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

_PART_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any previous blob."""
        ...

    def get(self, key: str) -> bytes | None:
        """The blob, or None if there is none."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under `prefix/`; returns how many files went."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix/`."""
        ...


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
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

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
