"""Secrets the server must be able to read back, encrypted at rest with a server key.

A SigV4 secret access key cannot be stored hashed like an API key: verifying a
signature means recomputing the HMAC, which needs the secret itself. So it is sealed
with AES-256-GCM under a server key that lives outside the database (a file, mode
0600), with the row's key id as associated data: a copy of the database alone reveals
no secret, and a sealed secret moved to another key's row does not open.

Key file: `FACEAPI_CREDENTIALS_KEY_FILE`, else `<data_dir>/credentials.key`, created on
first start. One base64 key per line: the first seals, every line opens, so the key
can be rotated by putting a new line first (rows sealed under the old key keep opening
until they are re-sealed by a key rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from faceapi.adapters.private_files import configured_or_created_key_file
from faceapi.config import Settings

KEY_FILE_NAME = "credentials.key"
_VERSION = "v1"
_NONCE_BYTES = 12


class SecretBoxError(Exception):
    """A sealed value does not open: wrong server key, wrong row, or tampered."""


def _key_id(key: bytes) -> str:
    # Names the server key a value was sealed with, so opening picks it without trying
    # every key; a fingerprint, not the key.
    return hashlib.sha256(b"faceapi.adapters.secret_box" + key).hexdigest()[:8]


class SecretBox:
    """Seal and open short secrets with AES-256-GCM; `context` (the row's id) is bound
    as associated data."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys or any(len(k) != 32 for k in keys):
            raise ValueError("secret box keys must be 32 bytes each")
        self._sealing_id = _key_id(keys[0])
        self._keys = {_key_id(k): AESGCM(k) for k in keys}

    def seal(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._sealing_id].encrypt(nonce, plaintext.encode("utf-8"),
                                                      context.encode("utf-8"))
        payload = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{_VERSION}.{self._sealing_id}.{payload}"

    def open(self, token: str, *, context: str) -> str:
        version, _, rest = token.partition(".")
        key_id, _, payload = rest.partition(".")
        aead = self._keys.get(key_id)
        if version != _VERSION or aead is None:
            raise SecretBoxError("sealed with an unknown server key")
        try:
            raw = base64.urlsafe_b64decode(payload.encode("ascii"))
            plaintext = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                     context.encode("utf-8"))
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise SecretBoxError("the sealed value does not open") from exc
        return plaintext.decode("utf-8")

    def seal_bytes(self, plaintext: bytes, *, context: str) -> bytes:
        """Like `seal`, for binary values (face chips): version byte, key id, nonce,
        ciphertext and tag, in one byte string."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._sealing_id].encrypt(nonce, plaintext,
                                                      context.encode("utf-8"))
        return b"\x01" + self._sealing_id.encode("ascii") + nonce + sealed

    def open_bytes(self, token: bytes, *, context: str) -> bytes:
        key_id = token[1:9].decode("ascii", errors="replace")
        aead = self._keys.get(key_id)
        if token[:1] != b"\x01" or aead is None:
            raise SecretBoxError("sealed with an unknown server key")
        body = token[9:]
        try:
            return aead.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:],
                                context.encode("utf-8"))
        except (InvalidTag, ValueError) as exc:
            raise SecretBoxError("the sealed value does not open") from exc


def _parse_keys(path: Path) -> list[bytes]:
    keys = []
    for line in path.read_text(encoding="ascii").splitlines():
        if line.strip():
            try:
                keys.append(base64.urlsafe_b64decode(line.strip().encode("ascii")))
            except (ValueError, binascii.Error) as exc:
                raise ValueError(f"{path}: each line must be a base64 32-byte key") from exc
    if not keys or any(len(k) != 32 for k in keys):
        raise ValueError(f"{path}: each line must be a base64 32-byte key")
    return keys


def load_or_create_secret_box(settings: Settings) -> SecretBox:
    """The configured key file, or one generated into the data dir on first start
    (mode 0600, hard-linked into place so workers starting together share one key)."""
    path = configured_or_created_key_file(
        settings.credentials_key_file, "FACEAPI_CREDENTIALS_KEY_FILE",
        settings.data_dir / KEY_FILE_NAME,
        lambda: base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)) + b"\n")
    return SecretBox(_parse_keys(path))
