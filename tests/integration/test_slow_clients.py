"""A client that promises a body and stops sending lets its gunicorn worker go after the
idle limit, with a 400 (faceapi/entrypoints/web/slow_clients.py).

Found by the hostile sweep: `Content-Length: 1000000` with a few bytes of body held a
sync worker until gunicorn's worker timeout, which then answered 500; two such
connections stopped both workers, and every other client waited the whole timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceapi.entrypoints.web.slow_clients import CLIENT_IDLE_SECONDS
from tests.support.servers import REPO, Gunicorn, faceapi_cli, faceapi_env, start_gunicorn

WORKER_TIMEOUT = 40  # seconds; well above the idle limit, so the two cannot be confused


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Gunicorn, str]]:
    env = faceapi_env({"FACEAPI_ENV": "development", "FACEAPI_DATA_DIR": str(tmp_path / "data"),
                       "FACEAPI_LOG_FORMAT": "json", "FACEAPI_POLICIES_DIR": str(REPO / "policies"),
                       "FACEAPI_TIMEOUT": str(WORKER_TIMEOUT)})
    for args in (("db", "upgrade"), ("keys", "create", "--role", "app", "--name", "slow",
                                     "--owner", "system:slow-test")):
        done = faceapi_cli(env, *args)
        assert done.returncode == 0, done.stderr[-2000:]
    key = done.stdout.strip()
    started = start_gunicorn(env, tmp_path / "gunicorn.log", workers=2)
    try:
        yield started, key
    finally:
        started.stop(timeout=20)


def stalled_upload(server: Gunicorn, key: str) -> socket.socket:
    """Headers promising a 1 MB JSON body, then 10 bytes of it, then nothing."""
    sock = socket.create_connection((server.host, server.port), timeout=WORKER_TIMEOUT * 2,
                                    source_address=(server.source, 0))
    sock.sendall(f"POST /v1/faces/detect HTTP/1.1\r\nHost: faceapi\r\nConnection: close\r\n"
                 f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 1000000\r\n\r\n".encode() + b'{"image": ')
    return sock


def answer(sock: socket.socket) -> bytes:
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_stalled_uploads_free_their_workers_after_the_idle_limit_with_a_400(
        server: tuple[Gunicorn, str]) -> None:
    gunicorn, key = server
    started = time.monotonic()
    # One per worker: while they hold both, no other request can be served.
    held = [stalled_upload(gunicorn, key) for _ in range(2)]
    reply = gunicorn.request("GET", "/healthz", timeout=WORKER_TIMEOUT * 2)
    served_after = time.monotonic() - started
    assert reply.status == 200
    for sock in held:
        status_line = answer(sock).split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 400"), status_line
    # Freed by the idle limit, not by gunicorn killing the workers at its timeout.
    assert served_after < CLIENT_IDLE_SECONDS + 10 < WORKER_TIMEOUT, served_after
    assert time.monotonic() - started < CLIENT_IDLE_SECONDS + 10
    gunicorn.check_alive()
