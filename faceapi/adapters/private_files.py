"""Files only this service's user may read (signing keys, secrets, review evidence),
written so that no reader ever sees a partial file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _write_temp(directory: Path, data: bytes, prefix: str) -> str:
    """A new 0600 file in `directory` holding all of `data`, or no file and an OSError.
    os.write may write less than asked on a nearly full disk without an error: the loop
    writes the rest (the next write then fails with ENOSPC), and a file that could not
    be completed is removed, so no truncated file is ever renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_private_file(path: Path, data: bytes) -> None:
    """Write (or replace) `path` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = _write_temp(path.parent, data, ".tmp-")
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def create_private_file_once(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 unless it exists. Several workers starting at once
    may race here: exactly one file wins and every caller then reads that one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, data, ".new-")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another worker won the race; use its file
    finally:
        os.unlink(tmp)


class PrivateFiles:
    """The `SecretFileWriter` port: `write_private_file` and its removal."""

    def write(self, path: Path, data: bytes) -> None:
        """Write (or replace) `path` atomically with mode 0600."""
        write_private_file(path, data)

    def remove(self, path: Path) -> None:
        """Delete `path` if it exists."""
        path.unlink(missing_ok=True)


def configured_or_created_key_file(configured: str, setting: str, default: Path,
                                   new_key: Callable[[], bytes]) -> Path:
    """The key file a setting names (which must exist: a typo must not silently start
    with a fresh key), or `default`, created once from `new_key()` with mode 0600 and
    hard-linked into place so workers starting together all end up with one key."""
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FileNotFoundError(f"{setting}: no such file {path}")
        return path
    if not default.exists():
        create_private_file_once(default, new_key())
    return default
