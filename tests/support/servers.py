"""Real servers for tests that need processes of their own: a PostgreSQL cluster and a
Redis that a test may stop, kill and start again (never the shared ones on 5432/6379),
and gunicorn with deploy/gunicorn.conf.py, as `make serve` runs it.

Every wait here is bounded; a server that does not come up fails the test with the tail
of its log instead of hanging it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("FACEAPI_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(parent: int) -> set[int]:
    """The live child processes of `parent` (a gunicorn master's workers), from /proc."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields[0] is the state, fields[1] the parent pid; Z: died, not yet reaped.
        if int(fields[1]) == parent and fields[0] != "Z":
            pids.add(int(stat.parent.name))
    return pids


def _tcp_address(field: str) -> tuple[str, int]:
    """An IPv4 `address:port` of /proc/net/tcp (hex, the address in host byte order)."""
    address, port = field.split(":")
    return socket.inet_ntoa(bytes.fromhex(address)[::-1]), int(port, 16)


def worker_holding(master: int, client: socket.socket, *, timeout: float = 10) -> int:
    """The pid of the worker of gunicorn `master` that accepted `client`'s connection,
    seen by the server from outside: the server end of the connection in
    /proc/net/tcp (its peer is the client's address), and the worker whose file
    descriptors hold that socket. Nothing is asked of the server. A connection still
    waiting in the listen queue belongs to no worker yet: polled until `timeout`."""
    peer = client.getsockname()[:2]
    server = client.getpeername()[:2]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if _tcp_address(fields[1]) == server and _tcp_address(fields[2]) == peer \
                    and fields[9] != "0":  # inode 0: not accepted yet
                inodes.add(f"socket:[{fields[9]}]")
        for pid in children(master):
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                    return pid
        time.sleep(0.01)
    raise ServerFailed(f"no worker of {master} accepted the connection from {peer} "
                       f"within {timeout} s")


def random_loopback() -> str:
    """A loopback source address of its own (127.x.y.z), so rate-limit buckets per
    address start empty for whoever uses it."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class ServerFailed(RuntimeError):
    """A server did not start (or stop) in time; the message holds its log's tail."""


# --- PostgreSQL --------------------------------------------------------------------------

def postgres_missing() -> str | None:
    """Why a private PostgreSQL cluster cannot be made here, or None."""
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).is_file():
            return f"PostgreSQL binaries not found in {PG_BIN} (FACEAPI_TEST_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run PostgreSQL as"
        if not shutil.which("runuser"):
            return "running as root and `runuser` is missing (needed to run PostgreSQL)"
    return None


@dataclass
class PostgresCluster:
    """A cluster of our own in a new temporary directory, on a free port, trust auth.
    PostgreSQL refuses to run as root: when we are root, the directory and the server
    belong to the `postgres` user (a test's own tmp_path is not reachable by it)."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="faceapi-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [*args]
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run its tools as the `postgres` user.
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise ServerFailed(f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                               f"{done.stderr.decode(errors='replace')[-2000:]}\n"
                               f"{_tail(self.log)}")

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        with (self.data / "postgresql.conf").open("a") as conf:
            # Private, small and fast: no durability needed for a test's data, loopback only.
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 50\nshared_buffers = 16MB\n")

    def start(self, timeout: float = 30) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-w", "-t", str(int(timeout)), "start", timeout=timeout + 5)

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """Stop the server: `fast` ends every session (what a restart does to clients)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "-t", str(int(timeout)), "stop", timeout=timeout + 5)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        """Stop the server if it runs (immediately) and delete the cluster's files."""
        if self.running():
            with contextlib.suppress(ServerFailed):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)


# --- Redis -------------------------------------------------------------------------------

def redis_missing() -> str | None:
    return None if shutil.which("redis-server") else "redis-server not found on PATH"


@dataclass
class RedisServer:
    """`redis-server` on a free port with no persistence; `kill()` is SIGKILL."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.root / f"redis-{self.port}.log"

    def start(self, timeout: float = 10) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.root)], stdout=handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise ServerFailed(f"redis-server did not answer:\n{_tail(self.log)}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


# --- gunicorn ----------------------------------------------------------------------------

def faceapi_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any FACEAPI_* or metrics setting of its own,
    plus `extra`: what a server or CLI command started by a test sees."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEAPI_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(extra)
    return env


def faceapi_cli(env: Mapping[str, str], *args: str,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the `faceapi` command (the venv's) with `env`."""
    return subprocess.run([str(Path(sys.executable).parent / "faceapi"), *args], cwd=REPO,
                          env=dict(env), capture_output=True, text=True, timeout=timeout,
                          check=False)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The error code of an error envelope, if this is one."""
        try:
            body = self.json()
        except ValueError:
            return None
        error = body.get("error") if isinstance(body, dict) else None
        return error.get("code") if isinstance(error, dict) else None


@dataclass
class Gunicorn:
    """gunicorn -c deploy/gunicorn.conf.py wsgi:app, as `make serve` starts it."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]
    host: str
    port: int
    source: str = field(default_factory=random_loopback)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, *, key: str | None = None,
                body: Any = None, timeout: float = 30,
                source: str | None = None) -> Response:
        """One request on a fresh connection (so gunicorn hands it to any free worker).
        Raises OSError (or http.client's errors) when the connection breaks."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout,
                                          source_address=(source or self.source, 0))
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers=headers)
            answer = conn.getresponse()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()},
                            answer.read())
        finally:
            conn.close()

    def worker_pids(self) -> set[int]:
        """The master's live children (its workers), read from /proc."""
        return children(self.process.pid)

    def serving_workers(self) -> set[int]:
        """The workers holding an accepted client connection now (inside a request):
        their open sockets matched with the established TCP connections on our port."""
        established = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == self.port and fields[3] == "01":  # 01: ESTABLISHED
                    established.add(fields[9])  # the socket's inode
        serving = set()
        for pid in self.worker_pids():
            try:
                links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            except OSError:
                continue
            if any(link.startswith("socket:[") and link[8:-1] in established
                   for link in links):
                serving.add(pid)
        return serving

    def wait_workers(self, count: int, *, timeout: float = 60,
                     other_than: frozenset[int] = frozenset()) -> set[int]:
        """Wait until `count` workers run, none of them in `other_than`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            pids = self.worker_pids()
            if len(pids) == count and not pids & other_than:
                return pids
            time.sleep(0.02)
        raise ServerFailed(f"gunicorn has workers {self.worker_pids()}, wanted {count} "
                           f"new ones:\n{_tail(self.log)}")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerFailed(f"gunicorn exited ({self.process.returncode}):\n"
                               f"{_tail(self.log)}")

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if self.request("GET", "/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerFailed(f"gunicorn did not answer /healthz:\n{_tail(self.log)}")

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gunicorn(env: Mapping[str, str], log: Path, *, workers: int = 2,
                   timeout: float = 120) -> Gunicorn:
    """Start gunicorn with `env` (see faceapi_env) on a free loopback port and wait for
    /healthz; the caller stops it (Gunicorn.stop)."""
    port = free_port()
    full = {**env, "FACEAPI_BIND": f"127.0.0.1:{port}", "FACEAPI_WORKERS": str(workers)}
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
             "wsgi:app"], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=full)
    server = Gunicorn(full, log, process, "127.0.0.1", port)
    try:
        server.wait_healthy(timeout)
    except BaseException:
        server.stop()
        raise
    return server
