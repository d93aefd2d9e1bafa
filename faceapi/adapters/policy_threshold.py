"""Rewriting one policy file's `min_similarity` for `faceapi calibrate --write-policy`.

The edit is textual so the file's comments survive: the `min_similarity:` line gets the
new value and the comment lines just above it are replaced by one that names the
calibration the value comes from. The new text must load with the same strict loader
as at start (parse_policy); otherwise nothing is written. The file is replaced
atomically (a temporary file in the same directory, fsync, os.replace): a reader, or a
start of the app, sees the old text or the new one, never a mix."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from faceapi.adapters.policy_files import parse_policy
from faceapi.domain.errors import NotFound
from faceapi.domain.policies import PolicyError
from faceapi.services.ports import PolicyChange

_LINE = re.compile(r"^min_similarity:[^\n]*$", re.MULTILINE)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class PolicyFileThresholds:
    """PolicyThresholdWriter over a policies directory."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):  # no path tricks: a policy name is a file stem
            raise NotFound(f"no policy {name[:64]!r}")
        path = self._directory / f"{name}.yaml"
        if not path.is_file():
            raise NotFound(f"no policy file {path}")
        return path

    def write(self, name: str, threshold: float, note: str) -> tuple[PolicyChange, bytes]:
        path = self._path(name)
        previous = path.read_bytes()
        text = previous.decode("utf-8")
        old = parse_policy(text, str(path), name)
        lines = text.split("\n")
        at = next((i for i, line in enumerate(lines) if _LINE.match(line)), None)
        if at is None:
            raise PolicyError(f"{path}: no top-level min_similarity line to rewrite")
        start = at
        while start > 0 and lines[start - 1].startswith("#") and start - 1 > 0:
            start -= 1  # the comment block that explained the old value (not line 0)
        new_lines = [*lines[:start], f"# {note}", f"min_similarity: {threshold:.1f}",
                     *lines[at + 1:]]
        new_text = "\n".join(new_lines)
        new = parse_policy(new_text, str(path), name)  # PolicyError: nothing written
        self._replace(path, new_text.encode("utf-8"))
        return PolicyChange(name, old.version, new.version, old.min_similarity,
                            new.min_similarity, new.canonical_text()), previous

    def restore(self, name: str, previous: bytes) -> None:
        self._replace(self._path(name), previous)

    @staticmethod
    def _replace(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, path.stat().st_mode & 0o777)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
