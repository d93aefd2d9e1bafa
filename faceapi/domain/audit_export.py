"""The audit export file format (JSONL with a header line, and CSV), written by the
export use case and read back by `faceapi audit verify --export`. Verifying a read
export uses the same chain walk as the live database (domain/audit_chain.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from faceapi.domain.audit import Checkpoint, RecordedEvent
from faceapi.domain.audit_chain import (
    FORMAT_VERSION,
    Problem,
    VerifyReport,
    canonical_json,
    checkpoint_from_json,
    checkpoint_to_json,
    event_fields,
    format_time,
    key_id_of,
    keys_by_id,
    load_public_key,
    public_key_pem,
    record_from_json,
    record_to_json,
    verify_chain,
)

EXPORT_FORMAT = "faceapi-audit-export"


def export_header(public_key: Ed25519PublicKey, filters: Mapping[str, Any],
                  exported_at: datetime, complete: bool,
                  retired_keys: Sequence[Ed25519PublicKey] = ()) -> dict[str, Any]:
    """`public_key`/`key_id`: the key signing at export time. `public_keys`: every key
    the exporting server trusted (after a rotation, the retired ones too), for a reader
    without keys of its own; an auditor passes its pinned keys instead."""
    keys = keys_by_id([public_key, *retired_keys])
    return {"type": "header", "format": EXPORT_FORMAT, "version": FORMAT_VERSION,
            "exported_at": format_time(exported_at), "complete": complete,
            "filters": dict(filters), "public_key": public_key_pem(public_key),
            "key_id": key_id_of(public_key),
            "public_keys": [{"key_id": kid, "public_key": public_key_pem(k)}
                            for kid, k in keys.items()]}


def jsonl_lines(header: Mapping[str, Any], events: Iterable[RecordedEvent],
                checkpoints: Iterable[Checkpoint]) -> Iterator[str]:
    """The JSONL export: a header line, one line per event, one per checkpoint."""
    yield json.dumps(header, sort_keys=True) + "\n"
    for record in events:
        yield json.dumps({"type": "event", **record_to_json(record)}, sort_keys=True) + "\n"
    for cp in checkpoints:
        yield json.dumps({"type": "checkpoint", **checkpoint_to_json(cp)}, sort_keys=True) + "\n"


CSV_COLUMNS = ("type", "seq", "id", "time", "action", "outcome", "actor_key_id", "actor_role",
               "resource", "subject_id", "policy_name", "policy_version", "engine",
               "model_version", "scores", "input_digests", "request_id", "reason", "details",
               "prev_hash", "hash", "created_at", "key_id", "signature")


# A spreadsheet runs a cell starting with one of these as a formula (OWASP, "CSV
# Injection"): a review reason `=HYPERLINK(...)` would be a live link in the auditor's
# sheet. Such a cell gets a leading single quote, which spreadsheets show as plain text.
# Every column, since ids, reasons and even base64 signatures (`+...`) can start so.
# JSONL, the format verification reads, is left exactly as hashed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """One CSV cell, neutralised if a spreadsheet would read it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row with every cell neutralised (csv_cell)."""
    return {name: csv_cell(value) for name, value in row.items()}


def csv_row(record: RecordedEvent) -> dict[str, Any]:
    """One event as a (neutralised) CSV row."""
    return csv_safe(_csv_event(record))


def _csv_event(record: RecordedEvent) -> dict[str, Any]:
    e = record.event
    return {"type": "event", "seq": record.seq, "id": record.id, "time": format_time(record.time),
            "action": e.action.value, "outcome": e.outcome, "actor_key_id": e.actor.key_id or "",
            "actor_role": e.actor.role, "resource": e.resource or "",
            "subject_id": e.subject_id or "", "policy_name": e.policy_name or "",
            "policy_version": e.policy_version or "", "engine": e.engine or "",
            "model_version": e.model_version or "",
            "scores": canonical_json(dict(e.scores)).decode(),
            "input_digests": " ".join(e.input_digests), "request_id": e.request_id or "",
            "reason": e.reason or "",
            "details": canonical_json(event_fields(e)["details"]).decode(),
            "prev_hash": record.prev_hash, "hash": record.hash}


def csv_checkpoint_row(cp: Checkpoint) -> dict[str, Any]:
    """One checkpoint as a (neutralised) CSV row."""
    return csv_safe({"type": "checkpoint", "seq": cp.seq, "hash": cp.event_hash,
                     "created_at": format_time(cp.created_at), "key_id": cp.key_id,
                     "signature": cp.signature})


@dataclass
class ParsedExport:
    header: dict[str, Any]
    events: list[RecordedEvent]
    checkpoints: list[Checkpoint]


class ExportFormatError(ValueError):
    """The file is not a faceapi JSONL export (or a line cannot be read)."""


def read_jsonl_export(stream: TextIO) -> ParsedExport:
    header: dict[str, Any] | None = None
    events: list[RecordedEvent] = []
    checkpoints: list[Checkpoint] = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            kind = data.get("type")
            if number == 1:
                if kind != "header" or data.get("format") != EXPORT_FORMAT:
                    raise ExportFormatError("line 1: not a faceapi audit export header")
                header = data
            elif kind == "event":
                events.append(record_from_json(data))
            elif kind == "checkpoint":
                checkpoints.append(checkpoint_from_json(data))
            else:
                raise ExportFormatError(f"line {number}: unknown record type {kind!r}")
        except ExportFormatError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ExportFormatError(f"line {number}: cannot be read ({exc})") from exc
    if header is None:
        raise ExportFormatError("empty file")
    return ParsedExport(header, events, checkpoints)


def read_checkpoints_file(stream: TextIO) -> list[Checkpoint]:
    """Checkpoints kept outside the database: the JSON of GET /v1/audit/checkpoints, or
    the checkpoint lines of an earlier JSONL export."""
    text = stream.read()
    try:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("checkpoints"), list):
            return [checkpoint_from_json(item) for item in data["checkpoints"]]
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        # A file of neither shape must fail, not pass as "no checkpoints to check".
        if not rows or not all(isinstance(row, dict) and "type" in row for row in rows):
            raise ValueError("neither GET /v1/audit/checkpoints JSON nor a JSONL export")
        return [checkpoint_from_json(row) for row in rows if row["type"] == "checkpoint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportFormatError(f"cannot read checkpoints: {exc}") from exc


def header_public_keys(header: Mapping[str, Any]) -> list[Ed25519PublicKey]:
    """The keys an export's header names (all trusted keys, or the one of older files)."""
    try:
        listed = header.get("public_keys")
        if listed is not None:
            keys = [load_public_key(item["public_key"]) for item in listed]
            if keys:
                return keys
        return [load_public_key(header["public_key"])]
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ExportFormatError(f"line 1: no usable public key in the header ({exc})") \
            from exc


def verify_export(parsed: ParsedExport,
                  public_keys: Sequence[Ed25519PublicKey] | None = None,
                  extra_checkpoints: Sequence[Checkpoint] = ()) -> VerifyReport:
    """Check an export offline, each checkpoint with the key of its key id. Without
    trusted keys the header's keys are used (an export made before `public_keys` existed
    has only `public_key`), which proves integrity only against edits made without
    re-signing."""
    keys = list(public_keys) if public_keys else header_public_keys(parsed.header)
    seqs = [e.seq for e in parsed.events]
    for index, (got, want) in enumerate(zip(seqs, sorted(seqs), strict=True)):
        if got != want:
            # Lines were moved: name the position whose event is not the one that
            # belongs there (line numbers count the header as line 1).
            return VerifyReport(ok=False, complete=bool(parsed.header.get("complete")),
                                problem=Problem("out_of_order", want, parsed.events[index].id,
                                                f"line {index + 2} holds event seq {got} where "
                                                f"seq {want} belongs: lines were reordered"))
    # The file order is what the auditor holds; verify_chain refuses out-of-order seq.
    return verify_chain(parsed.events, [*parsed.checkpoints, *extra_checkpoints], keys,
                        complete=bool(parsed.header.get("complete", False)))
