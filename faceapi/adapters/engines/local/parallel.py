"""Running the two HOG detections of a comparison at the same time.

dlib's HOG detector releases the GIL while it scans (`py::gil_scoped_release` in dlib
20.0's tools/python/src/simple_object_detector_py.h), so two threads detect on two cores
at once; the shape predictor, `get_face_chip` and the CNN detector hold the GIL and gain
nothing from threads. A detector instance keeps its feature pyramid in itself
(`object_detector::operator()` is not const; dlib documents concurrent use of one
instance as unsafe), so the helper thread scans with its own detector, built once per
thread. Each image is still detected by exactly the same code on the same pixels, so
the answers are those of the sequential path (bench/parity.py --detect-threads checks
it over the shared data set).

Bounded: one helper thread per process for FACEAPI_DETECT_THREADS=2 (the calling
thread does the other half). When the helper is busy (gunicorn threads sharing a
worker), the second detection runs in the calling thread, as without this module, so a
request never waits for another's work. The helper is made on first use in each process,
after gunicorn's fork (threads do not survive a fork).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import ctypes.util
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import dlib

from faceapi.adapters.engines.local.models import HOG, Models

A = TypeVar("A")
R = TypeVar("R")
S = TypeVar("S")

_local = threading.local()


def _malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim(0), or nothing elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]

    def run() -> None:
        trim(0)

    return run


# Freed memory stays in glibc's arenas for the next detection to reuse (re-faulting it
# cost 3-9% of a compare, docs/engines.md). An image larger than the detection size
# leaves buffers of other sizes (its downscaled copy, the orientation search's turned
# passes) that the next request would not reuse but add to: the crafted images of
# bench/decode_budget.py peaked 60 MB higher one after another. After such an image,
# the engine gives the freed memory back.
release_freed_memory = _malloc_trim()


def usable_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota
    (a container's CPU limit, rounded up) when one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open(cpu_max, encoding="ascii") as limit:
            quota, period = limit.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def core_idle(path: str = "/proc/loadavg", cores: Callable[[], int] = usable_cores) -> bool:
    """Whether a core is free right now: the kernel's count of runnable threads (the
    fourth field of /proc/loadavg, this thread included) is below the cores this
    process may use. A scan split over two threads costs a little more CPU than one
    thread's (the halves both build pyramid levels); on busy cores that would only take
    time from other requests (measured: 2 workers saturated by 4 clients, 14.5 verify/s
    split on every request against 16.6 unsplit). The count is the host's (a container
    sees the host's /proc/loadavg), so under a CPU limit on a busy host this says "busy"
    and the scan stays on one thread: the safe side. Where the count cannot be read, a
    core counts as free."""
    try:
        with open(path, encoding="ascii") as loadavg:
            running = int(loadavg.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return running < cores()


def thread_models(models: Models) -> Models:
    """`models` with this thread's own HOG detector and lock: the other models (shape
    predictors, recognizer) are shared as they are. The helper thread does not split its
    own scans (hog_split.py): it is the thread a split would need."""
    mine: Models | None = getattr(_local, "models", None)
    if mine is None or mine.shape68 is not models.shape68:
        mine = dataclasses.replace(models, hog=dlib.get_frontal_face_detector(),
                                   lock=threading.Lock(), split=None)
        _local.models = mine
    return mine


class PairRunner:
    """Runs fn(a) and fn(b) at the same time when a helper thread is free."""

    def __init__(self, threads: int) -> None:
        self._helpers = max(0, threads - 1)
        self._state: tuple[int, threading.BoundedSemaphore, ThreadPoolExecutor] | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._helpers > 0

    def _pool(self) -> tuple[threading.BoundedSemaphore, ThreadPoolExecutor]:
        """This process's helper and its free-slot count, made on first use: a pool
        made before a fork has no threads in the child, and a semaphore copied while
        held would stay held there."""
        with self._lock:
            if self._state is None or self._state[0] != os.getpid():
                self._state = (os.getpid(), threading.BoundedSemaphore(self._helpers),
                               ThreadPoolExecutor(max_workers=self._helpers,
                                                  thread_name_prefix="faceapi-detect"))
            return self._state[1], self._state[2]

    def pair(self, fn: Callable[[A], R], helper_fn: Callable[[A], S], a: A,
             b: A, calling_fn: Callable[[A], S]) -> tuple[R, Callable[[], S]]:
        """fn(a), and a getter of b's result: helper_fn(b), started on the helper thread
        now when one is free (and finished before this returns), else calling_fn(b),
        computed by the getter when called, as the sequential code did (the two differ
        only in the thread's own models). Either way fn(a)'s exception comes first
        and b's result or exception comes from the getter, so callers keep their
        sequential order of errors (a source without a face is reported as such even
        when the target cannot be read)."""
        with self.helper() as submit:
            if submit is None:
                return fn(a), lambda: calling_fn(b)
            future: Future[S] = submit(lambda: helper_fn(b))
            # An exception here leaves the context, which waits for b first: the helper
            # never works for a request that has ended.
            first = fn(a)
            future.exception()  # waits for b without raising; the getter raises
        # The slot is free again before this returns, so the request's next compare
        # finds the helper free.
        return first, future.result

    @contextlib.contextmanager
    def helper(self) -> Iterator[Callable[[Callable[[], Any]], Future[Any]] | None]:
        """The helper thread for as long as the context lasts, as a function that starts
        work on it; None when it is busy (or there is none), never waited for. On exit
        the context waits for the work it started, so the helper never works for a
        request that has ended, then frees the helper."""
        if not self.enabled:
            yield None
            return
        slots, pool = self._pool()
        if not slots.acquire(blocking=False):
            yield None
            return
        started: list[Future[Any]] = []
        context = contextvars.copy_context()

        def submit(fn: Callable[[], Any]) -> Future[Any]:
            future = pool.submit(context.copy().run, fn)
            started.append(future)
            return future

        try:
            yield submit
        finally:
            for future in started:
                future.exception()  # waits without raising
            slots.release()


def helper_capable(models: Models) -> bool:
    """Only HOG releases the GIL; the CNN would run on one core either way."""
    return models.detector_kind == HOG
