"""Settings, read once from FACEAPI_* environment variables and validated at start.

Nothing here is read at import time: `Settings.from_env()` is called by the
composition root (create_app) or the CLI, and the frozen result is passed down.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

KNOWN_FORMATS = ("jpeg", "png", "webp", "bmp", "gif")
# FACEAPI_* names read by other processes (gunicorn config, test and bench tools),
# not by the app: allowed in the environment, ignored here.
_NOT_APP_SETTINGS = ("bind", "workers", "threads", "timeout", "faces_dir", "test_", "bench_")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected true/false, got {raw!r}")


def _int(name: str, raw: str, *, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _float(name: str, raw: str, *, minimum: float = 0.0) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from exc
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}: must be a finite number >= {minimum}, got {raw!r}")
    return value


# The local engine's hard-photo fallbacks, in the order they run (detection.py).
DETECT_FALLBACKS = ("contrast", "roll", "upsample", "cnn")


@dataclass(frozen=True)
class Settings:
    """Every setting, with its embedded default. Env var = FACEAPI_<FIELD NAME>."""

    env: str = "development"  # development | production | test
    log_format: str = ""  # json | console; default json in production, console otherwise
    log_level: str = "INFO"
    data_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite file in data_dir
    engine: str = "local"  # local | rekognition
    detector: str = "hog"  # hog | cnn (local engine)
    orientation_search: bool = True
    upsample: int = 1  # local engine detector upsampling (finds smaller faces, slower)
    max_image_bytes: int = 5 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # Bytes an image may take once decoded (pixels x channels x bytes per sample, every
    # frame), judged from its header before decoding; the default is one 8-bit RGB image
    # at the pixel cap. It bounds a worker's memory for each image (docs/security.md).
    max_decoded_bytes: int = 120_000_000
    detect_max_side: int = 1600  # large images are downscaled to this for detection
    # Where the local engine's face descriptor runs (docs/engines.md, "Descriptor
    # runtimes"): onnx = dlib's ResNet converted to ONNX on onnxruntime (same weights,
    # descriptors within 1e-5, much faster: bench/parity.py); dlib = dlib, the reference.
    descriptor_runtime: str = "onnx"
    descriptor_threads: int = 1  # onnxruntime threads per inference call
    # Each descriptor is the mean of this many randomly jittered chips (1: none; more runs
    # on dlib only). Part of the template version: changing it needs `faceapi
    # collections reindex` (docs/collections.md, "Moving a collection to a new model").
    descriptor_jitters: int = 1
    # fixed: every upright pass upsamples FACEAPI_UPSAMPLE times (the answers of record);
    # adaptive: a pass without upsampling first, kept when all its faces are large
    # (faster, slightly different boxes and descriptors: docs/engines.md).
    detect_strategy: str = "fixed"
    # Hard-photo fallbacks, run only when the normal detection (and orientation search)
    # found no face, in this order: contrast (CLAHE), roll (copies turned +-28 degrees),
    # upsample (one more upsampling step, images up to 640 px), cnn (dlib's MMOD CNN on
    # onnxruntime, on a copy of bounded size). Empty: none; "hard": all four
    # (docs/engines.md, "Hard photos"; bench/degraded.py).
    detect_fallback: tuple[str, ...] = ()
    # Threads one compare request may detect with (its two images at once; HOG only):
    # 1 = one after the other. Same answers either way (docs/engines.md, "Speed").
    detect_threads: int = 2
    image_formats: tuple[str, ...] = ("jpeg", "png")
    policies_dir: Path = Path("policies")
    # What a new collection is bound to when its creator names no policy (and what
    # migration 0006 binds existing collections to): non-consequential ones only, so a
    # consequential collection is always bound on purpose. Checked at start.
    default_collection_policies: tuple[str, ...] = ("login", "photo_tagging")
    blob_dir: Path = Path("")  # default: data_dir / "blobs"
    redis_url: str = ""
    audit_checkpoint_every: int = 100
    audit_checkpoint_seconds: int = 300
    audit_signing_key: str = ""  # path to a PEM Ed25519 private key; default generated in data_dir
    # Retired audit public keys still trusted to verify old checkpoints after a rotation:
    # comma-separated PEM files or directories of *.pem/*.pub, outside the database
    # (docs/operations.md, "Rotating the audit signing key").
    audit_trusted_public_keys: str = ""
    aws_region: str = "us-east-1"
    aws_endpoint_url: str = ""
    rekognition_collection_prefix: str = "faceapi-"
    aws_max_attempts: int = 3
    aws_connect_timeout: float = 2.0
    aws_read_timeout: float = 10.0
    rate_limit_default: str = "600/minute"
    rate_limit_verify: str = "30/minute"
    session_idle_minutes: int = 30
    # Reverse proxies in front of us that set X-Forwarded-For/-Proto; 0 trusts none, so a
    # client cannot spoof its address for rate limits or claim HTTPS.
    proxy_hops: int = 0
    secret_key: str = ""  # console session signing; default generated in data_dir
    # Or a file holding it (a mounted secret: Compose secrets, Kubernetes Secret volumes).
    secret_key_file: str = ""
    # Path to the server key that seals stored SigV4 secrets (faceapi/adapters/secret_box.py);
    # default generated in data_dir as credentials.key.
    credentials_key_file: str = ""
    # /metrics (docs/operations.md, "Metrics"): on by default, for keys of the roles in
    # faceapi/domain/access.py; with a bind address ("127.0.0.1:9100") gunicorn also
    # listens there and /metrics answers on it without a key (and nothing else does).
    metrics_enabled: bool = True
    metrics_bind: str = ""
    # Liveness attestations (docs/verify.md): a JSON file naming each trusted issuer's
    # public key (PEM or JWKS file), read once at start by adapters/liveness.py; empty:
    # no issuer is trusted, so a policy that requires liveness rejects every decision.
    liveness_issuers: Path = Path("")
    liveness_max_age_seconds: int = 120  # an attestation older than this is expired
    liveness_clock_skew_seconds: int = 10  # how far an issuer's clock may run ahead
    # Review callbacks (docs/webhooks.md): the hosts a key may register a webhook at
    # (names or IP literals, "*.example.com" for subdomains; empty: none), the
    # non-public networks a callback may reach (CIDRs; every other address must be
    # global), plain http to 127.0.0.1 (development and tests only, refused in
    # production), and the delivery worker's bounds.
    webhook_allowed_hosts: tuple[str, ...] = ()
    webhook_allowed_networks: tuple[str, ...] = ()
    webhook_allow_http_loopback: bool = False
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: int = 30
    # How long a worker holds a claimed delivery: a worker that dies mid-send leaves it
    # to the next run after this; longer than an attempt can take (2 x timeout + DNS).
    webhook_lease_seconds: int = 60
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.env not in ("development", "production", "test"):
            raise ConfigError(
                f"FACEAPI_ENV: expected development|production|test, got {self.env!r}")
        if self.log_format not in ("", "json", "console"):
            raise ConfigError(f"FACEAPI_LOG_FORMAT: expected json|console, got {self.log_format!r}")
        if self.engine not in ("local", "rekognition"):
            raise ConfigError(f"FACEAPI_ENGINE: expected local|rekognition, got {self.engine!r}")
        if self.detector not in ("hog", "cnn"):
            raise ConfigError(f"FACEAPI_DETECTOR: expected hog|cnn, got {self.detector!r}")
        unknown = [f for f in self.image_formats if f not in KNOWN_FORMATS]
        if unknown or not self.image_formats:
            raise ConfigError(
                f"FACEAPI_IMAGE_FORMATS: choose from {', '.join(KNOWN_FORMATS)}; "
                f"got {unknown or 'nothing'}")
        if self.max_image_bytes < 1024:
            raise ConfigError("FACEAPI_MAX_IMAGE_BYTES: must be at least 1024")
        if self.max_decoded_bytes < 1024:
            raise ConfigError("FACEAPI_MAX_DECODED_BYTES: must be at least 1024")
        if self.descriptor_runtime not in ("onnx", "dlib"):
            raise ConfigError(f"FACEAPI_DESCRIPTOR_RUNTIME: expected onnx|dlib, "
                              f"got {self.descriptor_runtime!r}")
        if self.detect_strategy not in ("fixed", "adaptive"):
            raise ConfigError(f"FACEAPI_DETECT_STRATEGY: expected fixed|adaptive, "
                              f"got {self.detect_strategy!r}")
        bad = [f for f in self.detect_fallback if f not in (*DETECT_FALLBACKS, "hard")]
        if bad:
            raise ConfigError(f"FACEAPI_DETECT_FALLBACK: choose from "
                              f"{', '.join(DETECT_FALLBACKS)} or hard; got {bad}")
        if not 1 <= self.descriptor_threads <= 64:
            raise ConfigError("FACEAPI_DESCRIPTOR_THREADS: must be between 1 and 64")
        if not 1 <= self.descriptor_jitters <= 16:
            raise ConfigError("FACEAPI_DESCRIPTOR_JITTERS: must be between 1 and 16")
        if not 1 <= self.detect_threads <= 2:
            raise ConfigError("FACEAPI_DETECT_THREADS: must be 1 or 2")
        if self.upsample > 2:
            raise ConfigError("FACEAPI_UPSAMPLE: must be 0, 1 or 2")
        if not 1 <= self.liveness_max_age_seconds <= 3600:
            raise ConfigError("FACEAPI_LIVENESS_MAX_AGE_SECONDS: 1-3600 (seconds)")
        if not 0 <= self.liveness_clock_skew_seconds <= 300:
            raise ConfigError("FACEAPI_LIVENESS_CLOCK_SKEW_SECONDS: 0-300 (seconds)")
        for network in self.webhook_allowed_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"FACEAPI_WEBHOOK_ALLOWED_NETWORKS: not a CIDR: "
                                  f"{network!r}") from None
        if self.webhook_allow_http_loopback and self.env == "production":
            raise ConfigError("FACEAPI_WEBHOOK_ALLOW_HTTP_LOOPBACK: not in production")
        if not 0.5 <= self.webhook_timeout_seconds <= 60:
            raise ConfigError("FACEAPI_WEBHOOK_TIMEOUT_SECONDS: 0.5-60 (seconds)")
        if not 1 <= self.webhook_max_attempts <= 30:
            raise ConfigError("FACEAPI_WEBHOOK_MAX_ATTEMPTS: 1-30")
        if not 2 * self.webhook_timeout_seconds + 2 <= self.webhook_lease_seconds <= 3600:
            raise ConfigError("FACEAPI_WEBHOOK_LEASE_SECONDS: at least twice "
                              "FACEAPI_WEBHOOK_TIMEOUT_SECONDS plus 2, at most 3600")
        if not 1 <= self.webhook_backoff_seconds <= 3600:
            raise ConfigError("FACEAPI_WEBHOOK_BACKOFF_SECONDS: 1-3600 (seconds)")
        host, _, port = self.metrics_bind.rpartition(":")
        if self.metrics_bind and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"FACEAPI_METRICS_BIND: expected host:port (127.0.0.1:9100), "
                              f"got {self.metrics_bind!r}")

    def require_production_keys(self) -> None:
        """In production, refuse to start unless the audit signing key, the SigV4
        credentials key and the console secret key come from outside the data
        directory: a key kept next to the data it protects (the audit chain, sealed
        secrets) is lost, copied or restored together with it. Other envs: no check."""
        if self.env != "production":
            return
        data_dir = self.data_dir.resolve()
        problems = []
        for setting, value, what, how in (
            ("FACEAPI_AUDIT_SIGNING_KEY", self.audit_signing_key,
             "the audit signing key (a PEM Ed25519 private key)",
             "openssl genpkey -algorithm ed25519 -out audit_signing_key.pem"),
            ("FACEAPI_CREDENTIALS_KEY_FILE", self.credentials_key_file,
             "the key that seals stored SigV4 secrets (a line of base64, 32 bytes)",
             "openssl rand -base64 32 | tr '+/' '-_' > credentials.key"),
            ("FACEAPI_SECRET_KEY_FILE", self.secret_key_file,
             "the console session key (or set FACEAPI_SECRET_KEY)",
             "openssl rand -base64 48 > console_secret_key"),
        ):
            if setting == "FACEAPI_SECRET_KEY_FILE" and self.secret_key and not value:
                continue
            if not value:
                problems.append(
                    f"{setting} is not set: in production {what} must be a file outside "
                    f"the data directory {data_dir}; make one (`{how}`), keep it in your "
                    f"secret store and set {setting} to its mounted path")
            elif Path(value).resolve().is_relative_to(data_dir):
                problems.append(
                    f"{setting}={value} is inside the data directory {data_dir}: in "
                    f"production {what} must live outside it (a mounted secret); move it "
                    f"and set {setting} to the new path")
        # The retired audit public keys decide which signatures count: a copy an
        # attacker can add to (next to the data) would let them trust a key of their own.
        for part in (p.strip() for p in self.audit_trusted_public_keys.split(",")):
            if part and Path(part).resolve().is_relative_to(data_dir):
                problems.append(
                    f"FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS names {part}, inside the data "
                    f"directory {data_dir}: in production the trusted audit public keys "
                    "must live outside it (a mounted secret or config map)")
        if problems:
            raise ConfigError("refusing to start in production: " + "; ".join(problems))

    @property
    def resolved_log_format(self) -> str:
        return self.log_format or ("json" if self.env == "production" else "console")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'faceapi.db').resolve()}"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir if str(self.blob_dir) not in ("", ".") else self.data_dir / "blobs"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def detect_fallbacks(self) -> tuple[str, ...]:
        """FACEAPI_DETECT_FALLBACK resolved: the fallbacks to run, in their fixed order."""
        chosen = set(self.detect_fallback)
        return tuple(f for f in DETECT_FALLBACKS if f in chosen or "hard" in chosen)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from FACEAPI_* variables; unknown FACEAPI_* names are refused
        so that a typo does not silently fall back to a default."""
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith("FACEAPI_"):
                continue
            name = key[len("FACEAPI_"):].lower()
            if name.startswith(_NOT_APP_SETTINGS):
                continue
            if name not in known:
                raise ConfigError(f"{key}: unknown setting")
            values[name] = _parse(cls, name, key, raw)
        return cls(**values)


def _parse(cls: type[Settings], name: str, key: str, raw: str) -> Any:
    default = next(f.default for f in fields(cls) if f.name == name)
    if isinstance(default, bool):
        return _bool(key, raw)
    if isinstance(default, int):
        return _int(key, raw)
    if isinstance(default, float):
        return _float(key, raw)
    if isinstance(default, Path):
        return Path(raw)
    if isinstance(default, tuple):
        return tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    return raw
