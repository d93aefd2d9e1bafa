"""The audit signing key: the Ed25519 private key file (configured, or generated into
the data dir on first start) and the signer that checkpoints the chain head with it;
and the retired public keys the operator still trusts after a rotation
(FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS: files or directories outside the database).

The chain rule and signature verification are in faceapi/domain/audit_chain.py."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from faceapi.adapters.private_files import configured_or_created_key_file
from faceapi.config import ConfigError, Settings
from faceapi.domain.audit import Checkpoint
from faceapi.domain.audit_chain import (
    checkpoint_payload,
    key_id_of,
    keys_by_id,
    load_public_keys,
    public_key_pem,
)

KEY_FILE_NAME = "audit_signing_key.pem"
TRUSTED_SETTING = "FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS"
# What a trusted-keys directory is read for; other files (a README, editor backups,
# Kubernetes' ..data links) are left alone.
PUBLIC_KEY_SUFFIXES = (".pem", ".pub")


class CheckpointSigner:
    """Signs chain heads with the audit Ed25519 key, and knows which public keys this
    deployment trusts to verify them: its own and the retired ones it was given."""

    def __init__(self, private_key: Ed25519PrivateKey,
                 retired: Sequence[Ed25519PublicKey] = ()) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)
        trusted = keys_by_id([self.public_key, *retired])
        self.trusted_public_keys: tuple[Ed25519PublicKey, ...] = tuple(trusted.values())
        self.trusted_key_ids = frozenset(trusted)

    def sign(self, seq: int, event_hash: str, created_at: datetime) -> Checkpoint:
        signature = self._key.sign(checkpoint_payload(seq, event_hash, created_at, self.key_id))
        return Checkpoint(seq=seq, event_hash=event_hash, created_at=created_at,
                          key_id=self.key_id, signature=base64.b64encode(signature).decode("ascii"))

    @property
    def public_key_pem(self) -> str:
        return public_key_pem(self.public_key)

    @property
    def retired_public_keys(self) -> tuple[Ed25519PublicKey, ...]:
        """The trusted keys other than the one signing now."""
        return tuple(k for k in self.trusted_public_keys if key_id_of(k) != self.key_id)


def new_signing_key_pem() -> bytes:
    """A new Ed25519 private key, PEM PKCS#8 (what `openssl genpkey -algorithm ed25519`
    writes)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def read_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def read_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """The public keys in a PEM file (one or several blocks) or in the `*.pem`/`*.pub`
    files of a directory (a mounted Kubernetes Secret or ConfigMap: one file per key)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix in PUBLIC_KEY_SUFFIXES and p.is_file()
                       and not p.name.startswith("."))
        if not files:
            raise ValueError(f"{path}: a directory with no *.pem or *.pub file")
    else:
        files = [path]
    keys = []
    for file in files:
        try:
            keys.extend(load_public_keys(file.read_bytes()))
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from exc
    return keys


def load_trusted_public_keys(setting: str) -> list[Ed25519PublicKey]:
    """The retired public keys of FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS: comma-separated
    files or directories. A path that is missing or holds no usable key stops the start:
    silently trusting fewer keys would fail every old checkpoint's verification later."""
    keys: list[Ed25519PublicKey] = []
    for part in (p.strip() for p in setting.split(",")):
        if not part:
            continue
        path = Path(part)
        try:
            if not path.exists():
                raise ValueError(f"{path}: no such file or directory")
            keys.extend(read_public_keys(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{TRUSTED_SETTING}: {exc}") from exc
    return keys


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
        settings.data_dir / KEY_FILE_NAME, new_signing_key_pem)
    return read_private_key(path)


def signer_from_settings(settings: Settings) -> CheckpointSigner:
    """The signing key and the retired public keys this deployment trusts."""
    return CheckpointSigner(load_or_create_signing_key(settings),
                            load_trusted_public_keys(settings.audit_trusted_public_keys))
