"""Rotating the audit signing key (issue 16): old checkpoints keep verifying with the
retired public key the operator configures (FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS, outside
the database), each checkpoint with the key of its own key id, and the change is an
audited event covered by the new key's first checkpoint.

The attacks: someone who can write the database rewrites history and re-signs it with a
key of their own, putting that key's public half wherever the database lets them (an
audit event, a forged rotation record); an export's header names their key. None of it
makes a checkpoint verify: trusted keys come only from the verifier's configuration or
its pinned --public-key files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import select, text

from faceapi.adapters.signing_keys import CheckpointSigner, new_signing_key_pem, read_private_key
from faceapi.adapters.store import Store
from faceapi.adapters.store.audit_repo import event_row, row_to_record
from faceapi.adapters.store.tables import audit_checkpoints, audit_events
from faceapi.config import ConfigError, Settings
from faceapi.domain.audit import Action, Actor, RecordedEvent
from faceapi.domain.audit_chain import compute_hash, key_id_of, public_key_pem
from faceapi.entrypoints.cli.audit import audit
from faceapi.entrypoints.web.app import create_app
from faceapi.services import keys as api_keys
from tests.fakes import FakeEngine
from tests.integration.audit_support import drop_append_only_triggers, fill
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.security.conftest import Http, serve
from tests.security.support import settings  # noqa: F401 (the --db backend)
from tests.security.test_read_scopes import Console
from tests.support.production_keys import write_production_keys

ROTATED = Action.AUDIT_SIGNING_KEY_ROTATED.value
pytestmark = pytest.mark.postgres


class Keys:
    """Two deployment keys (old, new) as files, and their public halves."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.old = self._key("old")
        self.new = self._key("new")

    def _key(self, name: str) -> Path:
        path = self.root / f"audit_signing_key_{name}.pem"
        path.write_bytes(new_signing_key_pem())
        public = self.root / "public" / f"{name}.pem"
        public.parent.mkdir(exist_ok=True)
        public.write_text(public_key_pem(read_private_key(path).public_key()))
        return path

    def public(self, name: str) -> Path:
        return self.root / "public" / f"{name}.pem"

    def key_id(self, path: Path) -> str:
        return key_id_of(read_private_key(path).public_key())


@pytest.fixture
def db_settings(settings: Settings) -> Settings:  # noqa: F811 (the imported fixture)
    """The suite's settings on the --db backend."""
    return settings


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "secrets")


def with_key(db_settings: Settings, key: Path, *trusted: Path) -> Settings:
    return db_settings.with_overrides(audit_signing_key=str(key),
                                   audit_trusted_public_keys=",".join(map(str, trusted)))


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    made: list[Store] = []
    yield made
    for store in made:
        store.dispose()


def open_store(stores: list[Store], db_settings: Settings) -> Store:
    store = Store.from_settings(db_settings)
    store.upgrade()
    stores.append(store)
    return store


def cli(db_settings: Settings, *args: str) -> tuple[int, str]:
    env = {"FACEAPI_DATA_DIR": str(db_settings.data_dir),
           "FACEAPI_DATABASE_URL": db_settings.resolved_database_url, "FACEAPI_ENV": "test",
           "FACEAPI_LOG_FORMAT": "json", "FACEAPI_AUDIT_SIGNING_KEY": db_settings.audit_signing_key,
           "FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS": db_settings.audit_trusted_public_keys}
    result = CliRunner().invoke(audit, list(args), env=env)
    return result.exit_code, result.output


def rows(store: Store, action: str) -> list[RecordedEvent]:
    with store.engine.connect() as conn:
        return [row_to_record(r) for r in conn.execute(
            select(audit_events).where(audit_events.c.action == action)
            .order_by(audit_events.c.seq))]


def checkpoint_keys(store: Store) -> list[tuple[int, str]]:
    with store.engine.connect() as conn:
        return [(r.seq, r.key_id) for r in conn.execute(
            select(audit_checkpoints.c.seq, audit_checkpoints.c.key_id)
            .order_by(audit_checkpoints.c.seq))]


def rotate(stores: list[Store], db_settings: Settings, keys: Keys, *,
           trust_old: bool = True) -> tuple[Store, Store]:
    """150 events under the old key (checkpoints at seq 1 and 101), then 150 under the
    new one: at seq 201 a checkpoint is due, so the rotation event is seq 202 and the
    new key's first checkpoint signs it."""
    old = open_store(stores, with_key(db_settings, keys.old))
    fill(old, 150)
    trusted = (keys.public("old"),) if trust_old else ()
    new = open_store(stores, with_key(db_settings, keys.new, *trusted))
    fill(new, 150)
    return old, new


def auditor_gets(db_settings: Settings, *paths: str,
                 console_verify: list[str] | None = None) -> list[tuple[int, Any]]:
    """GET each path from the app on `db_settings`, served on 127.0.0.1, as an auditor
    (and, given a list, press the console's Verify chain and put the page into it)."""
    app: Flask = create_app(db_settings, engine=FakeEngine())
    store = app.extensions["faceapi"].store
    try:
        created = api_keys.create_key(
            api_keys.NewKey(name="auditor", role="auditor", owner="auditor@example.org"),
            uow=store.uow(), clock=app.extensions["faceapi"].clock, actor=Actor.system("test"))
        server = serve(app)
        try:
            http = Http(server.url)
            replies = [http.get(path, key=created.secret) for path in paths]
            if console_verify is not None:
                console = Console(http, created.secret)
                token = console.csrf("/console/audit")
                assert console.post("/console/audit/verify",
                                    {"csrf_token": token}).status == 302
                console_verify.append(console.get("/console/audit").body.decode())
        finally:
            server.stop()
    finally:
        store.dispose()
    return [(reply.status, reply.json()) for reply in replies]


# --- rotation works ---------------------------------------------------------------------

def test_old_checkpoints_verify_after_rotation_and_the_rotation_is_audited_once(
        db_settings: Settings, keys: Keys, stores: list[Store]) -> None:
    _old, new = rotate(stores, db_settings, keys)
    old_id, new_id = keys.key_id(keys.old), keys.key_id(keys.new)

    report = new.verify()
    assert report.ok, report.problem
    assert report.keys_used == {old_id: 2, new_id: 1}  # old: seq 1, 101; new: 202

    [rotation] = rows(new, ROTATED)
    assert rotation.event.details == {"old_key_id": old_id, "new_key_id": new_id,
                                      "old_key_trusted": True}
    # The new key's first signature covers the record of the change itself.
    first_new = min(seq for seq, key_id in checkpoint_keys(new) if key_id == new_id)
    assert first_new == rotation.seq

    code, output = cli(with_key(db_settings, keys.new, keys.public("old")), "verify")
    assert code == 0, output
    assert f"{old_id} (2)" in output
    assert f"{new_id} (1)" in output


def test_without_the_retired_public_key_verify_fails_naming_the_unknown_key(
        db_settings: Settings, keys: Keys, stores: list[Store]) -> None:
    _old, new = rotate(stores, db_settings, keys, trust_old=False)
    old_id = keys.key_id(keys.old)
    [rotation] = rows(new, ROTATED)
    assert rotation.event.details["old_key_trusted"] is False

    report = new.verify()
    assert not report.ok
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("unknown_key", 1)
    assert old_id in report.problem.message
    assert "FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS" in report.problem.message
    code, output = cli(with_key(db_settings, keys.new), "verify")
    assert code == 1
    assert "FAIL: unknown_key at seq 1" in output
    assert old_id in output


def test_old_and_new_workers_alternating_mix_keys_per_checkpoint_and_still_verify(
        db_settings: Settings, keys: Keys, stores: list[Store]) -> None:
    # A rolling restart: old and new pods append to one database at once. Phase one of
    # the procedure gave every pod both public keys.
    both = (keys.public("old"), keys.public("new"))
    old = open_store(stores, with_key(db_settings.with_overrides(audit_checkpoint_every=10),
                                      keys.old, *both))
    new = open_store(stores, with_key(db_settings.with_overrides(audit_checkpoint_every=10),
                                      keys.new, *both))
    fill(old, 25, per_transaction=1)
    for _ in range(4):
        fill(new, 12, per_transaction=1)
        fill(old, 12, per_transaction=1)
    signers = [key_id for _, key_id in checkpoint_keys(new)]
    old_id, new_id = keys.key_id(keys.old), keys.key_id(keys.new)
    # Both keys signed, interleaved, after the first new checkpoint.
    first_new = signers.index(new_id)
    assert old_id in signers[first_new:]
    assert len(rows(new, ROTATED)) == 1  # the switch back and forth is no new rotation
    for store in (old, new):
        report = store.verify()
        assert report.ok, report.problem
        assert set(report.keys_used) == {old_id, new_id}


def test_an_export_made_before_rotation_verifies_after_it_with_the_pinned_keys(
        db_settings: Settings, keys: Keys, stores: list[Store], tmp_path: Path) -> None:
    old_settings = with_key(db_settings, keys.old)
    old = open_store(stores, old_settings)
    fill(old, 150)
    before = tmp_path / "before.jsonl"
    assert cli(old_settings, "export", "-o", str(before))[0] == 0
    new_settings = with_key(db_settings, keys.new, keys.public("old"))
    fill(open_store(stores, new_settings), 150)
    after = tmp_path / "after.jsonl"
    assert cli(new_settings, "export", "-o", str(after))[0] == 0

    pinned = keys.root / "public"  # the auditor's own copies, a directory of both
    for export in (before, after):
        code, output = cli(new_settings, "verify", "--export", str(export),
                           "--public-key", str(pinned))
        assert code == 0, output
    # The newer export holds checkpoints of both keys; its header lists both.
    header = json.loads(after.read_text().splitlines()[0])
    assert {k["key_id"] for k in header["public_keys"]} == {keys.key_id(keys.old),
                                                           keys.key_id(keys.new)}
    assert header["key_id"] == keys.key_id(keys.new)
    code, output = cli(new_settings, "verify", "--export", str(after), "--json",
                       "--public-key", str(pinned))
    used = json.loads(output)["keys_used"]
    assert set(used) == {keys.key_id(keys.old), keys.key_id(keys.new)}
    assert used[keys.key_id(keys.old)] == 2
    # Pinned to the new key only, the old checkpoints are unknown: each checkpoint is
    # checked with the key of its key id, never with "any key that works".
    code, output = cli(new_settings, "verify", "--export", str(before),
                       "--public-key", str(keys.public("new")))
    assert code == 1
    assert "FAIL: unknown_key at seq 1" in output


# --- attacks ----------------------------------------------------------------------------

def resign_with_own_key(store: Store, attacker: Ed25519PrivateKey) -> str:
    """Rewrite event 50, re-chain everything after it, replace every checkpoint with one
    signed by the attacker's key, and leave that key's public half in the database as a
    forged `audit.signing_key.rotated` event. Returns the attacker's key id."""
    drop_append_only_triggers(store.engine)
    signer = CheckpointSigner(attacker)
    with store.engine.begin() as conn:
        records = [row_to_record(r) for r in conn.execute(
            select(audit_events).order_by(audit_events.c.seq))]
        conn.execute(text("DELETE FROM audit_events"))
        conn.execute(text("DELETE FROM audit_checkpoints"))
        prev = records[0].prev_hash
        rewritten = []
        for record in records:
            event = record.event
            if record.seq == 50:
                event = type(event)(**{**event.__dict__, "outcome": "match"})
            digest = compute_hash(record.seq, record.id, record.time, event, prev)
            rewritten.append(RecordedEvent(record.seq, record.id, record.time, event, prev,
                                           digest))
            prev = digest
        last = rewritten[-1]
        forged_rotation = type(last.event)(
            action=Action.AUDIT_SIGNING_KEY_ROTATED, outcome="success",
            actor=last.event.actor, resource="audit",
            details={"old_key_id": "whatever", "new_key_id": signer.key_id,
                     "public_key": signer.public_key_pem})
        seq = last.seq + 1
        rewritten.append(RecordedEvent(
            seq, "00000000-0000-4000-8000-00000000f0f0", last.time, forged_rotation, prev,
            compute_hash(seq, "00000000-0000-4000-8000-00000000f0f0", last.time,
                         forged_rotation, prev)))
        for record in rewritten:
            conn.execute(audit_events.insert().values(**event_row(record)))
        for record in [*rewritten[::100], rewritten[-1]]:
            cp = signer.sign(record.seq, record.hash, record.time)
            conn.execute(audit_checkpoints.insert().values(
                seq=cp.seq, event_hash=cp.event_hash, created_at=cp.created_at,
                key_id=cp.key_id, signature=cp.signature))
    return signer.key_id


def test_history_re_signed_with_an_attackers_key_fails_everywhere_even_with_its_key_in_the_db(
        db_settings: Settings, keys: Keys, stores: list[Store], tmp_path: Path) -> None:
    new_settings = with_key(db_settings, keys.new, keys.public("old"))
    _old, new = rotate(stores, db_settings, keys)
    attacker_id = resign_with_own_key(new, Ed25519PrivateKey.generate())
    # The forged chain is internally consistent: only the keys can tell.
    report = new.verify()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("unknown_key", 1)
    assert attacker_id in report.problem.message

    code, output = cli(new_settings, "verify")
    assert code == 1
    assert "FAIL: unknown_key" in output
    assert attacker_id in output

    # The API (a real HTTP server), as an auditor would call it.
    [(status, body)] = auditor_gets(new_settings, "/v1/audit/verify")
    assert status == 200
    assert body["ok"] is False
    assert body["problem"]["kind"] == "unknown_key"

    # An export of the forged trail names the attacker's key in its header: pinned keys
    # ignore it.
    export = tmp_path / "forged.jsonl"
    assert cli(new_settings, "export", "-o", str(export))[0] == 0
    header = json.loads(export.read_text().splitlines()[0])
    header["public_keys"].append({"key_id": attacker_id, "public_key": "attacker's own"})
    code, output = cli(new_settings, "verify", "--export", str(export),
                       "--public-key", str(keys.root / "public"))
    assert code == 1
    assert "FAIL: unknown_key at seq 1" in output


def test_a_forged_checkpoint_by_an_untrusted_key_fails_though_the_chain_itself_is_intact(
        db_settings: Settings, keys: Keys, stores: list[Store]) -> None:
    # Only a checkpoint is added (the events untouched), e.g. to "anchor" appended events.
    _old, new = rotate(stores, db_settings, keys)
    attacker = CheckpointSigner(Ed25519PrivateKey.generate())
    with new.engine.connect() as conn:
        head = row_to_record(conn.execute(
            select(audit_events).order_by(audit_events.c.seq.desc()).limit(1)).one())
    with new.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints WHERE seq = :s"), {"s": head.seq})
        cp = attacker.sign(head.seq, head.hash, head.time)
        conn.execute(audit_checkpoints.insert().values(
            seq=cp.seq, event_hash=cp.event_hash, created_at=cp.created_at,
            key_id=cp.key_id, signature=cp.signature))
    report = new.verify()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("unknown_key", head.seq)


def test_a_checkpoint_claiming_a_trusted_key_id_with_another_keys_signature_fails(
        db_settings: Settings, keys: Keys, stores: list[Store]) -> None:
    # The key id is only a label: the signature is checked with the trusted key it names.
    _old, new = rotate(stores, db_settings, keys)
    old_id = keys.key_id(keys.old)
    attacker = CheckpointSigner(Ed25519PrivateKey.generate())
    drop_append_only_triggers(new.engine)
    with new.engine.begin() as conn:
        cp_row = conn.execute(select(audit_checkpoints).where(
            audit_checkpoints.c.key_id == old_id).order_by(audit_checkpoints.c.seq)).first()
        assert cp_row is not None
        forged = attacker.sign(cp_row.seq, cp_row.event_hash, cp_row.created_at)
        conn.execute(text("UPDATE audit_checkpoints SET signature = :sig WHERE seq = :s"),
                     {"sig": forged.signature, "s": cp_row.seq})
    report = new.verify()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("bad_signature", cp_row.seq)


# --- configuration and the operator's commands ------------------------------------------

def test_a_trusted_keys_setting_that_does_not_hold_stops_the_start(
        db_settings: Settings, keys: Keys, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for value, says in ((str(tmp_path / "nope.pem"), "no such file"),
                        (str(empty), "no *.pem or *.pub"),
                        (str(keys.old), "private key")):
        with pytest.raises(ConfigError, match="FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS") as info:
            Store.from_settings(with_key(db_settings, keys.new).with_overrides(
                audit_trusted_public_keys=value))
        assert says in str(info.value)


def test_production_refuses_trusted_keys_kept_in_the_data_directory(
        db_settings: Settings, tmp_path: Path) -> None:
    production = db_settings.with_overrides(
        env="production", **write_production_keys(tmp_path / "prod-secrets"))
    production.require_production_keys()  # outside: fine
    inside = db_settings.data_dir / "trusted"
    with pytest.raises(ConfigError, match="FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS names"):
        production.with_overrides(audit_trusted_public_keys=str(inside)).require_production_keys()


def test_new_signing_key_writes_a_private_file_once_and_prints_its_public_key(
        db_settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "rotation" / "audit_signing_key_2027.pem"
    result = CliRunner().invoke(audit, ["new-signing-key", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    key = read_private_key(out)
    assert result.stdout == public_key_pem(key.public_key())
    assert key_id_of(key.public_key()) in result.stderr
    derived = CliRunner().invoke(audit, ["public-key", "--key-file", str(out)])
    assert derived.output == result.stdout
    again = CliRunner().invoke(audit, ["new-signing-key", "-o", str(out)])
    assert again.exit_code == 1
    assert "never overwritten" in again.output
    assert read_private_key(out).private_bytes_raw() == key.private_bytes_raw()


def test_the_api_and_console_publish_the_retired_keys_and_which_keys_verified(
        db_settings: Settings, keys: Keys, stores: list[Store]) -> None:
    rotate(stores, db_settings, keys)
    pages: list[str] = []
    [(_, published), (_, verified)] = auditor_gets(
        with_key(db_settings, keys.new, keys.public("old")), "/v1/audit/public-key",
        "/v1/audit/verify", console_verify=pages)
    assert published["key_id"] == keys.key_id(keys.new)
    assert published["retired_keys"] == [
        {"key_id": keys.key_id(keys.old), "public_key": keys.public("old").read_text()}]
    assert verified["ok"] is True
    assert "Chain verified" in pages[0]
    assert f"{keys.key_id(keys.old)} (2)" in pages[0]
    # Starting the app and making the key appended and signed more under the new key.
    with_new = [key_id for _, key_id in checkpoint_keys(stores[-1])]
    assert verified["keys_used"] == {keys.key_id(keys.old): 2,
                                     keys.key_id(keys.new): with_new.count(
                                         keys.key_id(keys.new))}
