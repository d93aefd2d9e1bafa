"""Authenticate a request to the Rekognition-compatible endpoint by its AWS Signature
Version 4, as AWS does: the access key id names one of our API keys (its public id),
and the signature must be the HMAC, under that key's SigV4 secret, of the request as
received: method, path, query, the signed headers (host, x-amz-date and every x-amz-*
header at least) and the SHA-256 of the actual body.

Replay: X-Amz-Date must be within REPLAY_WINDOW of the server's clock and the
credential scope's date must be X-Amz-Date's. Inside the window an identical request
replayed byte for byte passes, as it does at AWS (which allows 15 minutes); TLS keeps
requests from being captured in the first place (docs/security.md).

Refusals carry AWS's exception names so SDKs report them as AWS would; the API layer
audits each one once (`auth.fail`), with the key's public id, never a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from faceapi.domain import access
from faceapi.domain import sigv4 as s
from faceapi.domain.clock import Clock
from faceapi.services.keys import ID_LENGTH, AuthenticationFailed, admit
from faceapi.services.ports import UnitOfWorkFactory

SERVICE = "rekognition"
REPLAY_WINDOW = timedelta(minutes=5)
# Headers a signature must cover whatever the client chose to sign: which host it was
# meant for and when. Every x-amz-* header present must be signed as well (X-Amz-Target
# names the operation).
REQUIRED_SIGNED = ("host", "x-amz-date")
_KEY_ID_RE = re.compile(rf"^[A-Za-z0-9]{{{ID_LENGTH}}}$")
# A secret no key has, so an unknown key id costs the same HMAC work as a known one.
_NO_SECRET = "\x00" * 40

MISMATCH_MESSAGE = ("The request signature we calculated does not match the signature "
                    "you provided. Check your AWS Secret Access Key and signing method. "
                    "Consult the service documentation for details.")
UNRECOGNIZED_MESSAGE = "The security token included in the request is invalid."


class SignatureRefused(AuthenticationFailed):
    """A SigV4 request refused. `code` picks the AWS exception the emulator answers
    with (faceapi/entrypoints/web/emulator/protocol.py); `reason` is for the audit trail and
    logs."""

    def __init__(self, code: str, reason: str, message: str, *, key_id: str | None = None,
                 role: str | None = None) -> None:
        super().__init__(reason, key_id=key_id, role=role)
        self.code = code
        self.message = message
        self.args = (message,)


def _incomplete(reason: str, message: str, key_id: str | None = None) -> SignatureRefused:
    return SignatureRefused("incomplete_signature", reason, message, key_id=key_id)


def _invalid(reason: str, message: str, key_id: str | None = None) -> SignatureRefused:
    return SignatureRefused("invalid_signature", reason, message, key_id=key_id)


@dataclass(frozen=True)
class SignedRequest:
    """A request as it arrived: the path and query still percent-encoded, header names
    lower case (repeated headers joined by ","), the body's exact bytes."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")


def _check_header(req: SignedRequest) -> s.Authorization:
    header = req.authorization
    if not header.strip():
        raise SignatureRefused("missing_authentication_token", "missing_signature",
                               "Missing Authentication Token")
    if not s.is_sigv4(header):
        # A Bearer key (or anything else) is not a signature: this endpoint speaks SigV4.
        raise _incomplete("not_sigv4", "Authorization header must be AWS Signature "
                                       "Version 4 (AWS4-HMAC-SHA256)")
    try:
        return s.parse_authorization(header)
    except s.MalformedAuthorization as exc:
        raise _incomplete("malformed_signature", str(exc)) from exc


def _check_signed_headers(req: SignedRequest, auth: s.Authorization,
                          key_id: str | None) -> None:
    signed = set(auth.signed_headers)
    missing = [name for name in REQUIRED_SIGNED if name not in signed]
    missing += sorted(name for name in req.headers
                      if name.startswith("x-amz-") and name not in signed)
    if missing:
        raise _incomplete("unsigned_headers", "these headers must be signed: "
                          + ", ".join(missing), key_id)
    absent = [name for name in auth.signed_headers if name not in req.headers]
    if absent:
        raise _incomplete("signed_header_absent", "signed headers missing from the "
                          "request: " + ", ".join(absent), key_id)


def _check_time(req: SignedRequest, auth: s.Authorization, now: datetime,
                key_id: str | None) -> str:
    timestamp = req.headers["x-amz-date"].strip()
    try:
        signed_at = s.parse_timestamp(timestamp)
    except s.MalformedAuthorization as exc:
        raise _incomplete("malformed_date", str(exc), key_id) from exc
    if auth.date != timestamp[:8]:
        raise _invalid("scope_date_mismatch", "Date in Credential scope does not match "
                       f"YYYYMMDD from ISO-8601 version of date from HTTP: "
                       f"'{auth.date}' != '{timestamp[:8]}'", key_id)
    if signed_at < now - REPLAY_WINDOW:
        raise _invalid("signature_expired", f"Signature expired: {timestamp} is now earlier "
                       f"than {s.format_timestamp(now - REPLAY_WINDOW)} "
                       f"({s.format_timestamp(now)} - 5 min.)", key_id)
    if signed_at > now + REPLAY_WINDOW:
        raise _invalid("signature_not_yet_current", f"Signature not yet current: "
                       f"{timestamp} is still later than "
                       f"{s.format_timestamp(now + REPLAY_WINDOW)} "
                       f"({s.format_timestamp(now)} + 5 min.)", key_id)
    return timestamp


def authenticate_signed(req: SignedRequest, *, read_uow: UnitOfWorkFactory,
                        write_uow: UnitOfWorkFactory, clock: Clock,
                        now: datetime) -> access.Actor:
    """The Actor whose SigV4 secret signed `req`, or SignatureRefused.

    `now` is the server's wall clock (the client signs with its own), `clock` the
    app's, which decides key expiry as for Bearer keys."""
    auth = _check_header(req)
    # Only an id shaped like ours is ever recorded: an access key id field holding a
    # whole Bearer key must not reach the audit trail or the logs.
    key_id = auth.access_key_id if _KEY_ID_RE.match(auth.access_key_id) else None
    if auth.service != SERVICE:
        raise _invalid("wrong_service", f"Credential should be scoped to correct service: "
                       f"'{SERVICE}'.", key_id)
    _check_signed_headers(req, auth, key_id)
    timestamp = _check_time(req, auth, now, key_id)
    body_sha256 = s.payload_sha256(req.body)
    claimed = req.headers.get("x-amz-content-sha256")
    if claimed is not None and claimed.strip() != body_sha256:
        # The body is always hashed here; a client-declared hash (or UNSIGNED-PAYLOAD)
        # that differs is a body changed after signing.
        raise _invalid("payload_hash_mismatch", "The provided 'x-amz-content-sha256' header "
                       "does not match what was computed.", key_id)
    key = secret = None
    if key_id is not None:
        with read_uow() as uow:
            key = uow.api_keys.get(key_id)
            secret = uow.api_keys.sigv4_secret(key_id) if key is not None else None
    canonical = s.canonical_request(req.method, s.canonical_uri(req.path),
                                    s.canonical_query(req.query), req.headers,
                                    signed=auth.signed_headers, payload_sha256=body_sha256)
    expected = s.signature(secret or _NO_SECRET, auth, timestamp, canonical)
    matches = s.signatures_match(expected, auth.signature)
    if key is None or secret is None:
        # Unknown id, or a key made before SigV4 secrets existed (rotate it).
        raise SignatureRefused("unrecognized_client",
                               "unknown_key" if key is None else "no_sigv4_secret",
                               UNRECOGNIZED_MESSAGE, key_id=key_id)
    if not matches:
        raise _invalid("signature_mismatch", MISMATCH_MESSAGE, key_id)
    try:
        return admit(key, write_uow=write_uow, clock=clock)
    except AuthenticationFailed as exc:
        # Revoked or expired: the signer holds the secret, so say which.
        raise SignatureRefused("unrecognized_client", exc.reason,
                               f"{UNRECOGNIZED_MESSAGE} (the key is {exc.reason})",
                               key_id=exc.key_id, role=exc.role) from exc
