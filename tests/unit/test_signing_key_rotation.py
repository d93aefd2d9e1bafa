"""Key rotation without a database: each checkpoint is checked with the key its key id
names, the report says which keys signed, public-key bundles and directories load, and
exports carry (and are checked against) every trusted key."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from faceapi.adapters.signing_keys import (
    CheckpointSigner,
    load_trusted_public_keys,
    new_signing_key_pem,
    read_public_keys,
)
from faceapi.config import ConfigError
from faceapi.domain.audit import Action, validate_event
from faceapi.domain.audit_chain import (
    key_id_of,
    load_public_keys,
    public_key_pem,
    rotation_event,
    verify_chain,
)
from faceapi.domain.audit_export import (
    export_header,
    jsonl_lines,
    read_jsonl_export,
    verify_export,
)
from tests.unit.test_audit_chain import T0, build_chain


def two_keys_chain() -> tuple[CheckpointSigner, CheckpointSigner, list, list]:
    """30 events; checkpoints at 10 and 20 by the old key, at 30 by the new one."""
    old = CheckpointSigner(Ed25519PrivateKey.generate())
    new = CheckpointSigner(Ed25519PrivateKey.generate(), retired=[old.public_key])
    events, by_old = build_chain(30, old)
    _, by_new = build_chain(30, new)
    return old, new, events, [*by_old[:2], by_new[2]]


def test_each_checkpoint_is_checked_with_its_own_key_and_the_report_counts_them() -> None:
    old, new, events, cps = two_keys_chain()
    report = verify_chain(events, cps, new.trusted_public_keys)
    assert report.ok, report.problem
    assert report.keys_used == {old.key_id: 2, new.key_id: 1}
    assert report.as_json()["keys_used"] == dict(sorted(report.keys_used.items()))


def test_a_checkpoint_of_a_key_not_trusted_is_unknown_and_the_message_says_what_to_do() -> None:
    old, new, events, cps = two_keys_chain()
    report = verify_chain(events, cps, [new.public_key])
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("unknown_key", 10)
    assert old.key_id in report.problem.message
    assert new.key_id in report.problem.message
    assert "FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS" in report.problem.message


def test_a_signer_trusts_its_own_key_and_the_retired_ones_each_once() -> None:
    old = Ed25519PrivateKey.generate().public_key()
    signer = CheckpointSigner(Ed25519PrivateKey.generate(), retired=[old, old])
    assert [key_id_of(k) for k in signer.trusted_public_keys] == [signer.key_id, key_id_of(old)]
    assert [key_id_of(k) for k in signer.retired_public_keys] == [key_id_of(old)]
    alone = CheckpointSigner(Ed25519PrivateKey.generate())
    assert alone.retired_public_keys == ()


def test_a_pem_bundle_loads_every_key_and_refuses_a_private_one() -> None:
    keys = [Ed25519PrivateKey.generate().public_key() for _ in range(3)]
    bundle = "".join(public_key_pem(k) for k in keys).encode()
    assert [key_id_of(k) for k in load_public_keys(bundle)] == [key_id_of(k) for k in keys]
    with pytest.raises(ValueError, match="private key"):
        load_public_keys(bundle + new_signing_key_pem())
    with pytest.raises(ValueError, match="no PEM block"):
        load_public_keys(b"not a key")
    rsa_like = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    with pytest.raises(ValueError, match=r"(?i)key|data|pem"):
        load_public_keys(rsa_like)


def test_trusted_keys_come_from_files_and_directories_and_a_bad_path_stops_the_start(
        tmp_path: Path) -> None:
    a, b, c = (Ed25519PrivateKey.generate().public_key() for _ in range(3))
    folder = tmp_path / "trusted"
    folder.mkdir()
    (folder / "2025.pem").write_text(public_key_pem(a))
    (folder / "2026.pub").write_text(public_key_pem(b))
    (folder / "README").write_text("not read")
    (folder / ".hidden.pem").write_text("not read either")
    single = tmp_path / "c.pem"
    single.write_text(public_key_pem(c))
    loaded = load_trusted_public_keys(f"{folder}, {single}")
    assert [key_id_of(k) for k in loaded] == [key_id_of(a), key_id_of(b), key_id_of(c)]
    assert load_trusted_public_keys("") == []
    (folder / "broken.pem").write_text("garbage")
    with pytest.raises(ConfigError, match=r"FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS: .*broken\.pem"):
        load_trusted_public_keys(str(folder))
    with pytest.raises(ValueError, match="no such file"):
        load_trusted_public_keys(str(tmp_path / "missing"))
    assert len(read_public_keys(single)) == 1


def test_an_export_lists_every_trusted_key_and_verifies_with_them_or_pinned_ones() -> None:
    old, new, events, cps = two_keys_chain()
    header = export_header(new.public_key, {}, T0, complete=True,
                           retired_keys=new.retired_public_keys)
    assert header["key_id"] == new.key_id
    assert [k["key_id"] for k in header["public_keys"]] == [new.key_id, old.key_id]
    text = "".join(jsonl_lines(header, events, cps))
    assert verify_export(read_jsonl_export(io.StringIO(text))).ok  # the header's keys
    assert verify_export(read_jsonl_export(io.StringIO(text)),
                         [old.public_key, new.public_key]).ok
    pinned_new_only = verify_export(read_jsonl_export(io.StringIO(text)), [new.public_key])
    assert pinned_new_only.problem is not None
    assert pinned_new_only.problem.kind == "unknown_key"


def test_an_export_made_before_public_keys_existed_still_verifies_with_its_one_key() -> None:
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    events, cps = build_chain(20, signer)
    header = export_header(signer.public_key, {}, T0, complete=True)
    del header["public_keys"]
    text = "".join(jsonl_lines(header, events, cps))
    report = verify_export(read_jsonl_export(io.StringIO(text)))
    assert report.ok
    assert report.keys_used == {signer.key_id: 2}


def test_the_rotation_event_holds_key_ids_only_and_passes_the_audit_checks() -> None:
    event = rotation_event("a" * 16, "b" * 16, old_key_trusted=True)
    validate_event(event)
    assert event.action is Action.AUDIT_SIGNING_KEY_ROTATED
    assert event.details == {"old_key_id": "a" * 16, "new_key_id": "b" * 16,
                             "old_key_trusted": True}
    serialised = json.dumps(event.details)
    assert "BEGIN" not in serialised


def test_new_signing_keys_are_pkcs8_ed25519_and_differ() -> None:
    first, second = new_signing_key_pem(), new_signing_key_pem()
    assert first != second
    key = serialization.load_pem_private_key(first, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    assert first.startswith(b"-----BEGIN PRIVATE KEY-----")
