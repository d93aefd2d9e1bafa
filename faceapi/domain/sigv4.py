"""AWS Signature Version 4, the arithmetic only: parse the Authorization header, build
the canonical request and the string to sign, derive the signing key, sign.

Written from AWS's published description of SigV4 ("Create a signed AWS API
request": canonical request, string to sign, signing key kSecret -> kDate -> kRegion ->
kService -> kSigning) and checked against AWS's published example values and against
botocore's signer in tests/security/test_sigv4.py. No Flask here: the API layer
(faceapi/entrypoints/web/api/sigv4.py) hands in what arrived on the wire, byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()

# Bounds on what a client may send, so parsing costs nothing worth attacking.
MAX_HEADER_LENGTH = 4096
MAX_SIGNED_HEADERS = 64

_ACCESS_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_+=.@-]{1,128}$")
_DATE_RE = re.compile(r"^\d{8}$")
_SCOPE_PART_RE = re.compile(r"^[a-z0-9-]{1,64}$")
_HEADER_NAME_RE = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_SIGNATURE_RE = re.compile(r"^[0-9a-f]{64}$")
_TIMESTAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")
# The characters SigV4 never percent-encodes (RFC 3986 unreserved).
_UNRESERVED = "-_.~"


class MalformedAuthorization(ValueError):
    """The Authorization header is not a well-formed SigV4 header."""


@dataclass(frozen=True)
class Authorization:
    """The three parts of `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
    Signature=...`."""

    access_key_id: str
    date: str  # YYYYMMDD, the credential scope's date
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        """`<date>/<region>/<service>/aws4_request`."""
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def is_sigv4(header: str) -> bool:
    """Whether an Authorization header claims to be SigV4 (well-formed or not)."""
    return header.lstrip().upper().startswith(ALGORITHM)


def parse_authorization(header: str) -> Authorization:
    """The parts of a SigV4 Authorization header; MalformedAuthorization otherwise."""
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedAuthorization("the Authorization header is too long")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise MalformedAuthorization(f"the algorithm must be {ALGORITHM}")
    parts: dict[str, str] = {}
    for component in rest.split(","):
        name, sep, value = component.strip().partition("=")
        if not sep or name not in ("Credential", "SignedHeaders", "Signature") \
                or name in parts:
            raise MalformedAuthorization(
                "Authorization header requires 'Credential', 'SignedHeaders' and "
                "'Signature' parameters, each once")
        parts[name] = value.strip()
    if len(parts) != 3:
        raise MalformedAuthorization(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            "parameters")
    credential = parts["Credential"].split("/")
    if len(credential) != 5 or credential[4] != TERMINATOR:
        raise MalformedAuthorization(
            "Credential must be <access key id>/<date>/<region>/<service>/aws4_request")
    access_key_id, date, region, service, _ = credential
    if not _ACCESS_KEY_ID_RE.match(access_key_id) or not _DATE_RE.match(date) \
            or not _SCOPE_PART_RE.match(region) or not _SCOPE_PART_RE.match(service):
        raise MalformedAuthorization("the Credential scope is not valid")
    signed = tuple(parts["SignedHeaders"].split(";"))
    if not 0 < len(signed) <= MAX_SIGNED_HEADERS or \
            not all(_HEADER_NAME_RE.match(name) for name in signed) or \
            len(set(signed)) != len(signed):
        raise MalformedAuthorization("SignedHeaders must be lower-case header names "
                                     "separated by ';'")
    if not _SIGNATURE_RE.match(parts["Signature"]):
        raise MalformedAuthorization("Signature must be 64 lower-case hex digits")
    return Authorization(access_key_id=access_key_id, date=date, region=region,
                         service=service, signed_headers=signed,
                         signature=parts["Signature"])


def parse_timestamp(text: str) -> datetime:
    """`20150830T123600Z` (the X-Amz-Date form) as an aware UTC datetime."""
    if not _TIMESTAMP_RE.match(text):
        raise MalformedAuthorization("X-Amz-Date must be YYYYMMDD'T'HHMMSS'Z'")
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise MalformedAuthorization("X-Amz-Date is not a valid time") from exc


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 5.2.4, and empty segments dropped: AWS normalises `//` as well.
    output: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if output:
                output.pop()
        else:
            output.append(segment)
    normalised = "/" + "/".join(output)
    if path.endswith("/") and output:
        normalised += "/"
    return normalised


def canonical_uri(raw_path: str) -> str:
    """The path as the client sent it (still percent-encoded), normalised, then
    URI-encoded once more: every AWS service but S3 signs the doubly encoded path."""
    return quote(_remove_dot_segments(raw_path or "/"), safe="/" + _UNRESERVED)


def canonical_query(raw_query: str) -> str:
    """Each name and value decoded, re-encoded with only unreserved characters left
    bare, sorted by name then value, joined by `&`."""
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe=_UNRESERVED),
                      quote(unquote(value), safe=_UNRESERVED)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _trim_all(value: str) -> str:
    # Leading and trailing space removed, inner runs of spaces collapsed to one.
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, str], signed: Sequence[str]) -> str:
    """`name:value\\n` for each signed header, in the order of SignedHeaders (which
    the client sorted); `headers` has lower-case names. A signed header the request
    does not carry is signed as empty, so the signature simply will not match."""
    return "".join(f"{name}:{_trim_all(headers.get(name, ''))}\n" for name in signed)


def canonical_request(method: str, uri: str, query: str, headers: Mapping[str, str], *,
                      signed: Sequence[str], payload_sha256: str) -> str:
    """The six lines SigV4 signs: method, URI, query, headers, signed names, payload."""
    return "\n".join((method.upper(), uri, query, canonical_headers(headers, signed),
                      ";".join(signed), payload_sha256))


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    return "\n".join((ALGORITHM, timestamp, scope,
                      hashlib.sha256(canonical.encode("utf-8")).hexdigest()))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
    "aws4_request")."""
    k_date = _hmac(f"AWS4{secret}".encode(), date)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, TERMINATOR)


def signature(secret: str, auth: Authorization, timestamp: str, canonical: str) -> str:
    """The hex signature of a canonical request under `auth`'s credential scope."""
    key = signing_key(secret, auth.date, auth.region, auth.service)
    return hmac.new(key, string_to_sign(timestamp, auth.scope, canonical).encode("utf-8"),
                    hashlib.sha256).hexdigest()


def signatures_match(expected: str, presented: str) -> bool:
    """Constant-time comparison: timing must not reveal how many digits were right."""
    return hmac.compare_digest(expected.encode("ascii"), presented.encode("ascii"))


def payload_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
