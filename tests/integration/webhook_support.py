"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that keeps every
request it gets, can stall (to let a test kill the sender mid-delivery), and applies
each delivery id once, as docs/webhooks.md tells receivers to."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from faceapi.domain.webhooks import DELIVERY_ID_HEADER, SIGNATURE_HEADER, verify_signature


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def delivery_id(self) -> str:
        return self.headers[DELIVERY_ID_HEADER]

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        header = self.headers[SIGNATURE_HEADER]
        timestamp = int(dict(p.split("=", 1) for p in header.split(","))["t"])
        # The deliverer's clock may be the tests' fake clock: judge the HMAC, and the
        # tolerance against the header's own time (unit tests check the window).
        return verify_signature(secret, header, self.body, now=timestamp)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)  # delivery id -> decision
    status: int = 200
    stall_first: bool = False
    got_request: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def record(self, received: Received) -> bool:
        """Keep the request; True when this one should stall."""
        self.requests.append(received)
        stall = self.stall_first and len(self.requests) == 1
        # Exactly once from the receiver's view: a repeated delivery id is not applied.
        self.applied.setdefault(received.delivery_id, received.json())
        self.got_request.set()
        return stall


def serve_receiver() -> Iterator[Receiver]:
    receiver: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert receiver is not None
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            stall = receiver.record(Received(self.path, dict(self.headers.items()), body))
            if stall:
                receiver.release.wait(20)
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/faceapi")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
