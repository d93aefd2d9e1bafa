"""X-Forwarded-For counts only when the operator says a proxy sets it."""

from __future__ import annotations

from pathlib import Path

from flask import request

from faceapi.config import Settings
from faceapi.entrypoints.web.app import create_app
from tests.fakes import FakeEngine


def client_address(proxy_hops: int, tmp_path: Path) -> str:
    app = create_app(Settings(env="test", data_dir=tmp_path / str(proxy_hops),
                              proxy_hops=proxy_hops), engine=FakeEngine())
    seen: list[str] = []

    @app.after_request
    def _remember(response):  # type: ignore[no-untyped-def]
        seen.append(str(request.remote_addr))
        return response

    app.test_client().get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"},
                          environ_base={"REMOTE_ADDR": "10.0.0.2"})
    app.extensions["faceapi"].store.dispose()
    return seen[0]


def test_forwarded_addresses_are_ignored_unless_a_proxy_is_configured(tmp_path: Path) -> None:
    assert client_address(0, tmp_path) == "10.0.0.2"
    assert client_address(1, tmp_path) == "203.0.113.7"
