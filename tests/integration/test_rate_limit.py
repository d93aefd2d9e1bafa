"""Rate limits: per key and per client address, tighter on /v1/verify, 429 with
Retry-After in our envelope; with Redis, two gunicorn workers share one count."""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from faceapi.config import Settings
from tests.conftest import HeadersFactory, KeyFactory
from tests.support.servers import children, worker_holding

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("FACEAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(rate_limit_default="5/minute", rate_limit_verify="2/minute")


def from_address(client: FlaskClient, address: str) -> FlaskClient:
    client.environ_base["REMOTE_ADDR"] = address
    return client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_sixth_call_in_a_minute_is_429_with_retry_after(
        client: FlaskClient, auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    for _ in range(5):
        assert client.get("/v1/engine", headers=headers).status_code == 200
    response = client.get("/v1/engine", headers=headers)
    assert response.status_code == 429
    assert response.json["error"]["code"] == "rate_limited"
    assert response.json["error"]["request_id"]
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_keys_and_addresses_have_separate_budgets(app: Flask, make_key: KeyFactory) -> None:
    key_a, key_b = make_key("app"), make_key("app")
    home = from_address(app.test_client(), "10.0.0.1")
    for _ in range(5):
        assert home.get("/v1/engine", headers=bearer(key_a)).status_code == 200
    # Key A is spent wherever it comes from; address 10.0.0.1 is spent whatever key it uses.
    assert from_address(app.test_client(), "10.0.0.2").get(
        "/v1/engine", headers=bearer(key_a)).status_code == 429
    assert home.get("/v1/engine", headers=bearer(key_b)).status_code == 429
    assert from_address(app.test_client(), "10.0.0.3").get(
        "/v1/engine", headers=bearer(key_b)).status_code == 200


def test_verify_has_the_tighter_budget(client: FlaskClient,
                                       auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    statuses = [client.post("/v1/verify", json={}, headers=headers).status_code
                for _ in range(3)]
    assert 429 not in statuses[:2]
    assert statuses[2] == 429
    # The general budget still has room for other endpoints.
    assert client.get("/v1/engine", headers=headers).status_code == 200


def test_key_guessing_is_limited_per_address_before_lookup(app: Flask,
                                                          client: FlaskClient) -> None:
    statuses = [client.get("/v1/engine",
                           headers=bearer(f"fa_Guess{i:03d}_" + "x" * 40)).status_code
                for i in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    with app.extensions["faceapi"].store.engine.connect() as conn:
        from sqlalchemy import func, select

        from faceapi.adapters.store.tables import audit_events
        fails = conn.execute(select(func.count()).select_from(audit_events)
                             .where(audit_events.c.action == "auth.fail")).scalar_one()
    assert fails == 5  # the limited ones cost no store work


def test_probes_are_never_limited(client: FlaskClient) -> None:
    assert {client.get("/healthz").status_code for _ in range(20)} == {200}


# --------------------------------------------------------------------- shared across workers

def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except Exception:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update({
        "FACEAPI_DATA_DIR": str(tmp_path / "data"),
        "FACEAPI_ENV": "development",
        "FACEAPI_LOG_FORMAT": "json",
        "FACEAPI_LOG_LEVEL": "WARNING",
        "FACEAPI_RATE_LIMIT_DEFAULT": "10/minute",
        "FACEAPI_WORKERS": "2",
        "FACEAPI_BIND": f"127.0.0.1:{free_port()}",
        "FACEAPI_POLICIES_DIR": str(REPO / "policies"),
    })
    return env


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "faceapi", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


class Gunicorn:
    """`gunicorn -w 2` on a free port and a temp data dir, started by the test once it
    has set the environment (with or without FACEAPI_REDIS_URL)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        cli(env, "db", "upgrade")
        self.key = cli(env, "keys", "create", "--role", "app", "--name", "rate test",
                       "--owner", "system:rate-test").strip()
        self.proc: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: nobody reads it while the server runs, and a full pipe
        # would block the workers.
        self.log = Path(env["FACEAPI_DATA_DIR"]) / "gunicorn.log"

    def start(self) -> None:
        with self.log.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "gunicorn"), "-w", "2", "-c",
                 "deploy/gunicorn.conf.py", "wsgi:app"],
                env=self.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file)
        host, port = self.env["FACEAPI_BIND"].split(":")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
            finally:
                conn.close()
        raise RuntimeError("gunicorn did not answer within 120 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def gunicorn(server_env: dict[str, str]) -> Iterator[Gunicorn]:
    server = Gunicorn(server_env)
    try:
        yield server
    finally:
        server.stop()


def hammer(env: dict[str, str], key: str, count: int, *, source: str | None = None,
           concurrency: int = 8) -> Counter[int]:
    """`count` requests on fresh connections, `concurrency` at a time, from a random
    loopback address (unless `source` names one) so no earlier run's address bucket
    interferes."""
    host, port = env["FACEAPI_BIND"].split(":")
    source = source or \
        f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"

    def one(_: int) -> int:
        conn = http.client.HTTPConnection(host, int(port), timeout=30,
                                          source_address=(source, 0))
        try:
            conn.request("GET", "/v1/engine", headers=bearer(key))
            response = conn.getresponse()
            body = response.read()
            if response.status == 429:
                assert json.loads(body)["error"]["code"] == "rate_limited"
                assert response.getheader("Retry-After")
            return response.status
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return Counter(pool.map(one, range(count)))


class Held:
    """A connection whose request is not finished (its headers never end): the sync
    worker that accepted it blocks reading it and accepts nothing else until it is
    released. Its request is /healthz, which no rate limit counts."""

    def __init__(self, server: Gunicorn, source: str) -> None:
        host, port = server.env["FACEAPI_BIND"].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30,
                                             source_address=(source, 0))
        self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: faceapi\r\nConnection: close\r\n")
        assert server.proc is not None
        self.worker = worker_holding(server.proc.pid, self.sock)

    def release(self) -> None:
        """End the request; its worker answers it and is free again."""
        with self.sock:
            self.sock.sendall(b"\r\n")
            reply = b""
            while chunk := self.sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


def hold_all_but(server: Gunicorn, free: int, source: str) -> Held:
    """Hold the other worker, so that `free` is the only one that can accept: at most
    two held connections, each landing on whichever worker is free at the time."""
    first = Held(server, source)
    if first.worker != free:
        return first
    second = Held(server, source)  # `free` is busy with the first: the other takes it
    first.release()
    assert second.worker != free
    return second


def statuses_per_worker(server: Gunicorn, per_worker: int) -> dict[int, Counter[int]]:
    """`per_worker` requests served by each of the two workers, one worker after the
    other: the kernel may hand connections to any free worker, so while one worker's
    share is sent the other is held busy (Held). Each worker is named by its pid, from
    /proc on this machine, never from anything the server tells its clients."""
    assert server.proc is not None
    # /healthz answered once one worker was up; the master may still be forking the other.
    deadline = time.monotonic() + 60
    while len(workers := children(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == 2, workers
    source = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    served: dict[int, Counter[int]] = {}
    for worker in sorted(workers):
        held = hold_all_but(server, worker, source)
        served[worker] = hammer(server.env, server.key, per_worker, source=source,
                                concurrency=1)
        held.release()
    # No worker was replaced meanwhile (a held worker misses no heartbeat in seconds).
    assert children(server.proc.pid) == workers
    return served


@pytest.mark.redis
@pytest.mark.slow
def test_two_gunicorn_workers_share_the_count_in_redis(gunicorn: Gunicorn) -> None:
    """With Redis, the limit (10/minute) holds across workers: the first worker admits
    ten of its fifteen, and the second, though it has counted nothing itself, admits
    none."""
    if not redis_answers(REDIS_URL):
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    gunicorn.env["FACEAPI_REDIS_URL"] = REDIS_URL
    gunicorn.start()
    first, second = statuses_per_worker(gunicorn, 15).values()
    assert (first, second) == (Counter({200: 10, 429: 5}), Counter({429: 15}))


@pytest.mark.slow
def test_without_redis_each_of_two_workers_admits_the_whole_limit(gunicorn: Gunicorn) -> None:
    """The control for the test above: in-memory counts are per worker, so each of the
    two workers admits the whole limit (10/minute) itself, twice the limit in all. Each
    worker gets exactly fifteen requests (the other is held busy meanwhile), so the
    result depends on nothing the kernel chooses."""
    gunicorn.start()
    first, second = statuses_per_worker(gunicorn, 15).values()
    assert first == second == Counter({200: 10, 429: 5}), (first, second)


def test_with_redis_down_limits_fall_back_to_memory(settings: Settings, fake_engine,
                                                    clock) -> None:
    from faceapi.domain.audit import Actor
    from faceapi.entrypoints.web.app import create_app
    from faceapi.services import keys

    # Port 1 on loopback: nothing listens, so every Redis call fails at once.
    app = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:1/0"),
                     engine=fake_engine, clock=clock)
    try:
        d = app.extensions["faceapi"]
        key = keys.create_key(keys.NewKey(name="fallback", role="app"), uow=d.store.uow(),
                              clock=d.clock, actor=Actor.system("tests")).secret
        client = app.test_client()
        statuses = [client.get("/v1/engine", headers=bearer(key)).status_code
                    for _ in range(6)]
        assert statuses == [200] * 5 + [429]
    finally:
        d.store.dispose()


@pytest.mark.parametrize("bad", ["lots", "10/fortnight", ""])
def test_a_bad_limit_setting_stops_the_start(settings: Settings, fake_engine, bad: str) -> None:
    from faceapi.config import ConfigError
    from faceapi.entrypoints.web.app import create_app

    with pytest.raises(ConfigError, match="FACEAPI_RATE_LIMIT_VERIFY"):
        create_app(settings.with_overrides(rate_limit_verify=bad), engine=fake_engine)
