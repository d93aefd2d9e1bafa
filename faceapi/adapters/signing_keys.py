"""The audit signing key: the Ed25519 private key file (configured, or generated into
the data dir on first start) and the signer that checkpoints the chain head with it.

The chain rule and signature verification are in faceapi/domain/audit_chain.py."""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from faceapi.adapters.private_files import configured_or_created_key_file
from faceapi.config import Settings
from faceapi.domain.audit import Checkpoint
from faceapi.domain.audit_chain import checkpoint_payload, key_id_of, public_key_pem

KEY_FILE_NAME = "audit_signing_key.pem"


class CheckpointSigner:
    """Signs chain heads with the audit Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def sign(self, seq: int, event_hash: str, created_at: datetime) -> Checkpoint:
        signature = self._key.sign(checkpoint_payload(seq, event_hash, created_at, self.key_id))
        return Checkpoint(seq=seq, event_hash=event_hash, created_at=created_at,
                          key_id=self.key_id, signature=base64.b64encode(signature).decode("ascii"))

    @property
    def public_key_pem(self) -> str:
        return public_key_pem(self.public_key)


def signing_key_path(settings: Settings) -> Path:
    """Where the audit signing key is read from: the configured file, or the data dir's."""
    return Path(settings.audit_signing_key) if settings.audit_signing_key \
        else settings.data_dir / KEY_FILE_NAME


def load_or_create_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The configured key file, or one generated into the data dir on first start.

    Generation writes a temporary file (mode 0600) and hard-links it into place, so
    several workers starting at once all end up with the same complete key."""
    path = configured_or_created_key_file(
        settings.audit_signing_key, "FACEAPI_AUDIT_SIGNING_KEY",
        settings.data_dir / KEY_FILE_NAME,
        lambda: Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key
