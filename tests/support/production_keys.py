"""Key files outside the data directory, as a production start requires
(Settings.require_production_keys): for tests that build a production app."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_production_keys(secrets_dir: Path) -> dict[str, str]:
    """Write the three key files into `secrets_dir` (mode 0600); return the settings
    (audit_signing_key, credentials_key_file, secret_key_file) that name them."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    files = {
        "audit_signing_key": ("audit_signing_key.pem", pem),
        "credentials_key_file": ("credentials.key",
                                 base64.urlsafe_b64encode(secrets.token_bytes(32)) + b"\n"),
        "secret_key_file": ("console_secret_key", secrets.token_urlsafe(48).encode() + b"\n"),
    }
    settings = {}
    for setting, (name, data) in files.items():
        path = secrets_dir / name
        path.write_bytes(data)
        os.chmod(path, 0o600)
        settings[setting] = str(path)
    return settings
