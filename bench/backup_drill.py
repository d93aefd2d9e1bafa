"""Backup and restore drill on PostgreSQL: how long a backup and a restore take and how
big they are, with the commands of docs/operations.md ("Backup and restore").

Builds a source database (faces enrolled with the real local engine from the repo's
fixture faces, so each has a crop in the blob directory, plus filler audit events),
then: `pg_dump --format=custom` of the database FIRST, then a tar of the blob directory;
restores both into a new database and a new blob directory; runs `faceapi db current`,
`faceapi audit verify` and `faceapi blobs check` on the copy (real subprocesses) and
compares row counts. Prints a table and writes bench/results/backup_drill.json.

    .venv/bin/python bench/backup_drill.py [--faces 40] [--events 20000] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

tests/integration/test_backup_restore.py runs the same backup() and restore() against
data made through the HTTP API (collections, enrollments, decisions, a review).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

try:
    from bench.common import REPO, environment, table, write_json
except ModuleNotFoundError:  # run as a script: bench/ is on sys.path, the repo is not
    from common import REPO, environment, table, write_json  # type: ignore[no-redef]

# The tables whose rows a restore must bring back, all of them (alembic_version too).
TABLES = ("alembic_version", "api_keys", "audit_events", "audit_checkpoints", "collections",
          "subjects", "faces", "consents", "decisions", "reviews", "review_votes",
          "lockouts")


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL (postgresql+psycopg://...) as pg_dump/pg_restore take it."""
    url = make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def run(command: list[str], env: Mapping[str, str] | None = None) -> tuple[float, str]:
    """Run a command, fail loudly with its output; (seconds, stdout)."""
    started = time.perf_counter()
    done = subprocess.run(command, env=None if env is None else dict(env), check=False,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} exited {done.returncode}:\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


@dataclass
class Backup:
    dump: Path
    blobs_tar: Path
    dump_seconds: float
    tar_seconds: float
    dump_bytes: int
    tar_bytes: int


def backup(database_url: str, blob_dir: Path, out_dir: Path) -> Backup:
    """The database first, then the blob directory (docs/operations.md says why: every
    file the dump names was written before its row committed, so a tar taken after the
    dump holds it, unless an erasure deleted it in between)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dump = out_dir / "faceapi.dump"
    blobs_tar = out_dir / "faceapi-blobs.tar"
    dump_seconds, _ = run(["pg_dump", "--format=custom", "--no-owner",
                           f"--file={dump}", libpq_url(database_url)])
    blob_dir.mkdir(parents=True, exist_ok=True)
    # Files are written under a temporary name and renamed (adapters/private_files.py):
    # a file caught half-written by a backup of a live system is one of these.
    tar_seconds, _ = run(["tar", "--exclude=.tmp-*", "--exclude=.new-*", "-C", str(blob_dir),
                          "-cf", str(blobs_tar), "."])
    return Backup(dump, blobs_tar, dump_seconds, tar_seconds, dump.stat().st_size,
                  blobs_tar.stat().st_size)


def restore_database(dump: Path, database_url: str) -> float:
    """pg_restore into an existing, empty database, all or nothing; seconds."""
    seconds, _ = run(["pg_restore", "--no-owner", "--exit-on-error", "--single-transaction",
                      f"--dbname={libpq_url(database_url)}", str(dump)])
    return seconds


def restore_blobs(blobs_tar: Path, blob_dir: Path) -> float:
    """Unpack the blob archive into an empty directory (modes kept: 0700/0600); seconds."""
    blob_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    seconds, _ = run(["tar", "-C", str(blob_dir), "-xpf", str(blobs_tar)])
    return seconds


@contextmanager
def new_database(server_url: str, prefix: str) -> Iterator[str]:
    """A database of its own on the server, dropped afterwards."""
    server = make_url(server_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def row_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                    for t in TABLES}
    finally:
        engine.dispose()


def faceapi_env(database_url: str, data_dir: Path, keys: Mapping[str, str],
                **extra: str) -> dict[str, str]:
    """The environment of a faceapi process on this database and data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update({"FACEAPI_ENV": "test", "FACEAPI_DATA_DIR": str(data_dir),
                "FACEAPI_DATABASE_URL": database_url, "FACEAPI_LOG_FORMAT": "json",
                "FACEAPI_AUDIT_SIGNING_KEY": keys["audit_signing_key"],
                "FACEAPI_CREDENTIALS_KEY_FILE": keys["credentials_key_file"],
                "FACEAPI_SECRET_KEY_FILE": keys["secret_key_file"], **extra})
    return env


def faceapi(*args: str, env: Mapping[str, str]) -> tuple[float, str]:
    return run([str(Path(sys.executable).parent / "faceapi"), *args], env=env)


# --- the bench's own source database ----------------------------------------------------

def fixture_images() -> list[Path]:
    return sorted(p for p in (REPO / "tests" / "data" / "faces").rglob("*")
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def fill_source(database_url: str, data_dir: Path, keys: Mapping[str, str], faces: int,
                events: int) -> int:
    """Enroll up to `faces` images (one subject each, cycling through the fixtures) and
    append `events` filler audit events; returns the faces indexed."""
    from faceapi.adapters.blobs import DirectoryBlobStore
    from faceapi.adapters.engines.factory import build_engine
    from faceapi.adapters.images import PillowImageDecoder
    from faceapi.adapters.store import Store
    from faceapi.config import Settings
    from faceapi.domain.audit import Action, Actor, AuditEvent
    from faceapi.domain.clock import SystemClock
    from faceapi.domain.errors import FaceApiError
    from faceapi.services.collections import CreateCollectionRequest, create_collection
    from faceapi.services.enroll import IndexFacesRequest, index_faces

    settings = Settings(env="test", data_dir=data_dir, database_url=database_url,
                        audit_signing_key=keys["audit_signing_key"],
                        credentials_key_file=keys["credentials_key_file"],
                        secret_key_file=keys["secret_key_file"])
    store = Store.from_settings(settings)
    store.upgrade()
    engine = build_engine(settings)
    system, clock = Actor.system("bench"), SystemClock()
    decoder = PillowImageDecoder(settings)
    blobs = DirectoryBlobStore(settings.resolved_blob_dir)
    create_collection(CreateCollectionRequest("drill", consent_required=False), actor=system,
                      engine=engine, uow=store.uow(), clock=clock)
    images = fixture_images()
    indexed = 0
    # Cycle through the fixtures (one subject per enrollment) until `faces` are indexed;
    # some fixtures are refused by design (formats off by default, no face).
    for i in range(faces * 10):
        if indexed >= faces:
            break
        try:
            result = index_faces(IndexFacesRequest(
                collection_id="drill", image=images[i % len(images)].read_bytes(),
                subject_id=f"s{i}", max_faces=1), actor=system, engine=engine,
                uow=store.uow(), clock=clock, decoder=decoder, blobs=blobs)
        except FaceApiError:  # a fixture the decoder refuses (by design) or with no face
            continue
        indexed += len(result.face_records)
    done = 0
    while done < events:
        with store.uow() as uow:
            for _ in range(min(500, events - done)):
                done += 1
                uow.audit.append(AuditEvent(
                    action=Action.FACE_DETECT, outcome="success",
                    actor=Actor(role="app", key_id="bench"), resource="collections/drill",
                    scores={"face_count": 1}, input_digests=(f"{done:064x}",)))
            uow.commit()
    store.dispose()
    return indexed


def write_keys(secrets_dir: Path) -> dict[str, str]:
    """The three key files, outside the data directory as in production. They are NOT
    in the backup: they live in the secret store, and the restored copy uses the same."""
    import base64
    import secrets

    from faceapi.adapters.signing_keys import new_signing_key_pem

    files = {"audit_signing_key": ("audit_signing_key.pem", new_signing_key_pem()),
             "credentials_key_file": ("credentials.key", base64.urlsafe_b64encode(
                 secrets.token_bytes(32)) + b"\n"),
             "secret_key_file": ("console_secret_key",
                                 secrets.token_urlsafe(48).encode() + b"\n")}
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = {}
    for setting, (name, data) in files.items():
        path = secrets_dir / name
        path.write_bytes(data)
        path.chmod(0o600)
        out[setting] = str(path)
    return out


def drill(server_url: str, faces: int, events: int, work: Path) -> dict[str, Any]:
    keys = write_keys(work / "secrets")
    result: dict[str, Any] = {"faces_requested": faces, "filler_events": events}
    with new_database(server_url, "faceapi_drill_src") as source, \
            new_database(server_url, "faceapi_drill_dst") as target:
        src_data, dst_data = work / "src" / "data", work / "dst" / "data"
        result["faces_indexed"] = fill_source(source, src_data, keys, faces, events)
        before = row_counts(source)
        made = backup(source, src_data / "blobs", work / "backup")
        result["backup"] = {k: v for k, v in asdict(made).items()
                            if k not in ("dump", "blobs_tar")}
        result["blob_files"] = sum(1 for p in (src_data / "blobs").rglob("*") if p.is_file())
        result["restore"] = {"pg_restore_seconds": restore_database(made.dump, target),
                             "untar_seconds": restore_blobs(made.blobs_tar,
                                                            dst_data / "blobs")}
        env = faceapi_env(target, dst_data, keys)
        _, current = faceapi("db", "current", env=env)
        verify_seconds, verified = faceapi("audit", "verify", env=env)
        check_seconds, checked = faceapi("blobs", "check", env=env)
        after = row_counts(target)
        # audit verify and blobs check ran on the copy: verify appended its own event.
        after["audit_events"] -= 1
        after["audit_checkpoints"] = min(after["audit_checkpoints"],
                                         before["audit_checkpoints"])
        result["after_restore"] = {
            "db_current": current.strip(), "audit_verify": verified.strip().splitlines()[0],
            "audit_verify_seconds": verify_seconds, "blobs_check": checked.strip(),
            "blobs_check_seconds": check_seconds, "counts_equal": before == after,
            "counts": before}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=40)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--pg-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        sys.exit("pg_dump/pg_restore not found (apt-get install postgresql-client)")
    with tempfile.TemporaryDirectory(prefix="faceapi-drill-") as tmp:
        result = drill(args.pg_url, args.faces, args.events, Path(tmp))
    b, r, a = result["backup"], result["restore"], result["after_restore"]
    print(table(["faces", "audit events", "blob files", "pg_dump s", "dump MB", "tar s",
                 "tar MB", "pg_restore s", "untar s", "verify s", "blobs check s",
                 "counts equal"],
                [[result["faces_indexed"], a["counts"]["audit_events"], result["blob_files"],
                  round(b["dump_seconds"], 2), round(b["dump_bytes"] / 1e6, 2),
                  round(b["tar_seconds"], 2), round(b["tar_bytes"] / 1e6, 2),
                  round(r["pg_restore_seconds"], 2), round(r["untar_seconds"], 2),
                  round(a["audit_verify_seconds"], 2), round(a["blobs_check_seconds"], 2),
                  a["counts_equal"]]]))
    print(a["audit_verify"])
    print(a["blobs_check"])
    path = write_json("backup_drill.json", {"environment": environment(),
                                            "command": " ".join(sys.argv), **result})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
