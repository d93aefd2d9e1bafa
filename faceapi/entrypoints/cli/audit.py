"""`faceapi audit ...`: verify (live or an export), export, tail, checkpoint, public-key,
new-signing-key (rotation: docs/operations.md, "Rotating the audit signing key").

Exit codes: `verify` exits 0 when the chain is intact and 1 otherwise, printing the
first problem, so it can run from cron or CI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click

from faceapi.adapters.private_files import create_private_file_once
from faceapi.adapters.signing_keys import new_signing_key_pem, read_private_key, read_public_keys
from faceapi.bootstrap import UseCases
from faceapi.domain.audit import Action, Actor, AuditQuery, RecordedEvent
from faceapi.domain.audit_chain import (
    VerifyReport,
    key_id_of,
    keys_by_id,
    public_key_pem,
    record_to_json,
)
from faceapi.domain.audit_export import (
    ExportFormatError,
    read_checkpoints_file,
    read_jsonl_export,
    verify_export,
)
from faceapi.entrypoints.cli.common import CLI_ACTOR, cli_checked
from faceapi.services import audit_trail


@contextmanager
def _use_cases() -> Iterator[UseCases]:
    with cli_checked() as container:
        yield container.use_cases


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        # A time with no UTC form (0001-01-01T00:00+05:00) is refused here, not later.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from exc


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_json(), sort_keys=True))
        return
    scope = "" if report.complete else " (filtered export: completeness not checked)"
    keys = ", ".join(f"{key_id} ({count})" for key_id, count in sorted(report.keys_used.items()))
    if report.ok:
        click.echo(f"OK: {report.events_checked} events, head seq {report.head_seq}, "
                   f"last signed checkpoint seq {report.last_checkpoint_seq}, "
                   f"{report.checkpoints_checked} checkpoints checked{scope}")
        click.echo(f"checkpoints by key: {keys or 'none'}")
    else:
        problem = report.problem
        assert problem is not None
        ident = f" (id {problem.event_id})" if problem.event_id else ""
        click.echo(f"FAIL: {problem.kind} at seq {problem.seq}{ident}: {problem.message}", err=True)


@click.group()
def audit() -> None:
    """Audit trail: verify, export, tail, checkpoint, public key."""


@audit.command("verify")
@click.option("--export", "export_file", type=click.File("r", encoding="utf-8"),
              help="Check this JSONL export instead of the live database.")
@click.option("--public-key", "public_keys", multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="Trusted PEM public key(s): a file (one or more keys) or a directory of "
                   "*.pem/*.pub; repeat for rotated keys. Given, only these keys are "
                   "trusted (not the server's).")
@click.option("--checkpoints", "checkpoints_file", type=click.File("r", encoding="utf-8"),
              help="Signed checkpoints kept outside the database (JSON of "
                   "GET /v1/audit/checkpoints or an earlier export): the chain must still "
                   "cover them.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(export_file: TextIO | None, public_keys: tuple[Path, ...],
               checkpoints_file: TextIO | None, as_json: bool) -> None:
    """Walk the chain and checkpoints; exit 1 and name the first bad event."""
    try:
        keys = list(keys_by_id(k for path in public_keys for k in read_public_keys(path))
                    .values())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"not Ed25519 PEM public keys ({exc})",
                                 param_hint="--public-key") from exc
    try:
        extra = read_checkpoints_file(checkpoints_file) if checkpoints_file else []
    except ExportFormatError as exc:
        click.echo(f"FAIL: unreadable checkpoints file: {exc}", err=True)
        raise SystemExit(1) from exc
    if export_file is not None:
        try:
            parsed = read_jsonl_export(export_file)
            if not keys:
                click.echo("warning: no --public-key given; trusting the key inside the "
                           "export", err=True)
            report = verify_export(parsed, keys or None, extra)
        except ExportFormatError as exc:
            click.echo(f"FAIL: unreadable export: {exc}", err=True)
            raise SystemExit(1) from exc
    else:
        with _use_cases() as use_cases:
            report = use_cases.verify_audit_trail(actor=CLI_ACTOR, public_keys=keys or (),
                                                  extra_checkpoints=extra)
    _print_report(report, as_json)
    raise SystemExit(0 if report.ok else 1)


def _filters(func: Any) -> Any:
    options = [
        click.option("--since", help="ISO time, inclusive."),
        click.option("--until", help="ISO time, exclusive."),
        click.option("--actor", help="API key id."),
        click.option("--role"),
        click.option("--action", "actions", multiple=True,
                     type=click.Choice([a.value for a in Action])),
        click.option("--outcome"),
        click.option("--policy"),
        click.option("--resource", help="A resource or a parent of resources."),
        click.option("--subject"),
        click.option("--request-id"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _query(kw: dict[str, Any], *, newest_first: bool) -> AuditQuery:
    return AuditQuery(since=_when(kw["since"]), until=_when(kw["until"]),
                      actor_key_id=kw["actor"], actor_role=kw["role"],
                      actions=tuple(kw["actions"]), outcome=kw["outcome"],
                      policy_name=kw["policy"], resource=kw["resource"],
                      subject_id=kw["subject"], request_id=kw["request_id"],
                      newest_first=newest_first)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(audit_trail.EXPORT_FORMATS), default="jsonl",
              show_default=True)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-",
              help="File to write (default stdout).")
@_filters
def export_cmd(fmt: str, output: TextIO, **kw: Any) -> None:
    """Export events (oldest first) with their hashes and the signed checkpoints."""
    with _use_cases() as use_cases:
        _name, chunks = use_cases.export_audit_trail(_query(kw, newest_first=False), fmt,
                                                     actor=CLI_ACTOR)
        for chunk in chunks:
            output.write(chunk)


def _line(record: RecordedEvent) -> str:
    e = record.event
    actor = f"{e.actor.role}:{e.actor.key_id}" if e.actor.key_id else e.actor.role
    scores = " ".join(f"{k}={v}" for k, v in sorted(e.scores.items()))
    parts = [f"{record.seq:>8}", record.time.strftime("%Y-%m-%dT%H:%M:%SZ"), e.action.value,
             e.outcome, actor, e.resource or "-", scores]
    return "  ".join(p for p in parts if p)


@audit.command("tail")
@click.option("-n", "count", default=20, show_default=True, help="How many recent events.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_filters
def tail_cmd(count: int, follow: bool, as_json: bool, **kw: Any) -> None:
    """Print the newest events, oldest of them first."""
    with _use_cases() as use_cases:
        # The CLI runs as the system: unscoped, it reads the whole trail.
        head, _ = use_cases.list_audit_events(AuditQuery(), 1, reader=Actor.system())
        last = head[0].seq if head else 0
        page, _ = use_cases.list_audit_events(
            replace(_query(kw, newest_first=True), until_seq=last), count,
            reader=Actor.system())
        for record in reversed(page):
            click.echo(json.dumps(record_to_json(record)) if as_json else _line(record))
        while follow:
            time.sleep(1.0)
            query = replace(_query(kw, newest_first=False), after_seq=last)
            new, _ = use_cases.list_audit_events(query, audit_trail.MAX_PAGE,
                                                 reader=Actor.system())
            for record in new:
                click.echo(json.dumps(record_to_json(record)) if as_json else _line(record))
                last = record.seq


@audit.command("checkpoint")
def checkpoint_cmd() -> None:
    """Sign the current chain head now (e.g. from cron, besides the automatic ones)."""
    with _use_cases() as use_cases:
        checkpoint = use_cases.create_checkpoint()
    if checkpoint is None:
        click.echo("audit trail is empty: nothing to sign")
    else:
        click.echo(f"checkpoint at seq {checkpoint.seq} signed by key {checkpoint.key_id}")


@audit.command("public-key")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Print the public key of this private key file instead (no database).")
@click.option("--all", "all_keys", is_flag=True,
              help="Also the retired keys this server trusts (FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS).")
def public_key_cmd(key_file: Path | None, all_keys: bool) -> None:
    """Print the audit signing public key (PEM) for auditors."""
    if key_file is not None:
        try:
            key = read_private_key(key_file)
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(f"not an Ed25519 PEM private key ({exc})",
                                     param_hint="--key-file") from exc
        click.echo(public_key_pem(key.public_key()), nl=False)
        return
    with cli_checked() as container:
        signer = container.signer
        keys = signer.trusted_public_keys if all_keys else (signer.public_key,)
        click.echo("".join(public_key_pem(k) for k in keys), nl=False)


@audit.command("new-signing-key")
@click.option("--out", "-o", "out", required=True, type=click.Path(path_type=Path),
              help="Where to write the new private key (mode 0600; never overwritten).")
def new_signing_key_cmd(out: Path) -> None:
    """Make a new Ed25519 audit signing key (for a rotation) and print its public key.

    Nothing changes until FACEAPI_AUDIT_SIGNING_KEY points at the new file and the
    servers restart; then the old public key goes into FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS."""
    if out.exists():
        raise click.ClickException(f"{out} exists: a signing key is never overwritten")
    pem = new_signing_key_pem()
    create_private_file_once(out, pem)
    key = read_private_key(out)
    click.echo(f"wrote {out} (key id {key_id_of(key.public_key())}); its public key:", err=True)
    click.echo(public_key_pem(key.public_key()), nl=False)
