"""The security suite (issue 12): every attack goes through a real HTTP server.

`live` serves the test app (tests/conftest.py: fake engine, fresh store, fake clock) on
127.0.0.1 with werkzeug's threaded server, so requests cross a socket, headers are
parsed by the real server and boto3 signs for real. `call` sends one request to it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import urllib3
from flask import Flask
from werkzeug.serving import make_server

from tests.emulator_server import LiveServer

# How often the server thread looks for a shutdown request. serve_forever's default
# (0.5 s) made stopping the server cost half a second in every test of this suite.
SHUTDOWN_POLL_S = 0.02


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """Minimal client for the live server: raw control over every header and byte."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool = urllib3.PoolManager(retries=False, timeout=30)

    def request(self, method: str, path: str, *, key: str | None = None,
                json_body: Any = None, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                fields: dict[str, Any] | None = None) -> Reply:
        sent = dict(headers or {})
        if key is not None:
            sent.setdefault("Authorization", f"Bearer {key}")
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        if fields is not None:
            response = self._pool.request(method, self.url + path, fields=fields,
                                          headers=sent)
        else:
            response = self._pool.request(method, self.url + path, body=body, headers=sent)
        return Reply(response.status, dict(response.headers), response.data)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)


def serve(app: Flask) -> LiveServer:
    """tests.emulator_server.serve, stopping within SHUTDOWN_POLL_S."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live",
                              kwargs={"poll_interval": SHUTDOWN_POLL_S}, daemon=True)
    thread.start()
    return LiveServer(app, server, thread)


@pytest.fixture
def live(app: Flask) -> Iterator[LiveServer]:
    server = serve(app)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(live: LiveServer) -> Http:
    return Http(live.url)
