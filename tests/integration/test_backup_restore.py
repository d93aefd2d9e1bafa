"""The backup and restore drill (issue 16, docs/operations.md "Backup and restore"): data
made through the real app (gunicorn, the local engine, PostgreSQL), backed up with
`pg_dump --format=custom` and then a tar of the blob directory, restored into a new
database and a new blob directory, served again by a new gunicorn. On the copy the
`faceapi` CLI (real subprocesses) finds the audit chain intact and every blob present,
the same probe finds the same faces with the same similarity, every crop and review
evidence file reads back byte for byte, and every table holds as many rows.

And the mistake an operator can make: restoring the database without its blob archive
serves (readyz is 200: it cannot know which files should exist) and the audit chain
verifies (it holds no image), but `faceapi blobs check` fails and names what is missing.

Uses bench/backup_drill.py's backup() and restore functions: the commands the docs
give and the bench times are the ones tested here."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.backup_drill import (
    backup,
    faceapi_env,
    libpq_url,
    new_database,
    restore_blobs,
    restore_database,
    row_counts,
)
from faceapi.adapters.store import Store
from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.domain.clock import SystemClock
from faceapi.services import keys as keys_svc
from tests.integration.test_lockout_gunicorn import DATASET, PG_SERVER_URL
from tests.support.production_keys import write_production_keys
from tests.support.servers import Gunicorn as Server
from tests.support.servers import start_gunicorn

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ANGELINA = (DATASET / "img5.jpg", DATASET / "img6.jpg")  # enrolled / probe
JENNIFER = DATASET / "img12.jpg"
CONSENT = {"basis": "explicit_consent", "reference": "form-drill-1"}


def call(server: Server, method: str, path: str, key: str,
         body: dict[str, Any] | None = None) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(
        server.url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
            status = response.status
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        raw, status, kind = error.read(), error.code, error.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in kind else None, raw


def image(path: Path) -> dict[str, str]:
    return {"bytes": base64.b64encode(path.read_bytes()).decode("ascii")}


def stop(server: Server) -> None:
    server.stop(timeout=20)


def faceapi(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The `faceapi` command of this venv, as an operator runs it."""
    return subprocess.run([str(Path(sys.executable).parent / "faceapi"), *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


class Deployment:
    """One faceapi installation: a database, a data dir (blobs inside), the shared keys."""

    def __init__(self, database_url: str, root: Path, keys: dict[str, str]) -> None:
        self.database_url = database_url
        self.data_dir = root / "data"
        self.blob_dir = self.data_dir / "blobs"
        self.root = root
        self.env = faceapi_env(database_url, self.data_dir, keys,
                               FACEAPI_RATE_LIMIT_VERIFY="600/minute")

    def serve(self, name: str) -> Server:
        log = self.root / f"{name}.log"
        return start_gunicorn(self.env, log, workers=1)


@pytest.fixture
def source(db_backend: str, tmp_path: Path) -> Iterator[tuple[Deployment, dict[str, str]]]:
    if db_backend != "postgresql":
        pytest.skip("runs in the PostgreSQL pass (--db=postgresql)")
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore not installed")
    if not ANGELINA[0].is_file():
        pytest.skip("face fixtures missing")
    keys = write_production_keys(tmp_path / "secrets")
    with new_database(PG_SERVER_URL, "faceapi_drill_src") as url:
        deployment = Deployment(url, tmp_path / "source", keys)
        done = faceapi(deployment.env, "db", "upgrade")
        assert done.returncode == 0, done.stderr
        yield deployment, keys


def make_keys(deployment: Deployment) -> dict[str, str]:
    settings = Settings.from_env({k: v for k, v in deployment.env.items()
                                  if k.startswith("FACEAPI_")})
    store = Store.from_settings(settings)
    try:
        return {role: keys_svc.create_key(
            keys_svc.NewKey(name=f"drill {role}", role=role, owner=f"{role}@example.org"),
            uow=store.uow(), clock=SystemClock(), actor=Actor.system("drill")).secret
            for role in ("operator", "app", "reviewer")}
    finally:
        store.dispose()


def make_data(server: Server, keys: dict[str, str]) -> dict[str, Any]:
    """A collection, two enrolled people, a final decision and a reviewed one."""
    op, app, reviewer = keys["operator"], keys["app"], keys["reviewer"]
    status, body, _ = call(server, "POST", "/v1/collections", op, {
        "collection_id": "staff",
        "policies": ["identity_check", "login", "photo_tagging"]})
    assert status == 201, body
    face_ids = {}
    for subject, path in (("angelina", ANGELINA[0]), ("jennifer", JENNIFER)):
        status, body, _ = call(server, "POST", "/v1/collections/staff/faces", op, {
            "image": image(path), "subject_id": subject, "consent": CONSENT})
        assert status == 200, body
        face_ids[subject] = body["FaceRecords"][0]["Face"]["FaceId"]
    status, login, _ = call(server, "POST", "/v1/verify", app, {
        "collection_id": "staff", "subject_id": "angelina", "policy": "login",
        "image": image(ANGELINA[1])})
    assert status == 200, login
    assert login["outcome"] == "match"
    status, check, _ = call(server, "POST", "/v1/verify", app, {
        "collection_id": "staff", "subject_id": "angelina", "policy": "identity_check",
        "image": image(ANGELINA[1])})
    assert status == 200, check
    assert check["outcome"] == "pending_review", check
    review_id = check["review_id"]
    status, body, _ = call(server, "POST", f"/v1/reviews/{review_id}/decision", reviewer,
                           {"decision": "confirm", "reason": "same person"})
    assert status == 200, body
    return {"faces": face_ids, "decisions": [login["decision_id"], check["decision_id"]],
            "review_id": review_id}


def observe(server: Server, keys: dict[str, str], made: dict[str, Any]) -> dict[str, Any]:
    """What must be the same before and after: search results, decisions, evidence."""
    status, search, _ = call(server, "POST", "/v1/collections/staff/search", keys["app"], {
        "policy": "photo_tagging", "image": image(ANGELINA[1])})
    assert status == 200, search
    matches = [(m["Face"]["FaceId"], m["Similarity"]) for m in search["FaceMatches"]]
    outcomes = []
    for decision_id in made["decisions"]:
        status, body, _ = call(server, "GET", f"/v1/decisions/{decision_id}", keys["app"])
        assert status == 200, body
        outcomes.append((body["outcome"], body["final"]))
    status, review, _ = call(server, "GET", f"/v1/reviews/{made['review_id']}",
                             keys["reviewer"])
    assert status == 200, review
    evidence = {}
    for name in sorted(item["name"] for item in review["evidence"]):
        status, _, raw = call(server, "GET",
                              f"/v1/reviews/{made['review_id']}/evidence/{name}",
                              keys["reviewer"])
        assert status == 200, name
        evidence[name] = raw
    return {"matches": matches, "outcomes": outcomes, "review_status": review["status"],
            "evidence": evidence}


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*")}


def test_a_backup_restored_into_a_new_database_and_blob_dir_serves_the_same_data(
        source: tuple[Deployment, dict[str, str]], tmp_path: Path) -> None:
    deployment, secrets = source
    keys = make_keys(deployment)
    server = deployment.serve("source")
    try:
        made = make_data(server, keys)
        before = observe(server, keys, made)
        # Online backup: the server keeps running; pg_dump reads one snapshot.
        counts_before = row_counts(deployment.database_url)
        taken = backup(deployment.database_url, deployment.blob_dir, tmp_path / "backup")
    finally:
        stop(server)
    assert made["review_id"] in json.dumps(list(files(deployment.blob_dir)))
    assert any(name.startswith("candidate_") for name in before["evidence"])
    assert before["matches"][0][0] == made["faces"]["angelina"]

    with new_database(PG_SERVER_URL, "faceapi_drill_dst") as target_url:
        restored = Deployment(target_url, tmp_path / "restored", secrets)
        pg_restore_s = restore_database(taken.dump, target_url)
        untar_s = restore_blobs(taken.blobs_tar, restored.blob_dir)
        print(f"\n[drill] pg_dump {taken.dump_seconds:.2f} s, {taken.dump_bytes} B; "
              f"tar {taken.tar_seconds:.2f} s, {taken.tar_bytes} B; pg_restore "
              f"{pg_restore_s:.2f} s; untar {untar_s:.2f} s")
        counts_after = row_counts(target_url)
        assert counts_after == counts_before
        assert files(restored.blob_dir) == files(deployment.blob_dir)
        # tar -p keeps the modes: crops and evidence stay readable by the service only.
        assert modes(restored.blob_dir) == modes(deployment.blob_dir)
        assert {mode for name, mode in modes(restored.blob_dir).items()
                if (restored.blob_dir / name).is_file()} == {0o600}

        current = faceapi(restored.env, "db", "current")
        assert current.returncode == 0, current.stdout + current.stderr
        verified = faceapi(restored.env, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith(f"OK: {counts_before['audit_events']} events")
        checked = faceapi(restored.env, "blobs", "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "OK: 1 collections, 2 face crops" in checked.stdout

        server = restored.serve("restored")
        try:
            with urllib.request.urlopen(f"{server.url}/readyz", timeout=10) as ready:
                assert ready.status == 200
            after = observe(server, keys, made)
        finally:
            stop(server)
        assert after == before
        # The restored chain keeps growing from where the backup ended, and verifies.
        verified = faceapi(restored.env, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_database_restored_without_its_blob_archive_is_caught_by_blobs_check(
        source: tuple[Deployment, dict[str, str]], tmp_path: Path) -> None:
    deployment, secrets = source
    keys = make_keys(deployment)
    server = deployment.serve("source")
    try:
        make_data(server, keys)
    finally:
        stop(server)
    taken = backup(deployment.database_url, deployment.blob_dir, tmp_path / "backup")
    with new_database(PG_SERVER_URL, "faceapi_drill_noblobs") as target_url:
        restored = Deployment(target_url, tmp_path / "restored", secrets)
        restore_database(taken.dump, target_url)  # ... and forget the tar
        # What does notice nothing: the chain holds no image, so it verifies.
        verified = faceapi(restored.env, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        checked = faceapi(restored.env, "blobs", "check", "--json")
        assert checked.returncode == 1
        report = json.loads(checked.stdout)
        assert report["ok"] is False
        assert report["crops_missing"] == 2
        assert report["faces"] == 2
        assert report["evidence_missing"] == report["evidence_files"] > 0
        assert any(key.startswith("reviews/") for key in report["missing_examples"])
        text = faceapi(restored.env, "blobs", "check")
        assert text.returncode == 1
        assert "FAIL: 2 of 2 face crops" in text.stderr


def test_the_dump_url_drops_the_driver_but_keeps_the_rest() -> None:
    assert libpq_url("postgresql+psycopg://u:p@db.example:5433/faceapi?sslmode=require") \
        == "postgresql://u:p@db.example:5433/faceapi?sslmode=require"
