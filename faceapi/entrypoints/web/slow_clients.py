"""A client that stops sending is let go: an idle limit on reads from gunicorn's socket.

gunicorn's sync worker serves one connection at a time and reads the body only when
the app asks for it, with no time limit of its own. A request whose Content-Length
promises more than is ever sent (a few bytes of a "1 MB" body) held its worker until
gunicorn's worker timeout (FACEAPI_TIMEOUT, 60 s) killed it, and the client then got a
500; two such connections stopped both workers for the whole timeout. With a timeout on
the socket, a read that waits longer than CLIENT_IDLE_SECONDS for the next bytes raises
TimeoutError, which werkzeug's request stream turns into ClientDisconnected (a 400):
the worker is free again after the idle limit, and the answer is a 4xx, not a 500.

The limit is per read, not per request: a client that keeps sending a byte at a time
can still hold a worker until the worker timeout (docs/security.md: a buffering proxy
in front is the answer to that). Under werkzeug's own server (tests) there is no
gunicorn socket and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Longer than any pause of a live upload; short enough that a stalled connection frees
# its worker well before gunicorn's worker timeout.
CLIENT_IDLE_SECONDS = 10.0


class ClientIdleTimeout:
    """WSGI middleware: set the idle limit on the request's gunicorn socket (the WSGI
    environ's `gunicorn.socket`) before the app reads anything from it, and lift it
    when the app starts its response (the request has been read by then): writing an
    answer to a slow reader stays as it was, blocking without a limit."""

    def __init__(self, app: WSGIApplication, seconds: float = CLIENT_IDLE_SECONDS) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        sock: Any = environ.get("gunicorn.socket")
        if sock is None:
            return self.app(environ, start_response)
        sock.settimeout(self.seconds)

        def lifted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            sock.settimeout(None)  # what gunicorn's workers set: blocking, no limit
            return start_response(status, headers, exc_info)

        return self.app(environ, lifted)
