"""The face descriptor on onnxruntime: dlib's ResNet converted by onnx_convert, fed the
same 150x150 chips dlib cuts (dlib.get_face_chip, one face a call, with the engine's
padding), every face of an image in one batch.

Sessions are made lazily and per process: gunicorn loads the app in the master and
forks workers (preload), and an onnxruntime session's thread pool does not survive a
fork. A session noticed to belong to another process id is replaced, never used.

onnxruntime itself is imported on first use, in the worker, never in the gunicorn master:
a worker forked from a master that had imported it hung at exit (futex wait in the
interpreter's shutdown, with either descriptor runtime), so every graceful stop waited
out gunicorn's graceful_timeout and left the worker behind.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceapi.adapters.engines.local.onnx_files import DESCRIPTOR_SIZE, INPUT_NAME, OUTPUT_NAME

Chips = npt.NDArray[np.uint8]  # (N, 150, 150, 3) RGB


class ProcessSession:
    """One onnxruntime session per process for a model file (or bytes), made on first
    use; shared by OnnxDescriptor and the MMOD detector (mmod_runtime.py)."""

    def __init__(self, model: Path | bytes, *, threads: int) -> None:
        self._model = model
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None  # ort.InferenceSession
        self._pid = -1

    def _options(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Requests are served by gunicorn workers (processes) and threads: each call gets
        # `threads` cores at most, and idle pool threads sleep instead of spinning, so one
        # worker's inference does not take the cores of its neighbours.
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Batches vary in size (one per face of an image): neither a memory arena nor
        # planned memory patterns pay off, and without them a worker holds about 20 MB
        # less for a few percent more time per face.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        options.log_severity_level = 3  # warnings about unused initializers etc. are noise
        return options

    @property
    def pid(self) -> int:
        """The process the current session was made in (-1: none yet)."""
        return self._pid

    def get(self) -> Any:
        pid = os.getpid()
        session = self._session
        if session is not None and self._pid == pid:
            return session
        with self._lock:
            if self._session is None or self._pid != pid:
                import onnxruntime as ort

                model = str(self._model) if isinstance(self._model, Path) else self._model
                self._session = ort.InferenceSession(
                    model, self._options(), providers=["CPUExecutionProvider"])
                self._pid = pid
            return self._session


class OnnxDescriptor:
    """Descriptors of face chips with onnxruntime, one session per process."""

    def __init__(self, model: Path | bytes, *, threads: int) -> None:
        self._session = ProcessSession(model, threads=threads)

    def session(self) -> Any:
        return self._session.get()

    @property
    def session_pid(self) -> int:
        return self._session.pid

    def compute(self, chips: Chips) -> npt.NDArray[np.float32]:
        """(N, 150, 150, 3) uint8 chips -> (N, 128) float32 descriptors."""
        if chips.shape[0] == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), dtype=np.float32)
        batch = np.ascontiguousarray(chips, dtype=np.uint8)
        # InferenceSession.run is safe to call from several threads at once.
        (out,) = self.session().run([OUTPUT_NAME], {INPUT_NAME: batch})
        return np.asarray(out, dtype=np.float32)

    def warm(self) -> None:
        """Create this process's session now (the first request need not pay for it)."""
        self.session()
