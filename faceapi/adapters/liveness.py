"""Liveness attestations as JWTs (PyJWT), checked against the issuers' public keys.

FACEAPI_LIVENESS_ISSUERS names a JSON file read once at start:

    {"issuers": {"acme-liveness": {"public_key_file": "acme.pem"},
                 "other": {"jwks_file": "other-jwks.json"}}}

(relative paths are relative to that file). Only asymmetric keys are accepted, and each
key admits only the algorithms of its own type (an EC P-256 key: ES256; Ed25519: EdDSA;
RSA of 2048 bits or more: RS256/PS256): a token saying `none` or `HS256` is refused
before any signature check, so the classic confusion (an HMAC "signed" with the public
key as its secret) cannot work. The issuer comes from the token only to choose which
configured key checks it; the claims are judged afterwards by faceapi/domain/liveness.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from faceapi.config import ConfigError
from faceapi.domain.audit import InvalidAuditEvent, check_text
from faceapi.domain.liveness import Attestation, AttestationRejected, LivenessFailure

# A JWT is a few hundred bytes; anything far longer is refused before parsing.
MAX_TOKEN_CHARS = 8192
MAX_CLAIM_CHARS = 256
_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def algorithms_for(key: object) -> tuple[str, ...]:
    """The JWS algorithms a public key may verify; ConfigError for any other key."""
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return (_CURVES[key.curve.name],)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("EdDSA",)
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigError("FACEAPI_LIVENESS_ISSUERS: RSA keys need 2048 bits or more")
        return ("RS256", "PS256")
    raise ConfigError("FACEAPI_LIVENESS_ISSUERS: only EC (P-256/384/521), Ed25519 and RSA "
                      "public keys are accepted (no symmetric secrets)")


@dataclass(frozen=True)
class IssuerKey:
    key: PublicKey
    algorithms: tuple[str, ...]
    kid: str | None = None


class JwtAttestationVerifier:
    """The LivenessVerifier port (services/ports.py) over configured issuer keys."""

    def __init__(self, issuers: Mapping[str, tuple[IssuerKey, ...]]) -> None:
        self._issuers = dict(issuers)

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(sorted(self._issuers))

    @classmethod
    def from_file(cls, path: Path) -> JwtAttestationVerifier:
        """The issuers of FACEAPI_LIVENESS_ISSUERS; an empty path trusts nobody."""
        if str(path) in ("", "."):
            return cls({})
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: cannot read {path} ({exc})") from exc
        issuers = raw.get("issuers") if isinstance(raw, dict) else None
        if not isinstance(issuers, dict) or not issuers:
            raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: {path} must hold "
                              '{"issuers": {"<name>": {"public_key_file": ...}}}')
        for name in issuers:
            _check_issuer_name(str(name))
        return cls({str(name): _issuer_keys(str(name), entry, path.parent)
                    for name, entry in issuers.items()})

    def verify(self, token: str) -> Attestation:
        """The verified claims, or AttestationRejected naming why not."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise AttestationRejected(LivenessFailure.INVALID, "empty or too long")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AttestationRejected(LivenessFailure.INVALID, "not a JWT") from exc
        issuer = unverified.get("iss") if isinstance(unverified, dict) else None
        keys = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if keys is None:
            raise AttestationRejected(LivenessFailure.UNTRUSTED_ISSUER, "issuer not configured")
        key = _choose(keys, header)
        if key is None or header.get("alg") not in key.algorithms:
            # `none`, HS256 with the public key as its secret, or any algorithm the
            # configured key is not for: refused before a signature is computed.
            raise AttestationRejected(LivenessFailure.INVALID, "algorithm or key id not allowed")
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=list(key.algorithms), issuer=issuer,
                options={"require": ["iss", "sub", "iat", "jti"], "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False, "verify_aud": False})
            return _attestation(claims)
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, OSError) as exc:
            raise AttestationRejected(LivenessFailure.INVALID, type(exc).__name__) from exc


def _choose(keys: tuple[IssuerKey, ...], header: Mapping[str, Any]) -> IssuerKey | None:
    kid = header.get("kid")
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    return next((k for k in keys if k.kid == kid), None)


def _time(claims: Mapping[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise ValueError(f"{name} must be a number of seconds")
    return datetime.fromtimestamp(value, tz=UTC)


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLAIM_CHARS:
        raise ValueError(f"{name} must be a short string")
    return value


def _attestation(claims: Mapping[str, Any]) -> Attestation:
    issued_at = _time(claims, "iat")
    assert issued_at is not None  # required above
    return Attestation(issuer=_text(claims, "iss"), subject=_text(claims, "sub"),
                       jti=_text(claims, "jti"), issued_at=issued_at,
                       expires_at=_time(claims, "exp"), not_before=_time(claims, "nbf"))


def _issuer_keys(name: str, entry: Any, base: Path) -> tuple[IssuerKey, ...]:
    if not isinstance(entry, dict):
        raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: issuer {name!r} must be an object")
    if "public_key_file" in entry:
        text = _read(base / str(entry["public_key_file"]), name)
        try:
            key = load_pem_public_key(text.encode("utf-8"))
        except ValueError as exc:
            raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: issuer {name!r}: not a PEM public "
                              "key") from exc
        return (IssuerKey(key, algorithms_for(key)),)  # type: ignore[arg-type]
    if "jwks_file" in entry:
        text = _read(base / str(entry["jwks_file"]), name)
        try:
            found = jwt.PyJWKSet.from_json(text).keys
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: issuer {name!r}: not a JWKS") from exc
        keys = tuple(IssuerKey(k.key, algorithms_for(k.key), k.key_id) for k in found)
        if len(keys) > 1 and any(k.kid is None for k in keys):
            raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: issuer {name!r}: every key of a "
                              "JWKS with several keys needs a kid")
        return keys
    raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: issuer {name!r} needs public_key_file "
                      "or jwks_file")


def _check_issuer_name(name: str) -> None:
    """An issuer name goes into decision rows and audit events (which refuse long or
    encoded-looking text): refuse at start a name that could not be recorded."""
    try:
        check_text("issuer", name, limit=MAX_CLAIM_CHARS)
    except InvalidAuditEvent as exc:
        raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: issuer name {name[:40]!r}: "
                          f"{exc.message}") from exc
    if not name:
        raise ConfigError("FACEAPI_LIVENESS_ISSUERS: an issuer name is empty")


def _read(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"FACEAPI_LIVENESS_ISSUERS: issuer {name!r}: cannot read {path} "
                          f"({exc})") from exc
