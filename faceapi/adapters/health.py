"""Readiness checks on the adapters /readyz depends on besides the engine and the store:
Redis (when configured), the blob directory, the audit signing key.

Each check returns (passed, why) and never raises: a failing check must report, not
crash readiness. Each costs one round trip or one small file operation, because load
balancers and orchestrators call /readyz every few seconds."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

Check = tuple[bool, str]


def redis_answers(url: str, *, timeout_s: float = 1.0) -> Check:
    """PING the Redis at `url` (the rate limiter's storage)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s,
                                      socket_timeout=timeout_s)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure (refused, timeout, auth) is "not ready"
        return False, f"redis_unavailable: {type(exc).__name__}"
    return True, "answers PING"


def directory_writable(path: Path) -> Check:
    """Create, write and remove a small temporary file in `path` (created 0700 if it
    does not exist yet, as the blob store itself would on its first write)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".readyz-", dir=path)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return False, f"blob_dir_not_writable: {type(exc).__name__}"
    return True, "writable"


def signing_key_readable(path: Path) -> Check:
    """The audit signing key file reads and parses as an Ed25519 private key."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return False, f"signing_key_unreadable: {type(exc).__name__}"
    if not isinstance(key, Ed25519PrivateKey):
        return False, "signing_key_unreadable: not an Ed25519 key"
    return True, "readable"
