"""The converted models on disk (the descriptor ResNet, and the MMOD detector of
mmod_convert.py): names, the cache in the data directory, and
the constants the runtime shares with the converter. Nothing here imports the `onnx`
package: a process that finds the cached file (every worker, every start after the
first) never loads it; onnx_convert.py is imported only to convert.

`ensure_model` converts once and caches the result under a name holding the SHA-256 of
the source `.dat` and the converter version, written atomically with a sidecar holding
the SHA-256 of the model file itself (checked at every start: a damaged file is converted
again). The conversion runs in a child process (`python -m ...onnx_convert`), so the
server never holds its memory. Several gunicorn workers may start at once: one converts
under a file lock, the others find its file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Bump when the graph onnx_convert.py writes changes, so cached files are rebuilt.
CONVERTER_VERSION = 1
INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
DESCRIPTOR_SIZE = 128


@dataclass(frozen=True)
class ModelKind:
    """One converted network: the stem of its cached file name, the module converting
    it (run as `python -m MODULE SOURCE DEST`, printing the source's SHA-256) and that
    converter's version (bumped when its graph changes, so cached files are rebuilt)."""

    stem: str
    converter: str
    version: int


RESNET = ModelKind("dlib_face_recognition_resnet_model_v1",
                   "faceapi.adapters.engines.local.onnx_convert", CONVERTER_VERSION)


# The MMOD CNN face detector (mmod_convert.py): the tiled pyramid tensor, float32
# (N, 3, rows, columns) with dlib's mean subtracted and /256, in; the score map, float32
# (N, 1, rows', columns'), out.
MMOD_CONVERTER_VERSION = 1
MMOD = ModelKind("mmod_human_face_detector",
                 "faceapi.adapters.engines.local.mmod_convert", MMOD_CONVERTER_VERSION)
MMOD_INPUT_NAME = "pyramid"
MMOD_OUTPUT_NAME = "scores"


class ConversionError(RuntimeError):
    """The dlib model could not be converted."""


def cached_name(source_sha256: str, kind: ModelKind = RESNET) -> str:
    return f"{kind.stem}.{source_sha256}.c{kind.version}.onnx"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(data: bytes, target: Path) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def is_intact(target: Path) -> bool:
    """Whether the model file is there and hashes to what its sidecar recorded."""
    try:
        recorded = _sidecar(target).read_text(encoding="ascii").strip()
        return bool(recorded) and file_sha256(target) == recorded
    except (OSError, UnicodeDecodeError):
        return False


CONVERT_TIMEOUT_SECONDS = 300


def _convert_in_child(source: Path, destination: Path, kind: ModelKind) -> str:
    """Run the converter in a child process; returns the SHA-256 of what it converted."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", kind.converter, str(source), str(destination)],
            capture_output=True, text=True, timeout=CONVERT_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"converting {source.name} took over "
                              f"{CONVERT_TIMEOUT_SECONDS} s") from exc
    if done.returncode != 0:
        raise ConversionError(done.stderr.strip() or f"converter exited {done.returncode}")
    return done.stdout.strip()


def ensure_model(source: Path, cache_dir: Path, *, force: bool = False,
                 kind: ModelKind = RESNET) -> Path:
    """The cached ONNX file for `source` (a network of `kind`), converting it first when
    it is missing or damaged (or `force`)."""
    digest = file_sha256(source)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / cached_name(digest, kind)
    if not force and is_intact(target):
        return target
    with _exclusive(cache_dir / ".convert.lock"):
        # Another process may have converted it while this one waited for the lock.
        if not force and is_intact(target):
            return target
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=cache_dir)
        os.close(fd)
        try:
            if _convert_in_child(source, Path(temp), kind) != digest:
                raise ConversionError(f"{source} changed while it was being converted")
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            model_sha256 = file_sha256(Path(temp))
            os.replace(temp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        # The model first, then the sidecar that vouches for it: a crash in between
        # leaves no sidecar, so the next start converts again.
        _write_atomically(model_sha256.encode("ascii") + b"\n", _sidecar(target))
    return target
