"""Acceptance: an exported JSONL file, edited by a test in each way, fails
`faceapi audit verify --export FILE --public-key KEY` naming the first bad event."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from faceapi.adapters.store import Store
from faceapi.config import Settings
from faceapi.domain.audit_chain import (
    compute_hash,
    public_key_pem,
    record_from_json,
    record_to_json,
)
from faceapi.entrypoints.cli.audit import audit
from tests.integration.audit_support import fill

N = 1000
Lines = list[str]


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"FACEAPI_DATA_DIR": str(settings.data_dir), "FACEAPI_ENV": "test",
           "FACEAPI_DATABASE_URL": settings.resolved_database_url}
    result = CliRunner().invoke(audit, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def exported(store: Store, settings: Settings, tmp_path: Path) -> tuple[Lines, Path]:
    fill(store, N)
    out = tmp_path / "audit.jsonl"
    code, output = cli(settings, "export", "--format", "jsonl", "--output", str(out))
    assert code == 0, output
    key = tmp_path / "public.pem"
    code, output = cli(settings, "public-key")
    key.write_text(output)
    return out.read_text().splitlines(), key


def verify_lines(settings: Settings, tmp_path: Path, lines: Lines, key: Path) -> tuple[int, str]:
    """Write the export lines to a file and run `faceapi audit verify` on it."""
    path = tmp_path / "checked.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return cli(settings, "verify", "--export", str(path), "--public-key", str(key))


def line_of(lines: Lines, seq: int) -> int:
    return next(i for i, line in enumerate(lines)
                if json.loads(line).get("type") == "event" and json.loads(line)["seq"] == seq)


def edit_field(lines: Lines) -> None:
    i = line_of(lines, 500)
    data = json.loads(lines[i])
    data["outcome"] = "forged"
    lines[i] = json.dumps(data)


def delete_line(lines: Lines) -> None:
    del lines[line_of(lines, 500)]


def swap_lines(lines: Lines) -> None:
    a, b = line_of(lines, 500), line_of(lines, 600)
    lines[a], lines[b] = lines[b], lines[a]


def insert_forged_line(lines: Lines) -> None:
    # Well-formed: its hash is right and it links to 499; the rest is renumbered.
    i = line_of(lines, 500)
    prev = record_from_json(json.loads(lines[i - 1]))
    template = record_from_json(json.loads(lines[i]))
    forged_id = "00000000-0000-4000-8000-00000000f0f0"
    digest = compute_hash(500, forged_id, template.time, template.event, prev.hash)
    forged = {"type": "event", **record_to_json(template), "seq": 500, "id": forged_id,
              "prev_hash": prev.hash, "hash": digest}
    for j in range(i, len(lines)):
        data = json.loads(lines[j])
        if data.get("type") == "event":
            data["seq"] += 1
            lines[j] = json.dumps(data)
    lines.insert(i, json.dumps(forged))


def drop_tail_after_checkpoint(lines: Lines) -> None:
    # Checkpoint lines (at 1, 101, ..., 901) stay: the signed heads outlive the cut.
    lines[:] = [line for line in lines
                if json.loads(line).get("type") != "event" or json.loads(line)["seq"] <= 850]


@pytest.mark.parametrize(("tamper", "expected"), [
    (edit_field, ("edited", 500)),
    (delete_line, ("missing", 500)),
    (swap_lines, ("out_of_order", 500)),
    (insert_forged_line, ("edited", 501)),
    (drop_tail_after_checkpoint, ("truncated", 851)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_an_edited_export_fails_offline_verification_at_the_first_bad_event(
        exported: tuple[Lines, Path], settings: Settings, tmp_path: Path,
        tamper: Callable[[Lines], None], expected: tuple[str, int]) -> None:
    kind, first_bad = expected
    lines, key = exported
    tamper(lines)
    code, output = verify_lines(settings, tmp_path, lines, key)
    assert code == 1, output
    assert f"FAIL: {kind} at seq {first_bad}" in output


def test_the_untouched_export_verifies_offline(exported: tuple[Lines, Path],
                                               settings: Settings, tmp_path: Path) -> None:
    lines, key = exported
    code, output = verify_lines(settings, tmp_path, lines, key)
    assert code == 0, output
    assert f"OK: {N} events" in output


def test_an_export_checked_with_another_key_fails(exported: tuple[Lines, Path],
                                                  settings: Settings, tmp_path: Path) -> None:
    lines, _ = exported
    other = tmp_path / "other.pem"
    other.write_text(public_key_pem(Ed25519PrivateKey.generate().public_key()))
    code, output = verify_lines(settings, tmp_path, lines, other)
    assert code == 1
    assert "FAIL: unknown_key" in output


def test_a_file_that_is_not_an_export_fails_cleanly(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("hello\n")
    code, output = cli(settings, "verify", "--export", str(path))
    assert code == 1
    assert "unreadable export" in output


@pytest.mark.parametrize(("args", "content"), [
    (("--export", "{file}", "--public-key", "{file}"), "not a key\n"),
    (("--checkpoints", "{file}"), '{"checkpoints": [{"seq": 1}]}'),
    (("--checkpoints", "{file}"), '[{"seq": 1}]'),
    (("--export", "{file}"), '{"type": "header", "format": "faceapi-audit-export"}\n'),
])
def test_a_bad_key_or_checkpoints_file_fails_cleanly(settings: Settings, store: Store,
                                                     tmp_path: Path, args: tuple[str, ...],
                                                     content: str) -> None:
    path = tmp_path / "input"
    path.write_text(content)
    code, output = cli(settings, "verify", *(a.format(file=path) for a in args))
    assert code in (1, 2), output
    # An uncaught exception also exits 1, but prints neither.
    assert "FAIL" in output or "Invalid value" in output


@pytest.mark.parametrize("command", ["export", "tail"])
def test_a_time_with_no_utc_form_is_a_usage_error(settings: Settings, store: Store,
                                                  command: str) -> None:
    code, output = cli(settings, command, "--since", "0001-01-01T00:00:00+05:00")
    assert code == 2, output
    assert "is not an ISO 8601 time" in output


@pytest.mark.parametrize("command", [["checkpoint"], ["verify"], ["tail"], ["export"]])
def test_an_unreachable_database_is_a_clean_error(tmp_path: Path, command: list[str]) -> None:
    env = {"FACEAPI_DATA_DIR": str(tmp_path / "data"), "FACEAPI_ENV": "test",
           "FACEAPI_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    result = CliRunner().invoke(audit, command, env=env)
    assert result.exit_code == 1
    assert "Error: the database is not reachable" in result.output


def test_an_unmigrated_database_asks_for_db_upgrade(tmp_path: Path) -> None:
    env = {"FACEAPI_DATA_DIR": str(tmp_path / "data"), "FACEAPI_ENV": "test",
           "FACEAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = CliRunner().invoke(audit, ["tail"], env=env)
    assert result.exit_code == 1
    assert "run `faceapi db upgrade`" in result.output
