"""Mixed load at rising concurrency, and a soak, against a real gunicorn on PostgreSQL
and Redis.

Run (the full measurement in docs/operations.md, "Sizing"):
    .venv/bin/python -m bench.load --workers 1,2 --clients 1,2,4,8 --step-seconds 20
    .venv/bin/python -m bench.load --soak 600 --workers 2 --clients 4
Short trial:  .venv/bin/python -m bench.load --workers 1 --clients 1,2 --step-seconds 5

What it does, by itself, and undoes at the end:
- creates its own PostgreSQL database (`faceapi_load_<hex>` on --pg, user postgres),
  migrates it with `faceapi db upgrade`, and drops it afterwards;
- points the rate limiter at its own Redis database number (--redis-url, default db 9;
  nothing is flushed: the limiter's moving-window keys expire by themselves after their
  one-minute window) and raises both limits to 1,000,000/minute
  (FACEAPI_RATE_LIMIT_DEFAULT, FACEAPI_RATE_LIMIT_VERIFY), so the load measures the
  service and not the limiter (the Redis round trips per request are still made);
- runs in FACEAPI_ENV=production with the three keys in files outside the data
  directory, as a production start requires;
- makes app, operator, reviewer and auditor keys with `faceapi keys create`;
- starts `gunicorn -c deploy/gunicorn.conf.py wsgi:app` (FACEAPI_WORKERS, a free port
  on 127.0.0.1), seeds a collection through the API from the face set
  (FACEAPI_FACES_DIR, ../shared/data/faces, else tests/data/faces), then sends the mix
  below from N client threads (closed loop: each sends its next request when the last
  one answered), each step bounded by --step-seconds and --step-requests.

The mix (weights in MIX): 1:1 verify under `login` (genuine probes), verify under
`login` of decoy subjects with other people's faces (impostors: no_match, then 423 once
the lockout holds, by design), verify under `identity_check` (every usable result goes
to review), search under `photo_tagging`, detect, enroll of new subjects, the reviewer
reading the queue and voting on a pending review, and the auditor listing events and
reading one.

The client is our own (threads + http.client), not locust: it adds no dependency (locust
brings gevent and monkey-patches the process), it records every request's own latency
(locust's percentiles are bucketed), and a closed loop of N threads is all this needs.
One new connection per request: gunicorn's sync workers close the connection after each
response anyway.

Writes bench/results/load.json and load.md (or soak.json and soak.md with --soak).
Exits 1 if any response is a 5xx or a connection fails.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (`python bench/load.py`)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    REPO,
    RESULTS,
    child_pids,
    environment,
    labelled_faces,
    percentile,
    proc_cpu_seconds,
    proc_memory_kb,
    write_json,
)

VENV_BIN = Path(sys.executable).parent
COLLECTION = "load"
RATE_LIMIT = "1000000/minute"
# Decoy subjects: enrolled like the others but claimed only by impostors, so the lockout
# they end up in never touches a genuine verify.
DECOYS = 3
# Relative frequency of each operation in the mix.
MIX: dict[str, int] = {
    "verify_login": 22,
    "verify_impostor": 3,
    "verify_review": 7,
    "search": 18,
    "detect": 18,
    "enroll": 5,
    "review": 9,
    "audit": 12,
}


# The server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _admin_url(pg: str) -> str:
    return f"postgresql+psycopg://postgres@{pg}/postgres"


def _pg_exec(pg: str, statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(_admin_url(pg), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def _write_keys(secrets_dir: Path) -> dict[str, str]:
    """The three key files a production start needs, outside the data directory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    secrets_dir.mkdir(parents=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    files = {"FACEAPI_AUDIT_SIGNING_KEY": ("audit_signing_key.pem", pem),
             "FACEAPI_CREDENTIALS_KEY_FILE": (
                 "credentials.key", base64.urlsafe_b64encode(secrets.token_bytes(32)) + b"\n"),
             "FACEAPI_SECRET_KEY_FILE": (
                 "console_secret_key", secrets.token_urlsafe(48).encode() + b"\n")}
    env = {}
    for name, (filename, data) in files.items():
        path = secrets_dir / filename
        path.write_bytes(data)
        path.chmod(0o600)
        env[name] = str(path)
    return env


class Server:
    """gunicorn on PostgreSQL and Redis, with its own database, keys and data dir."""

    def __init__(self, workdir: Path, *, workers: int, pg: str, redis_url: str) -> None:
        self.workdir = workdir
        self.workers = workers
        self.pg = pg
        self.database = f"faceapi_load_{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("FACEAPI_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        self.env.update({
            "FACEAPI_ENV": "production",
            "FACEAPI_DATA_DIR": str(workdir / "data"),
            "FACEAPI_DATABASE_URL": f"postgresql+psycopg://postgres@{pg}/{self.database}",
            "FACEAPI_REDIS_URL": redis_url,
            "FACEAPI_BIND": f"127.0.0.1:{self.port}",
            "FACEAPI_WORKERS": str(workers),
            "FACEAPI_LOG_FORMAT": "json",
            "FACEAPI_RATE_LIMIT_DEFAULT": RATE_LIMIT,
            "FACEAPI_RATE_LIMIT_VERIFY": RATE_LIMIT,
        })
        self.env.update(_write_keys(workdir / "secrets"))
        self.log = workdir / "gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.keys: dict[str, str] = {}
        self.database_created = False

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "faceapi"), *args], env=self.env, cwd=REPO,
                              check=check, capture_output=True, text=True, timeout=600)

    def start(self) -> None:
        _pg_exec(self.pg, f'CREATE DATABASE "{self.database}"')
        self.database_created = True
        (self.workdir / "data").mkdir()
        self.cli("db", "upgrade")
        # Two reviewers' worth of distinct owners is not needed (identity_check wants
        # one), but the reviewer must not be the app's owner (two-person rule).
        for role in ("app", "operator", "reviewer", "auditor"):
            made = self.cli("keys", "create", "--role", role, "--name", f"load {role}",
                            "--owner", f"load-{role}@bench.invalid")
            self.keys[role] = made.stdout.splitlines()[0].strip()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
                env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log.read_text()[-3000:]}")
            try:
                if request(self.port, "GET", "/readyz").status == 200 and \
                        len(self.worker_pids()) == self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"gunicorn did not become ready:\n{self.log.read_text()[-3000:]}")

    @property
    def master_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        return child_pids(self.master_pid)

    def memory(self) -> dict[str, Any]:
        """VmRSS and PSS of the master and each worker, in KiB."""
        return {"master": {"pid": self.master_pid, **proc_memory_kb(self.master_pid)},
                "workers": [{"pid": pid, **proc_memory_kb(pid)} for pid in self.worker_pids()]}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far: the workers, the master, and the PostgreSQL backends
        connected to our database (those alive now; a backend that exited is lost)."""
        workers = sum(proc_cpu_seconds(pid) for pid in self.worker_pids())
        return {"workers": workers, "master": proc_cpu_seconds(self.master_pid),
                "postgres": self._backend_cpu()}

    def _backend_cpu(self) -> float:
        from sqlalchemy import create_engine, text

        engine = create_engine(_admin_url(self.pg))
        try:
            with engine.connect() as conn:
                pids = [row[0] for row in conn.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                    {"d": self.database})]
        finally:
            engine.dispose()
        total = 0.0
        for pid in pids:
            try:
                total += proc_cpu_seconds(pid)
            except OSError:
                continue
        return total

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def drop(self) -> None:
        if self.database_created:
            _pg_exec(self.pg, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self.database_created = False


@contextmanager
def running_server(*, workers: int, pg: str, redis_url: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="faceapi-load-") as tmp:
        server = Server(Path(tmp), workers=workers, pg=pg, redis_url=redis_url)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            server.drop()


# HTTP ----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def code(self) -> str:
        """Our error envelope's code, for a non-2xx answer."""
        try:
            return str(json.loads(self.body)["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return ""


def request(port: int, method: str, path: str, key: str | None = None, *,
            body: bytes | None = None, content_type: str = "",
            timeout: float = 120) -> Answer:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if content_type:
        headers["Content-Type"] = content_type
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return Answer(response.status, data, time.perf_counter() - start)


def post_form(port: int, path: str, key: str, fields: dict[str, str], image: bytes) -> Answer:
    body, content_type = multipart(fields, image)
    return request(port, "POST", path, key, body=body, content_type=content_type)


def multipart(fields: dict[str, str], image: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
             f"{value}\r\n".encode() for name, value in fields.items()]
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                 f"filename=\"image\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 .encode() + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# Seeding -------------------------------------------------------------------------------


@dataclass
class Workload:
    """What the mix draws from, found while seeding."""

    images: dict[str, bytes]  # file -> bytes, every labelled image (detect)
    genuine: list[tuple[str, str]] = field(default_factory=list)  # (subject, probe file)
    decoys: list[str] = field(default_factory=list)  # subjects claimed only by impostors
    impostor_probes: list[str] = field(default_factory=list)  # files of other subjects
    enrolled: int = 0
    seed_seconds: float = 0.0


def _must(answer: Answer, what: str) -> Answer:
    if not 200 <= answer.status < 300:
        raise RuntimeError(f"{what}: {answer.status} {answer.body[:300]!r}")
    return answer


def seed(server: Server, *, max_subjects: int, probes_per_subject: int) -> Workload:
    """Create the collection, enroll one image per identity, and keep as genuine probes
    the other images whose photo_tagging search finds their own subject at >= 70 (the
    login policy matches at 60)."""
    started = time.monotonic()
    root, rows = labelled_faces()
    images = {file: (root / file).read_bytes() for file, _ in rows}
    by_identity: dict[str, list[str]] = {}
    for file, identity in rows:
        if identity and identity != "none":
            by_identity.setdefault(identity, []).append(file)
    identities = sorted(i for i, files in by_identity.items() if len(files) >= 2)
    identities = identities[:max_subjects]
    op = server.keys["operator"]
    _must(request(server.port, "POST", "/v1/collections", op, content_type="application/json",
                  body=json.dumps({"collection_id": COLLECTION, "consent_required": False,
                                   "policies": ["login", "identity_check", "photo_tagging"]})
                  .encode()), "create collection")
    work = Workload(images=images)
    # The identities with the fewest images are the decoys (their probes are not
    # needed), a third of them at most (the fixtures of tests/data hold only two).
    decoys = set(sorted(identities, key=lambda i: (len(by_identity[i]), i))
                 [:min(DECOYS, max(1, len(identities) // 3))])
    candidates: list[tuple[str, str]] = []
    for identity in identities:
        files = by_identity[identity]
        enrolled_file = None
        for file in files:
            answer = post_form(server.port, f"/v1/collections/{COLLECTION}/faces", op,
                               {"subject_id": identity}, images[file])
            # A format the default intake refuses (GIF, BMP, WebP in the shared set) is
            # a 415: try the identity's next image.
            if answer.status == 200 and answer.json().get("FaceRecords"):
                enrolled_file = file
                work.enrolled += 1
                break
        if enrolled_file is None:
            continue
        others = [f for f in files if f != enrolled_file][:probes_per_subject]
        if identity in decoys:
            work.decoys.append(identity)
        else:
            candidates += [(identity, f) for f in others]
    app = server.keys["app"]
    for identity, file in candidates:
        answer = post_form(server.port, f"/v1/collections/{COLLECTION}/search", app,
                           {"policy": "photo_tagging"}, images[file])
        if answer.status != 200:
            continue
        matches = answer.json().get("FaceMatches") or []
        if matches and matches[0]["Face"]["ExternalImageId"] == identity and \
                matches[0]["Similarity"] >= 70:
            work.genuine.append((identity, file))
    # Impostors: genuine probes of the other subjects, claimed as a decoy.
    work.impostor_probes = [file for _, file in work.genuine]
    if not work.genuine or not work.decoys:
        raise RuntimeError(f"seeding found {len(work.genuine)} genuine probes and "
                           f"{len(work.decoys)} decoys: too few faces in {root}")
    work.seed_seconds = time.monotonic() - started
    return work


# The load ------------------------------------------------------------------------------


@dataclass
class Sample:
    route: str
    status: int  # 0: the connection failed
    code: str
    seconds: float
    end: float


class Clients:
    """N closed-loop client threads sending the mix until a deadline or a count."""

    def __init__(self, server: Server, work: Workload, *, seed_value: int) -> None:
        self.server = server
        self.work = work
        self.seed_value = seed_value
        self.lock = threading.Lock()
        self.claimed: set[str] = set()  # reviews a reviewer thread has taken
        self.event_ids: deque[str] = deque(maxlen=200)
        self.enroll_count = 0
        self.samples: list[Sample] = []
        self.outcomes: Counter[str] = Counter()

    # One operation each; they append their samples.
    def _send(self, route: str, method: str, path: str, role: str, *,
              body: bytes | None = None, content_type: str = "") -> Answer | None:
        try:
            answer = request(self.server.port, method, path, self.server.keys[role],
                             body=body, content_type=content_type)
        except OSError as exc:
            with self.lock:
                self.samples.append(Sample(route, 0, type(exc).__name__, 0.0, time.monotonic()))
            return None
        sample = Sample(route, answer.status, "" if answer.status < 300 else answer.code,
                        answer.seconds, time.monotonic())
        with self.lock:
            self.samples.append(sample)
        return answer

    def _verify(self, route: str, subject: str, file: str, policy: str) -> None:
        body, ctype = multipart({"collection_id": COLLECTION, "subject_id": subject,
                                 "policy": policy}, self.work.images[file])
        answer = self._send(route, "POST", "/v1/verify", "app", body=body, content_type=ctype)
        if answer is not None and answer.status == 200:
            with self.lock:
                self.outcomes[f"{route}:{answer.json()['outcome']}"] += 1

    def op_verify_login(self, rng: random.Random) -> None:
        subject, file = rng.choice(self.work.genuine)
        self._verify("verify_login", subject, file, "login")

    def op_verify_impostor(self, rng: random.Random) -> None:
        self._verify("verify_impostor", rng.choice(self.work.decoys),
                     rng.choice(self.work.impostor_probes), "login")

    def op_verify_review(self, rng: random.Random) -> None:
        subject, file = rng.choice(self.work.genuine)
        self._verify("verify_review", subject, file, "identity_check")

    def op_search(self, rng: random.Random) -> None:
        _, file = rng.choice(self.work.genuine)
        body, ctype = multipart({"policy": "photo_tagging"}, self.work.images[file])
        self._send("search", "POST", f"/v1/collections/{COLLECTION}/search", "app",
                   body=body, content_type=ctype)

    def op_detect(self, rng: random.Random) -> None:
        file = rng.choice(sorted(self.work.images))
        body, ctype = multipart({}, self.work.images[file])
        self._send("detect", "POST", "/v1/faces/detect", "app", body=body, content_type=ctype)

    def op_enroll(self, rng: random.Random) -> None:
        _, file = rng.choice(self.work.genuine)
        with self.lock:
            self.enroll_count += 1
            subject = f"new-{self.seed_value}-{self.enroll_count}"
        body, ctype = multipart({"subject_id": subject}, self.work.images[file])
        self._send("enroll", "POST", f"/v1/collections/{COLLECTION}/faces", "operator",
                   body=body, content_type=ctype)

    def op_review(self, rng: random.Random) -> None:
        """The reviewer reads the queue and votes on one pending review no other thread
        took (a vote on a closed review would be a 409 of our own making)."""
        answer = self._send("review_queue", "GET", "/v1/reviews?limit=20", "reviewer")
        if answer is None or answer.status != 200:
            return
        with self.lock:
            pending = [r["review_id"] for r in answer.json()["reviews"]
                       if r["review_id"] not in self.claimed]
            if not pending:
                return
            review_id = rng.choice(pending)
            self.claimed.add(review_id)
        vote = json.dumps({"decision": "confirm", "reason": "same person (load bench)"})
        self._send("review_vote", "POST", f"/v1/reviews/{review_id}/decision", "reviewer",
                   body=vote.encode(), content_type="application/json")

    def op_audit(self, rng: random.Random) -> None:
        with self.lock:
            known = list(self.event_ids)
        if known and rng.random() < 0.5:
            self._send("audit_event", "GET", f"/v1/audit/events/{rng.choice(known)}", "auditor")
            return
        answer = self._send("audit_events", "GET", "/v1/audit/events?limit=50", "auditor")
        if answer is not None and answer.status == 200:
            with self.lock:
                self.event_ids.extend(e["id"] for e in answer.json()["events"])

    def run(self, clients: int, seconds: float, max_requests: int,
            *, on_tick: Callable[[], None] | None = None, tick_seconds: float = 10.0,
            mix: dict[str, int] | None = None) -> tuple[list[Sample], float]:
        """Run `clients` threads until `seconds` pass or `max_requests` operations are
        sent (MIX, or `mix`); return the samples and the wall time from start to the
        last answer."""
        mix = mix or MIX
        operations = {name: getattr(self, f"op_{name}") for name in mix}
        names, weights = list(mix), list(mix.values())
        self.samples = []
        started = time.monotonic()
        deadline = started + seconds
        sent = [0]

        def client(index: int) -> None:
            rng = random.Random(self.seed_value * 1000 + index)
            while time.monotonic() < deadline:
                with self.lock:
                    if sent[0] >= max_requests:
                        return
                    sent[0] += 1
                operations[rng.choices(names, weights)[0]](rng)

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(clients)]
        for thread in threads:
            thread.start()
        next_tick = started + tick_seconds
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            if on_tick is not None and time.monotonic() >= next_tick:
                on_tick()
                next_tick += tick_seconds
        for thread in threads:
            thread.join()
        samples = list(self.samples)
        wall = (max(s.end for s in samples) - started) if samples else 0.0
        return samples, wall


# Reports -------------------------------------------------------------------------------


def summarize(samples: list[Sample], wall: float) -> dict[str, Any]:
    """Per route and in total: count, throughput, p50/p95/p99 (ms) of the answered
    requests, statuses, and the error codes of every non-2xx."""
    routes: dict[str, Any] = {}
    for route in sorted({s.route for s in samples}):
        mine = [s for s in samples if s.route == route]
        answered = [s.seconds for s in mine if s.status]
        routes[route] = {
            "count": len(mine),
            "per_s": len(mine) / wall if wall else 0.0,
            "p50_ms": percentile(answered, 50) * 1000,
            "p95_ms": percentile(answered, 95) * 1000,
            "p99_ms": percentile(answered, 99) * 1000,
            "statuses": dict(sorted(Counter(str(s.status) for s in mine).items())),
            "non_2xx": dict(sorted(Counter(f"{s.status} {s.code}".strip() for s in mine
                                           if not 200 <= s.status < 300).items())),
        }
    return {
        "requests": len(samples),
        "wall_s": wall,
        "per_s": len(samples) / wall if wall else 0.0,
        "status_5xx": sum(1 for s in samples if s.status >= 500),
        "connection_errors": sum(1 for s in samples if s.status == 0),
        "non_2xx": sum(1 for s in samples if not 200 <= s.status < 300),
        "routes": routes,
    }


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def _memory_line(memory: dict[str, Any]) -> str:
    workers = ", ".join(f"{_mb(w['rss_kb'])}/{_mb(w['pss_kb'])}/{_mb(w['peak_rss_kb'])}"
                        for w in memory["workers"])
    return (f"master {_mb(memory['master']['rss_kb'])}/{_mb(memory['master']['pss_kb'])} MB, "
            f"workers {workers} MB (VmRSS/PSS/peak VmRSS)")


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"  # NaN: nothing answered


def markdown_steps(run: dict[str, Any]) -> list[str]:
    lines = [f"### {run['workers']} worker(s)", "",
             f"Seeded {run['seed']['enrolled']} subjects, {run['seed']['genuine_probes']} "
             f"genuine probes, {run['seed']['decoys']} decoys in {run['seed']['seconds']:.0f} s. "
             f"Memory before the load: {_memory_line(run['memory_before'])}; after: "
             f"{_memory_line(run['memory_after'])}.", "",
             "| clients | requests | req/s | 5xx | other non-2xx | worker CPU s | "
             "cores the workers got | req per worker-CPU-s | load average (1 min) | "
             "p50 / p95 / p99 ms (all) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for step in run["steps"]:
        s = step["summary"]
        loads = step.get("load_average")
        load = f"{loads[0]:.1f} → {loads[1]:.1f}" if loads else "-"
        lines.append(
            f"| {step['clients']} | {s['requests']} | {s['per_s']:.2f} | {s['status_5xx']} | "
            f"{s['non_2xx'] - s['status_5xx']} | {step['cpu']['workers']:.1f} | "
            f"{step['cpu']['workers'] / s['wall_s']:.2f} | "
            f"{step['requests_per_worker_cpu_s']:.2f} | {load} | "
            f"{_ms(step['all_p50_ms'])} / {_ms(step['all_p95_ms'])} / "
            f"{_ms(step['all_p99_ms'])} |")
    refused: Counter[str] = Counter()
    for step in run["steps"]:
        for route, r in step["summary"]["routes"].items():
            refused.update({f"{route} {k}": v for k, v in r["non_2xx"].items()})
    lines += ["", "Every non-2xx answer over the steps (route, status, code): "
              + (", ".join(f"{k} x{v}" for k, v in sorted(refused.items())) or "none") + "."]
    last = run["steps"][-1]
    lines += ["", f"Per route at {last['clients']} clients:", "",
              "| route | count | req/s | p50 ms | p95 ms | p99 ms | non-2xx |",
              "|---|---|---|---|---|---|---|"]
    for route, r in last["summary"]["routes"].items():
        non = ", ".join(f"{k}: {v}" for k, v in r["non_2xx"].items()) or "0"
        lines.append(f"| {route} | {r['count']} | {r['per_s']:.2f} | {_ms(r['p50_ms'])} | "
                     f"{_ms(r['p95_ms'])} | {_ms(r['p99_ms'])} | {non} |")
    return lines


def _step(server: Server, clients_runner: Clients, clients: int, seconds: float,
          max_requests: int) -> dict[str, Any]:
    cpu_before = server.cpu_seconds()
    client_cpu = time.process_time()
    load_before = os.getloadavg()[0]
    samples, wall = clients_runner.run(clients, seconds, max_requests)
    cpu_after = server.cpu_seconds()
    load_after = os.getloadavg()[0]
    summary = summarize(samples, wall)
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_before}
    cpu["load_client"] = time.process_time() - client_cpu
    answered = [s.seconds for s in samples if s.status]
    # The machine's load average at the start and end of the step: on a shared machine
    # it says how much of the CPU the server could get.
    return {"clients": clients, "summary": summary, "cpu": cpu,
            "load_average": [load_before, load_after],
            "requests_per_worker_cpu_s": summary["requests"] / cpu["workers"]
            if cpu["workers"] else 0.0,
            "all_p50_ms": percentile(answered, 50) * 1000,
            "all_p95_ms": percentile(answered, 95) * 1000,
            "all_p99_ms": percentile(answered, 99) * 1000}


def rising(args: argparse.Namespace) -> int:
    runs = []
    for workers in args.workers:
        with running_server(workers=workers, pg=args.pg, redis_url=args.redis_url) as server:
            work = seed(server, max_subjects=args.subjects, probes_per_subject=args.probes)
            print(f"{workers} worker(s): seeded {work.enrolled} subjects, "
                  f"{len(work.genuine)} genuine probes in {work.seed_seconds:.0f} s", flush=True)
            runner = Clients(server, work, seed_value=workers)
            memory_before = server.memory()
            steps = []
            for clients in args.clients:
                step = _step(server, runner, clients, args.step_seconds, args.step_requests)
                s = step["summary"]
                print(f"  {clients} clients: {s['requests']} requests, {s['per_s']:.2f}/s, "
                      f"5xx {s['status_5xx']}, other non-2xx {s['non_2xx'] - s['status_5xx']}",
                      flush=True)
                steps.append(step)
            runs.append({"workers": workers, "steps": steps, "memory_before": memory_before,
                         "memory_after": server.memory(),
                         "outcomes": dict(sorted(runner.outcomes.items())),
                         "seed": {"enrolled": work.enrolled, "genuine_probes": len(work.genuine),
                                  "decoys": len(work.decoys), "seconds": work.seed_seconds}})
    result = {"environment": environment(), "command": _command(),
              "config": _config(args), "mix": MIX, "runs": runs, "growth_1_to_2": _growth(runs)}
    write_json(args.output + ".json", result)
    render(result, args.output)
    return _verdict(runs)


def render(result: dict[str, Any], output: str) -> None:
    """Write <output>.md from a result (also from a saved JSON: --render)."""
    runs, growth = result["runs"], result["growth_1_to_2"]
    lines = [f"# Load: mixed requests at rising concurrency ({result['environment']['time_utc']})",
             "", f"Command: `{result['command']}`", ""]
    for run in runs:
        lines += [*markdown_steps(run), ""]
    if growth:
        lines += ["### Throughput growth from 1 to 2 workers", "",
                  "| clients | req/s 1 worker | req/s 2 workers | ratio |", "|---|---|---|---|"]
        lines += [f"| {g['clients']} | {g['one']:.2f} | {g['two']:.2f} | {g['ratio']:.2f} |"
                  for g in growth]
    (RESULTS / (output + ".md")).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _growth(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_workers = {r["workers"]: {s["clients"]: s["summary"]["per_s"] for s in r["steps"]}
                  for r in runs}
    if 1 not in by_workers or 2 not in by_workers:
        return []
    return [{"clients": c, "one": by_workers[1][c], "two": by_workers[2][c],
             "ratio": by_workers[2][c] / by_workers[1][c] if by_workers[1][c] else 0.0}
            for c in by_workers[1] if c in by_workers[2]]


def _verdict(runs: list[dict[str, Any]]) -> int:
    bad = [(r["workers"], s["clients"]) for r in runs for s in r["steps"]
           if s["summary"]["status_5xx"] or s["summary"]["connection_errors"]]
    if bad:
        print(f"FAIL: 5xx or connection errors at (workers, clients) {bad}")
        return 1
    return 0


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "output"} | {
        "rate_limits": RATE_LIMIT, "env": "production", "detector": "hog (default)",
        "threads_per_worker": 1, "store": "postgresql", "rate_limit_storage": "redis"}


def _command() -> str:
    return ".venv/bin/python -m bench.load " + " ".join(sys.argv[1:])


# The soak ------------------------------------------------------------------------------


def growth(before: int, after: int) -> float:
    return (after - before) / before


def floor_growth(series: list[tuple[float, int]], since_s: float,
                 window_s: float = 60.0) -> float | None:
    """Growth of a memory series [(seconds, KiB)] under load, judged by its floor: the
    lowest sample of the first window after `since_s` against the lowest of the last
    window. The samples swing by tens of MB with the images in flight at that moment;
    their floor is what rises when a process leaks."""
    after = [(t, v) for t, v in series if t >= since_s]
    if not after or after[-1][0] - after[0][0] < 2 * window_s:
        return None
    first = min(v for t, v in after if t < after[0][0] + window_s)
    last = min(v for t, v in after if t > after[-1][0] - window_s)
    return growth(first, last)


def _quiet_memory(server: Server) -> dict[str, Any]:
    """Memory with no request in flight (the clients have stopped): comparable samples,
    unlike those taken under load."""
    time.sleep(2.0)
    return server.memory()


def soak(args: argparse.Namespace) -> int:
    workers = args.workers[0]
    clients = args.clients[0]
    with running_server(workers=workers, pg=args.pg, redis_url=args.redis_url) as server:
        work = seed(server, max_subjects=args.subjects, probes_per_subject=args.probes)
        print(f"seeded {work.enrolled} subjects, {len(work.genuine)} genuine probes; "
              f"soak {args.soak:.0f} s (warm-up {args.warmup:.0f} s) at {clients} clients on "
              f"{workers} worker(s)", flush=True)
        runner = Clients(server, work, seed_value=99)
        pids = server.worker_pids()
        started = time.monotonic()
        under_load: list[dict[str, Any]] = []

        def sample() -> None:
            now = time.monotonic() - started
            memory = server.memory()
            under_load.append({"t_s": round(now, 1), **memory})
            w = ", ".join(f"{_mb(x['rss_kb'])}/{_mb(x['pss_kb'])}" for x in memory["workers"])
            print(f"  t={now:5.0f} s  workers {w} MB (VmRSS/PSS)", flush=True)

        idle_start = server.memory()
        cpu_before = server.cpu_seconds()
        # Warm-up: the same load; then the clients stop for a moment so the baseline is
        # taken with nothing in flight.
        warm_samples, _ = runner.run(clients, args.warmup, 10**9, on_tick=sample,
                                     tick_seconds=args.sample_seconds)
        idle_warm = _quiet_memory(server)
        resumed = time.monotonic()
        main_samples, _ = runner.run(clients, args.soak - args.warmup, 10**9, on_tick=sample,
                                     tick_seconds=args.sample_seconds)
        wall = time.monotonic() - started
        idle_end = _quiet_memory(server)
        cpu_after = server.cpu_seconds()
        restarted = server.worker_pids() != pids
        summary = summarize(warm_samples + main_samples, wall)
        main_summary = summarize(main_samples, max((s.end for s in main_samples),
                                                   default=resumed) - resumed)
        per_worker = {}
        for pid in pids:
            def idle(memory: dict[str, Any], key: str, pid: int = pid) -> int:
                return int(next(w[key] for w in memory["workers"] if w["pid"] == pid))

            series = {key: [(s["t_s"], w[key]) for s in under_load for w in s["workers"]
                            if w["pid"] == pid] for key in ("rss_kb", "pss_kb")}
            per_worker[str(pid)] = {
                key: {"idle_start_kb": idle(idle_start, key), "idle_warm_kb": idle(idle_warm, key),
                      "idle_end_kb": idle(idle_end, key),
                      "growth_after_warmup": growth(idle(idle_warm, key), idle(idle_end, key)),
                      "growth_from_start": growth(idle(idle_start, key), idle(idle_end, key)),
                      "floor_growth_under_load": floor_growth(series[key], args.warmup)}
                for key in ("rss_kb", "pss_kb")}
        verify = server.cli("audit", "verify", "--json", check=False)
        try:
            report = json.loads(verify.stdout)
        except ValueError:
            report = {"unparsed": verify.stdout[-2000:], "stderr": verify.stderr[-2000:]}
        events = _audit_count(server)
    worst = max(abs(g[key]["growth_after_warmup"]) for g in per_worker.values()
                for key in ("rss_kb", "pss_kb"))
    other = summary["non_2xx"] - summary["status_5xx"] - summary["connection_errors"]
    result = {"environment": environment(), "command": _command(), "config": _config(args),
              "mix": MIX, "seed": {"enrolled": work.enrolled, "genuine_probes": len(work.genuine)},
              "summary": summary, "after_warmup": main_summary,
              "cpu": {k: cpu_after[k] - cpu_before[k] for k in cpu_before},
              "outcomes": dict(sorted(runner.outcomes.items())),
              "warmup_s": args.warmup, "workers_restarted": restarted,
              "idle_memory": {"start": idle_start, "after_warmup": idle_warm, "end": idle_end},
              "memory_growth": per_worker, "worst_growth_after_warmup": worst,
              "audit_verify": {"exit_code": verify.returncode, "report": report},
              "audit_events": events, "memory_under_load": under_load}
    write_json(args.output + ".json", result)
    when = result["environment"]["time_utc"]
    lines = [f"# Soak: {args.soak:.0f} s of steady mixed load ({when})",
             "", f"Command: `{_command()}`", "",
             f"{workers} worker(s), {clients} clients, {summary['requests']} requests "
             f"({summary['per_s']:.2f}/s), 5xx: {summary['status_5xx']}, connection errors: "
             f"{summary['connection_errors']}, other non-2xx: {other}. "
             f"Workers restarted: {'yes' if restarted else 'no'}.", "",
             f"Warm-up = the first {args.warmup:.0f} s of the same load. Memory is compared "
             "idle (the clients paused 2 s, nothing in flight): at the start, after the "
             f"warm-up and at the end. Under load it was sampled every "
             f"{args.sample_seconds:.0f} s (in the JSON); its floor (lowest sample of the "
             "first and of the last minute after the warm-up) is the last column.", "",
             "| worker pid | measure | idle at start MB | idle after warm-up MB | idle at end MB "
             "| growth after warm-up | growth from start | floor growth under load |",
             "|---|---|---|---|---|---|---|---|"]
    for pid, g in per_worker.items():
        for key, name in (("rss_kb", "VmRSS"), ("pss_kb", "PSS")):
            m = g[key]
            floor = m["floor_growth_under_load"]
            lines.append(
                f"| {pid} | {name} | {_mb(m['idle_start_kb'])} | {_mb(m['idle_warm_kb'])} | "
                f"{_mb(m['idle_end_kb'])} | {m['growth_after_warmup']:+.1%} | "
                f"{m['growth_from_start']:+.1%} | "
                f"{'-' if floor is None else f'{floor:+.1%}'} |")
    sums = ", ".join(f"{name} {_mb(m['master']['pss_kb'] + sum(w['pss_kb'] for w in m['workers']))}"
                     for name, m in (("start", idle_start), ("after warm-up", idle_warm),
                                     ("end", idle_end)))
    lines += ["", f"Sum of PSS of the master and the workers, idle (MB): {sums}."]
    peaks = ", ".join(f"{w['pid']}: {_mb(w['peak_rss_kb'])} MB" for w in idle_end["workers"])
    lines += ["", f"Peak VmRSS (VmHWM) of each worker over the whole run: {peaks}."]
    lines += ["", f"Audit chain: `faceapi audit verify` exit {verify.returncode}; "
              f"{events['events']} events, seq {events['min_seq']}..{events['max_seq']}, "
              f"gaps: {events['gaps']}.", "",
              "| route | count | p50 ms | p95 ms | p99 ms | non-2xx |", "|---|---|---|---|---|---|"]
    for route, r in summary["routes"].items():
        non = ", ".join(f"{k}: {v}" for k, v in r["non_2xx"].items()) or "0"
        lines.append(f"| {route} | {r['count']} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | "
                     f"{_ms(r['p99_ms'])} | {non} |")
    (RESULTS / (args.output + ".md")).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    failed = (summary["status_5xx"] or summary["connection_errors"] or verify.returncode
              or events["gaps"] or restarted or not worst < 0.05)
    if failed:
        print("FAIL: see above")
    return 1 if failed else 0


def _audit_count(server: Server) -> dict[str, Any]:
    """Events in the chain and whether their sequence numbers have a hole (the CLI's
    verify walks the hashes; this counts rows independently of it)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server.env["FACEAPI_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            count, low, high = conn.execute(text(
                "SELECT count(*), min(seq), max(seq) FROM audit_events")).one()
    finally:
        engine.dispose()
    return {"events": count, "min_seq": low, "max_seq": high,
            "gaps": 0 if not count else (high - low + 1) - count}


# Entry ---------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=_ints, default=[1, 2],
                        help="gunicorn worker counts, one server each (soak: the first)")
    parser.add_argument("--clients", type=_ints, default=[1, 2, 4, 8],
                        help="concurrent clients per step (soak: the first)")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--step-requests", type=int, default=2000,
                        help="at most this many requests per step")
    parser.add_argument("--subjects", type=int, default=30, help="identities to enroll")
    parser.add_argument("--probes", type=int, default=3, help="probe images per identity")
    parser.add_argument("--soak", type=float, default=0.0,
                        help="soak for this many seconds instead of the rising steps")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="soak: seconds before the memory baseline is taken")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--pg", default="127.0.0.1:5432", help="PostgreSQL host:port")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--output", default="",
                        help="results name in bench/results (default load or soak)")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite <output>.md from bench/results/<output>.json")
    args = parser.parse_args()
    if args.render:
        name = args.output or "load"
        render(json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8")), name)
        return 0
    if args.soak:
        args.output = args.output or "soak"
        if args.workers == [1, 2]:
            args.workers = [2]
        if args.clients == [1, 2, 4, 8]:
            args.clients = [4]
        return soak(args)
    args.output = args.output or "load"
    return rising(args)


if __name__ == "__main__":
    sys.exit(main())
