"""`make test`: the whole suite on SQLite, then the store tests again on PostgreSQL
when it answers on 127.0.0.1:5432 (CI machines have it; a laptop may not).

Both passes run on every CPU with pytest-xdist (`-n <cpus> --dist loadgroup`; the
browser tests stay together in one worker). FACEAPI_TEST_WORKERS=0 runs in one
process; any other number sets the worker count."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys


def postgres_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def parallel_args() -> list[str]:
    if importlib.util.find_spec("xdist") is None:
        return []
    workers = int(os.environ.get("FACEAPI_TEST_WORKERS") or os.cpu_count() or 1)
    if workers < 2:
        return []
    return ["-n", str(workers), "--dist", "loadgroup"]


def main() -> int:
    args = [*parallel_args(), *sys.argv[1:]]
    steps = [[sys.executable, "-m", "pytest", "-q", *args]]
    if postgres_answers():
        steps.append([sys.executable, "-m", "pytest", "-q", "-m", "postgres",
                      "--db=postgresql", *args])
    else:
        print("PostgreSQL not answering on 127.0.0.1:5432: store tests ran on SQLite only")
    for step in steps:
        print("+", " ".join(step), flush=True)
        code = subprocess.call(step)
        if code not in (0, 5):  # 5: no tests collected for that selection
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
