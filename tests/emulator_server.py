"""The Rekognition emulator on a real HTTP server, and real boto3 clients for it.

Used by the emulator and engine-contract tests: the app runs in werkzeug's threaded
server on a free port, so every request goes through sockets, botocore's
serialisation, SigV4 signing, retries and response parsing exactly as for AWS.
boto3 gets an API key's id as aws_access_key_id and its SigV4 secret as
aws_secret_access_key, as a user would (docs/engines.md); the emulator checks the
signature.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from faceapi.config import Settings
from faceapi.domain.audit import SYSTEM
from faceapi.entrypoints.web.api.deps import EXTENSION_KEY
from faceapi.services.keys import NewKey, create_key, hash_key, key_id_of

REGION = "us-east-1"


@dataclass
class LiveServer:
    app: Flask
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()


def serve(app: Flask) -> LiveServer:
    """Start `app` on 127.0.0.1 on a free port in a daemon thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="emulator", daemon=True)
    thread.start()
    return LiveServer(app, server, thread)


@dataclass(frozen=True)
class IssuedKey:
    """A key as its holder has it: the Bearer key for /v1 (also what `str()` gives, so
    f"Bearer {key}" works) and the SigV4 credentials shown with it for the emulator."""

    bearer: str
    key_id: str
    sigv4_secret: str = field(repr=False)

    def __str__(self) -> str:
        return self.bearer


def api_key(app: Flask, role: str, *,
            collections: frozenset[str] | None = None) -> IssuedKey:
    """A fresh API key of `role` in the app's store."""
    deps = app.extensions[EXTENSION_KEY]
    created = create_key(NewKey(name=f"test-{role}-{uuid.uuid4().hex[:6]}", role=role,
                                collections=collections),
                         uow=deps.store.uow(), clock=deps.clock, actor=SYSTEM)
    return IssuedKey(bearer=created.secret, key_id=created.key.id,
                     sigv4_secret=created.sigv4_secret)


def local_engine_app(data_dir: Path) -> Flask:
    """The app on the real local engine with the shipped policies (skips the test when
    the engine's models are not installed)."""
    import pytest

    from faceapi.adapters.engines.local import LocalEngine
    from faceapi.entrypoints.web.app import create_app

    settings = Settings(env="test", data_dir=data_dir, log_format="json",
                        policies_dir=Path(__file__).resolve().parents[1] / "policies")
    engine = LocalEngine(settings)
    ok, why = engine.ready()
    if not ok:
        pytest.skip(f"local engine not ready: {why}")
    return create_app(settings, engine=engine)


Signer = IssuedKey | tuple[str, str]


def _credentials(key: Signer) -> tuple[str, str]:
    # A (access key id, secret) pair stands for credentials nobody issued.
    return (key.key_id, key.sigv4_secret) if isinstance(key, IssuedKey) else key


def key_session(key: Signer) -> Any:
    """A boto3 session with a key's SigV4 credentials, for
    RekognitionEngine(settings, session=...)."""
    access_key_id, secret = _credentials(key)
    return boto3.session.Session(aws_access_key_id=access_key_id,
                                 aws_secret_access_key=secret, region_name=REGION)


def rekognition_client(url: str, key: Signer, *, max_attempts: int = 3) -> Any:
    """A boto3 Rekognition client for the emulator, signing with the key's SigV4
    credentials."""
    config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                    connect_timeout=2, read_timeout=60)
    return key_session(key).client("rekognition", endpoint_url=url, config=config)


def holder_credentials(app: Flask, bearer: str) -> tuple[str, str]:
    """The SigV4 credentials shown to whoever holds this Bearer key, read back from the
    store (as only a test may); anything that is not a real key gets credentials nobody
    issued. For tests that speak Bearer to every endpoint, the emulator included."""
    key_id, secret = key_id_of(bearer), "not-the-sigv4-secret"
    if key_id is None:
        return "NoSuchId", secret
    deps = app.extensions[EXTENSION_KEY]
    with deps.store.read_uow() as uow:
        key = uow.api_keys.get(key_id)
        if key is not None and hmac.compare_digest(key.key_hash, hash_key(bearer)):
            secret = uow.api_keys.sigv4_secret(key_id) or secret
    return key_id, secret


def sigv4_headers(key: Signer, body: bytes, *, target: str | None,
                  url: str = "http://localhost/",
                  content_type: str = "application/x-amz-json-1.1",
                  signed_at: datetime | None = None) -> dict[str, str]:
    """The headers botocore's own SigV4 signer puts on a Rekognition request (for
    requests sent without boto3: Flask's test client, raw HTTP). `signed_at` signs as
    of another time, through botocore's clock at the boundary."""
    access_key_id, secret = _credentials(key)
    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    signer = SigV4Auth(Credentials(access_key_id, secret), "rekognition", REGION)
    if signed_at is None:
        signer.add_auth(request)
    else:
        import botocore.auth

        real = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: signed_at  # type: ignore[assignment]
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = real  # type: ignore[assignment]
    return dict(request.headers.items())
