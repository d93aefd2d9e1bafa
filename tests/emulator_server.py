"""The Rekognition emulator on a real HTTP server, and real boto3 clients for it.

Used by the emulator and engine-contract tests: the app runs in werkzeug's threaded
server on a free port, so every request goes through sockets, botocore's
serialisation, SigV4 signing, retries and response parsing exactly as for AWS.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from faceapi.api.deps import EXTENSION_KEY
from faceapi.domain.audit import SYSTEM
from faceapi.services.keys import NewKey, create_key

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


def api_key(app: Flask, role: str, *, collections: frozenset[str] | None = None) -> str:
    """A fresh API key of `role` in the app's store; the full key (fa_<id>_<secret>)."""
    deps = app.extensions[EXTENSION_KEY]
    created = create_key(NewKey(name=f"test-{role}-{uuid.uuid4().hex[:6]}", role=role,
                                collections=collections),
                         uow=deps.store.uow(), clock=deps.clock, actor=SYSTEM)
    return created.secret


def rekognition_client(url: str, key: str, *, max_attempts: int = 3) -> Any:
    """A boto3 Rekognition client for the emulator: our API key is the access key id;
    the secret access key is not checked by the emulator (docs/engines.md)."""
    session = boto3.session.Session(aws_access_key_id=key,
                                    aws_secret_access_key="not-checked",
                                    region_name=REGION)
    config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                    connect_timeout=2, read_timeout=60)
    return session.client("rekognition", endpoint_url=url, config=config)


def key_session(key: str) -> Any:
    """A boto3 session carrying our API key, for RekognitionEngine(settings, session=...)."""
    return boto3.session.Session(aws_access_key_id=key, aws_secret_access_key="not-checked",
                                 region_name=REGION)
