"""Review callbacks (issue 17, item 1): a key's webhook, the outbox of deliveries, the
rules for callback addresses and the signature a receiver checks.

A decision that went to human review becomes final later (a reviewer's last vote, the
review's expiry, the subject's erasure). When the key that requested it has a webhook,
that moment also writes one outbox row (a delivery) in the same transaction, so a crash
loses no callback; `faceapi webhooks deliver` sends it, retrying with backoff.

Delivery is at least once: a worker killed after the receiver got the request but
before the outcome was stored sends it again (same delivery id, same body). A receiver
that keeps the delivery ids it has applied (`Faceapi-Delivery-Id`) sees each final
decision exactly once.

No network, no framework here: `check_url` judges the text of a URL and IP literals;
the sender (faceapi/adapters/webhook_sender.py) resolves host names at delivery time and
judges every address with `address_allowed`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import SplitResult, urlsplit

from faceapi.domain.errors import FaceApiError, NotFound

MAX_URL_LENGTH = 2048
SIGNATURE_HEADER = "Faceapi-Signature"
DELIVERY_ID_HEADER = "Faceapi-Delivery-Id"
EVENT_HEADER = "Faceapi-Event"
EVENT_DECISION_FINAL = "decision.final"
# The only host for which a development setting may allow plain http.
HTTP_LOOPBACK_HOST = "127.0.0.1"


class WebhookUrlRefused(FaceApiError):
    """The URL is not an allowed callback address (scheme, host, address)."""

    code = "webhook_url_refused"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed: given up
    CANCELLED = "cancelled"  # the key's webhook was removed or the key revoked first


@dataclass(frozen=True)
class Webhook:
    """A key's callback address; the signing secret is kept sealed by the store."""

    key_id: str
    url: str
    created_at: datetime
    created_by: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One outbox row: a final decision to send to the requester key's webhook."""

    id: str  # the delivery id a receiver deduplicates on
    key_id: str
    decision_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    lease_until: datetime | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class AddressRules:
    """Where callbacks may go (FACEAPI_WEBHOOK_* settings, docs/webhooks.md).

    `hosts`: host names or IP literals; "*.example.com" matches any name under
    example.com. Empty: no webhook can be registered. `networks`: CIDRs of non-public
    addresses a callback may reach (a private receiver); every other address must be
    globally routable. `http_loopback`: development and tests only, http:// to
    127.0.0.1 (which `networks` must still allow)."""

    hosts: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    http_loopback: bool = False

    def parsed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.networks]


def _host_listed(host: str, hosts: tuple[str, ...]) -> bool:
    for listed in hosts:
        entry = listed.strip().lower().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def address_allowed(address: str, rules: AddressRules) -> bool:
    """Whether a resolved address may be connected to: inside an allowed network, or
    globally routable (never loopback, private, link-local such as 169.254.169.254,
    multicast, reserved or unspecified unless a network allows it explicitly)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in rules.parsed_networks()):
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback
                                 or ip.is_link_local or ip.is_private
                                 or ip.is_unspecified)


def _refuse(why: str) -> WebhookUrlRefused:
    return WebhookUrlRefused(f"webhook URL refused: {why}", details={"reason": why})


def check_url(url: str, rules: AddressRules) -> SplitResult:
    """The parsed URL when its text is an allowed callback address, else
    WebhookUrlRefused naming why. Host names are resolved and judged again when each
    delivery is sent (DNS may change after registration)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise _refuse("length")
    if any(ord(c) < 0x21 or ord(c) == 0x7f for c in url):
        raise _refuse("control_or_space")
    if not url.isascii():  # IDN hosts as punycode, paths percent-encoded
        raise _refuse("not_ascii")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("unparsable") from None
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise _refuse("no_host")
    if parts.username is not None or parts.password is not None:
        raise _refuse("credentials_in_url")
    if parts.fragment:
        raise _refuse("fragment")
    if port == 0:
        raise _refuse("port")
    if parts.scheme == "http":
        if not (rules.http_loopback and host == HTTP_LOOPBACK_HOST):
            raise _refuse("https_required")
    elif parts.scheme != "https":
        raise _refuse("https_required")
    if not _host_listed(host, rules.hosts):
        raise _refuse("host_not_allowed")
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None and not address_allowed(str(literal), rules):
        raise _refuse("address_not_allowed")
    return parts


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>`."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body,
                   hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, now: int,
                     tolerance_seconds: int = 300) -> bool:
    """What a receiver does (docs/webhooks.md has the same in a few lines): recompute the
    HMAC, compare in constant time, refuse a timestamp outside the tolerance (replay)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = signature_header(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def backoff(attempts: int, *, base_seconds: int, cap_seconds: int = 3600) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base ...,
    at most `cap_seconds`."""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1)))
