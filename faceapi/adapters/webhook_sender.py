"""POSTs review callbacks (faceapi/services/webhooks.py) to receivers, and nowhere else.

At every delivery, not only at registration: the URL is checked again against the
current settings, the host name is resolved and *every* address it resolves to must be
allowed (`faceapi.domain.webhooks.address_allowed`: public, or inside
FACEAPI_WEBHOOK_ALLOWED_NETWORKS), and the connection goes to an address that was
checked, so a name that resolves to a public address for the check and to
169.254.169.254 for the connection (DNS rebinding) cannot redirect us. No redirect is
followed (http.client follows none), one total deadline bounds the whole attempt (a
watchdog shuts the socket when it passes, so a receiver dripping bytes cannot hold a
worker) and nothing of the response but its status line and headers is read.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from faceapi.domain.webhooks import AddressRules, WebhookUrlRefused, address_allowed, check_url
from faceapi.services.ports import SendResult

log = structlog.get_logger(__name__)

Resolver = Callable[..., list[tuple[Any, ...]]]


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    scheme: str
    path: str
    host_header: str


class HttpWebhookSender:
    """WebhookSender over http.client with the address checks above."""

    def __init__(self, rules: AddressRules, *, timeout_seconds: float,
                 resolver: Resolver = socket.getaddrinfo,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._rules = rules
        self._timeout = timeout_seconds
        self._resolve = resolver
        self._ssl = ssl_context or ssl.create_default_context()

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        try:
            parts = check_url(url, self._rules)
        except WebhookUrlRefused:
            return SendResult(None, "url_not_allowed")
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = self._resolve(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return SendResult(None, "dns_failed")
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            return SendResult(None, "dns_failed")
        refused = [a for a in addresses if not address_allowed(a, self._rules)]
        if refused:
            log.warning("webhook_address_refused", host=host[:128], address=refused[0])
            return SendResult(None, "address_not_allowed")
        target = _Target(host=host, port=port, scheme=parts.scheme,
                         path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                         host_header=parts.netloc.rpartition("@")[2])
        return self._post(addresses, target, body, headers,
                          time.monotonic() + self._timeout)

    def _post(self, addresses: list[str], target: _Target, body: bytes,
              headers: Mapping[str, str], deadline: float) -> SendResult:
        host, port = target.host, target.port
        sock: socket.socket | None = None
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return SendResult(None, "timeout")
            try:
                sock = socket.create_connection((address, port), timeout=remaining)
                break
            except TimeoutError:
                return SendResult(None, "timeout")
            except OSError:
                continue
        if sock is None:
            return SendResult(None, "connect_failed")
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            if target.scheme == "https":
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
            conn = http.client.HTTPConnection(host, port, timeout=self._timeout)
            conn.sock = sock  # the checked address, never a second lookup
            conn.request("POST", target.path, body=body,
                         headers={**headers, "Host": target.host_header,
                                  "Content-Length": str(len(body)), "Connection": "close"})
            response = conn.getresponse()
            status = response.status
        except ssl.SSLError:
            return SendResult(None, "tls_failed")
        except TimeoutError:
            return SendResult(None, "timeout")
        except (OSError, http.client.HTTPException):
            timed_out = time.monotonic() >= deadline
            return SendResult(None, "timeout" if timed_out else "connection_failed")
        finally:
            watchdog.cancel()
            _shut(sock)
        if 300 <= status < 400:
            return SendResult(status, "redirect_not_followed")
        return SendResult(status, None if 200 <= status < 300 else "http_status")


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
