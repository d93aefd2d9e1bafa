"""Liveness attestations for tests: issuer keys, an issuers file in the shape
FACEAPI_LIVENESS_ISSUERS reads, and tokens minted as a liveness service would (plus
the forged ones an attacker would send)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

TRUSTED = "example-liveness"  # the issuer policies/login_liveness.yaml trusts
OTHER = "other-liveness"  # configured, but trusted by no test policy


@dataclass
class Issuers:
    """Two configured issuers: `example-liveness` (EC P-256, a PEM file) and
    `other-liveness` (Ed25519, a JWKS file)."""

    trusted_key: ec.EllipticCurvePrivateKey
    other_key: ed25519.Ed25519PrivateKey
    file: Path

    @property
    def trusted_public_pem(self) -> bytes:
        return self.trusted_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_issuers(directory: Path) -> Issuers:
    directory.mkdir(parents=True, exist_ok=True)
    trusted = ec.generate_private_key(ec.SECP256R1())
    other = ed25519.Ed25519PrivateKey.generate()
    (directory / "trusted.pem").write_bytes(trusted.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = other.public_key().public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
                      "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}]}
    (directory / "other.jwks.json").write_text(json.dumps(jwks))
    path = directory / "issuers.json"
    path.write_text(json.dumps({"issuers": {
        TRUSTED: {"public_key_file": "trusted.pem"},
        OTHER: {"jwks_file": "other.jwks.json"}}}))
    return Issuers(trusted, other, path)


def mint(key: Any, *, sub: str, at: datetime, iss: str = TRUSTED, alg: str = "ES256",
         jti: str | None = None, age_s: float = 0.0, headers: dict[str, Any] | None = None,
         **claims: Any) -> str:
    """A signed attestation issued `age_s` seconds before `at`."""
    payload = {"iss": iss, "sub": sub, "iat": int(at.timestamp() - age_s),
               "jti": jti or str(uuid.uuid4()), **claims}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(*, sub: str, at: datetime, iss: str = TRUSTED) -> str:
    """`alg: none`: no signature at all."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"iss": iss, "sub": sub, "iat": int(at.timestamp()),
                            "jti": str(uuid.uuid4())}).encode())
    return f"{head}.{body}."


def hmac_with_public_key(public_pem: bytes, *, sub: str, at: datetime,
                         iss: str = TRUSTED) -> str:
    """The algorithm confusion attack: HS256 "signed" with the issuer's public key (which
    anyone has) as the HMAC secret, hoping the verifier uses the key it holds for the
    algorithm the token names. Made by hand: PyJWT refuses to make it."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"iss": iss, "sub": sub, "iat": int(at.timestamp()),
                            "jti": str(uuid.uuid4())}).encode())
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def jti_hash(iss: str, token: str) -> str:
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    return hashlib.sha256(f"{iss}\x00{jti}".encode()).hexdigest()
