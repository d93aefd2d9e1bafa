"""`/metrics` under `gunicorn -w 2`: real requests (detect, verify, search, a lockout, a
review, rate-limit refusals) served by both workers, then one scrape that finds every
family with the counts summed across the workers, and the access rules of /metrics."""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from faceapi.adapters.blobs import DirectoryBlobStore
from faceapi.adapters.engines.factory import build_engine
from faceapi.adapters.images import PillowImageDecoder
from faceapi.adapters.store import Store
from faceapi.config import ConfigError, Settings
from faceapi.domain.audit import Actor
from faceapi.services import keys
from faceapi.services.collections import CreateCollectionRequest, create_collection
from faceapi.services.enroll import IndexFacesRequest, index_faces
from tests.fakes import FakeClock
from tests.integration.test_rate_limit import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"
ENROLLED = DATASET / "img5.jpg"  # angelina_jolie
GENUINE = DATASET / "img6.jpg"  # angelina_jolie, another photo
IMPOSTOR = DATASET / "img12.jpg"  # jennifer_aniston
VERIFY_LIMIT = 12  # per worker and minute (memory counts: each worker counts alone)


@dataclass
class Server:
    env: dict[str, str]
    metrics_dir: Path
    app_key: str
    auditor_key: str
    operator_key: str
    process: subprocess.Popen[bytes]
    log: Path

    def address(self, name: str = "FACEAPI_BIND") -> tuple[str, int]:
        host, port = self.env[name].rsplit(":", 1)
        return host, int(port)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if not ENROLLED.is_file():
        pytest.skip("face fixtures missing")
    data_dir = tmp_path / "data"
    settings = Settings(env="test", data_dir=data_dir)
    store = Store.from_settings(settings)
    store.upgrade()
    engine = build_engine(settings)
    system = Actor.system("tests")
    clock = FakeClock()
    create_collection(CreateCollectionRequest(
        "door", consent_required=False, policies=("login", "photo_tagging", "identity_check")),
        actor=system, engine=engine, uow=store.uow(), clock=clock)
    for subject in ("angelina", "locked-out"):
        index_faces(IndexFacesRequest(collection_id="door", image=ENROLLED.read_bytes(),
                                      subject_id=subject),
                    actor=system, engine=engine, uow=store.uow(), clock=clock,
                    decoder=PillowImageDecoder(settings),
                    blobs=DirectoryBlobStore(settings.resolved_blob_dir))
    secrets = {role: keys.create_key(keys.NewKey(name=f"metrics {role}", role=role),
                                     uow=store.uow(), clock=clock, actor=system).secret
               for role in ("app", "auditor", "operator")}
    store.dispose()
    metrics_dir = tmp_path / "prometheus"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEAPI_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(data_dir),
                "FACEAPI_POLICIES_DIR": str(REPO / "policies"),
                "FACEAPI_LOG_FORMAT": "json", "FACEAPI_LOG_LEVEL": "WARNING",
                "FACEAPI_WORKERS": "2",
                "FACEAPI_BIND": f"127.0.0.1:{free_port()}",
                "FACEAPI_METRICS_BIND": f"127.0.0.1:{free_port()}",
                "FACEAPI_RATE_LIMIT_VERIFY": f"{VERIFY_LIMIT}/minute",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
             "wsgi:app"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=handle, env=env)
    srv = Server(env, metrics_dir, secrets["app"], secrets["auditor"], secrets["operator"],
                 process, log)
    try:
        wait_healthy(srv)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(srv: Server) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if srv.process.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{srv.log.read_text()[-3000:]}")
        try:
            if call(srv, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"gunicorn did not answer:\n{srv.log.read_text()[-3000:]}")


# A random loopback source per run, so no other test's address bucket interferes.
SOURCE = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def call(srv: Server, method: str, path: str, key: str | None = None, *,
         body: dict[str, Any] | None = None,
         address: str = "FACEAPI_BIND") -> tuple[int, bytes]:
    """One request on a fresh connection (so gunicorn hands it to any free worker)."""
    host, port = srv.address(address)
    conn = http.client.HTTPConnection(host, port, timeout=60, source_address=(SOURCE, 0))
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def image(path: Path) -> dict[str, str]:
    return {"bytes": base64.b64encode(path.read_bytes()).decode("ascii")}


def verify(srv: Server, subject: str, probe: Path, policy: str = "login") -> tuple[int, bytes]:
    return call(srv, "POST", "/v1/verify", srv.app_key,
                body={"collection_id": "door", "subject_id": subject, "policy": policy,
                 "image": image(probe)})


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape: (name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= ls)


def per_worker_requests(metrics_dir: Path, tmp: Path) -> dict[str, float]:
    """Requests counted by each worker (pid) alone, read from its own histogram file."""
    counts = {}
    for path in sorted(metrics_dir.glob("histogram_*.db")):
        alone = tmp / path.stem
        alone.mkdir()
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts[path.stem.split("_", 1)[1]] = sum(
            s.value for family in registry.collect() for s in family.samples
            if s.name == "faceapi_http_request_duration_seconds_count")
    return counts


def test_metrics_from_two_workers_are_summed_and_every_family_is_there(
        server: Server, tmp_path: Path) -> None:
    statuses: Counter[tuple[str, int]] = Counter()
    # Five failed verifies lock the claimed subject for the login policy; the sixth is
    # refused (423). One decision under identity_check waits for a reviewer.
    for _ in range(6):
        status, _ = verify(server, "locked-out", IMPOSTOR)
        statuses["verify", status] += 1
    status, body = verify(server, "angelina", GENUINE, policy="identity_check")
    assert status == 200, body
    assert json.loads(body)["outcome"] == "pending_review", body
    statuses["verify", status] += 1
    # The lock lasts the policy's base delay (60 s): read it now, from either worker.
    status, text = call(server, "GET", "/metrics", server.auditor_key)
    statuses["metrics", status] += 1
    assert status == 200, text
    assert total(samples(text.decode()), "faceapi_lockouts_active", policy="login") == 1

    def mixed(i: int) -> tuple[str, int]:
        if i % 3 == 0:
            return "detect", call(server, "POST", "/v1/faces/detect", server.app_key,
                                  body={"image": image(GENUINE)})[0]
        if i % 3 == 1:
            return "search", call(server, "POST", "/v1/collections/door/search",
                                  server.app_key,
                                  body={"image": image(GENUINE), "policy": "photo_tagging"})[0]
        return "verify", verify(server, "angelina", GENUINE)[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses.update(pool.map(mixed, range(4 * 3 * VERIFY_LIMIT)))
    assert statuses["verify", 429] + statuses["search", 429] > 0, statuses
    assert statuses["detect", 200] > 0, statuses
    assert statuses["search", 200] > 0, statuses

    status, text = call(server, "GET", "/metrics", server.auditor_key)
    assert status == 200, text
    values = samples(text.decode())

    # Both workers served, and /metrics is the sum of what each counted.
    workers = per_worker_requests(server.metrics_dir, tmp_path)
    assert len(workers) == 2, workers
    assert all(count > 0 for count in workers.values()), workers
    counted = total(values, "faceapi_http_request_duration_seconds_count")
    # The scrape is counted once answered: in the files now, not in its own body.
    assert counted == sum(workers.values()) - 1, (counted, workers)
    # Every request of this test (the first scrape too), plus the start-up /healthz.
    assert total(values, "faceapi_http_request_duration_seconds_count", route="/healthz") == 1
    assert counted == sum(statuses.values()) + 1, (counted, statuses)

    # Requests by route rule (never the raw path) and status.
    route = "/v1/collections/<string:collection_id>/search"
    assert total(values, "faceapi_http_request_duration_seconds_count", route=route,
                 status="200") == statuses["search", 200]
    assert total(values, "faceapi_http_request_duration_seconds_count", route="/v1/verify",
                 status="423") == 1
    assert not any("door" in dict(labels).get("route", "") for _, labels in values)
    assert total(values, "faceapi_http_request_duration_seconds_bucket", route="/v1/verify",
                 le="+Inf") == sum(n for (what, _), n in statuses.items() if what == "verify")

    # Engine stages, timed at the adapter boundary.
    for stage in ("decode", "detect", "embed", "search"):
        assert total(values, "faceapi_engine_stage_duration_seconds_count", stage=stage) > 0, \
            stage

    # Decisions by policy and outcome: one for every 200 of verify and search.
    assert total(values, "faceapi_decisions_total", policy="login", outcome="no_match") == 5
    assert total(values, "faceapi_decisions_total", policy="identity_check",
                 outcome="pending_review") == 1
    assert total(values, "faceapi_decisions_total", policy="photo_tagging") == \
        statuses["search", 200]
    assert total(values, "faceapi_decisions_total") == \
        statuses["verify", 200] + statuses["search", 200]

    # Read from the store at scrape time: review queue, lockouts, audit chain.
    assert total(values, "faceapi_store_scrape_ok") == 1
    assert total(values, "faceapi_review_queue_depth", policy="identity_check") == 1
    assert total(values, "faceapi_review_queue_oldest_age_seconds",
                 policy="identity_check") >= 0
    assert total(values, "faceapi_audit_appends_total") > 0
    assert ("faceapi_audit_chain_head_age_seconds", frozenset()) in values
    assert ("faceapi_audit_checkpoint_seq", frozenset()) in values

    # Rate-limit refusals, summed across workers.
    assert total(values, "faceapi_rate_limit_refusals_total") == \
        statuses["verify", 429] + statuses["search", 429] + statuses["detect", 429]

    # The Grafana dashboard is built on these names.
    dashboard = (REPO / "deploy" / "grafana-dashboard.json").read_text()
    used = set(re.findall(r"faceapi_[a-z_]+", dashboard))
    assert used, "no faceapi metric in the dashboard"
    assert not {name for name in used if name not in text.decode()}, used

    # No subject or collection id in any label.
    assert "locked-out" not in text.decode()
    assert "angelina" not in text.decode()


def test_metrics_need_a_key_of_an_allowed_role_except_on_the_metrics_address(
        server: Server) -> None:
    assert call(server, "GET", "/metrics")[0] == 401
    assert call(server, "GET", "/metrics", server.app_key)[0] == 403
    assert call(server, "GET", "/metrics", server.operator_key)[0] == 403
    status, text = call(server, "GET", "/metrics", server.auditor_key)
    assert status == 200
    assert b"faceapi_store_scrape_ok" in text
    # The separate address: /metrics without a key, nothing else at all.
    status, text = call(server, "GET", "/metrics", address="FACEAPI_METRICS_BIND")
    assert status == 200
    assert b"faceapi_http_request_duration_seconds" in text
    assert call(server, "GET", "/healthz", address="FACEAPI_METRICS_BIND")[0] == 404
    assert call(server, "GET", "/v1/engine", server.app_key,
                address="FACEAPI_METRICS_BIND")[0] == 404


# --------------------------------------------------------------------- one process, no gunicorn

def test_one_process_serves_its_own_registry_by_route_rule(
        client: FlaskClient, auth_headers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert client.get("/v1/collections/secret-collection",
                      headers=auth_headers("operator")).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    response = client.get("/metrics", headers=auth_headers("admin"))
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    values = samples(response.get_data(as_text=True))
    assert total(values, "faceapi_http_request_duration_seconds_count",
                 route="/v1/collections/<collection_id>", status="404") == 1
    assert total(values, "faceapi_http_request_duration_seconds_count",
                 route="<unmatched>") == 1
    assert total(values, "faceapi_store_scrape_ok") == 1
    assert "secret-collection" not in response.get_data(as_text=True)


def test_metrics_can_be_switched_off(settings: Settings, fake_engine: Any,
                                     clock: FakeClock) -> None:
    from faceapi.entrypoints.web.app import create_app

    app = create_app(settings.with_overrides(metrics_enabled=False), engine=fake_engine,
                     clock=clock)
    try:
        assert app.test_client().get("/metrics").status_code == 404
    finally:
        app.extensions["faceapi"].close()


@pytest.mark.parametrize("bad", ["9100", ":9100", "host:port", "127.0.0.1:70000"])
def test_a_metrics_bind_must_be_host_and_port(bad: str) -> None:
    with pytest.raises(ConfigError, match="FACEAPI_METRICS_BIND"):
        Settings(metrics_bind=bad)
