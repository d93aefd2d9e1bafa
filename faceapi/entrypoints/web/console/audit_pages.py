"""Audit trail pages (auditor): filtered, paginated list, event detail, chain
verification and export of the filtered set, through the audit trail service."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Response, abort, flash, g, redirect, render_template, request, url_for

from faceapi.domain import access
from faceapi.domain.audit import ANONYMOUS, SYSTEM, Action, AuditQuery
from faceapi.domain.audit_chain import record_to_json
from faceapi.domain.errors import FaceApiError
from faceapi.entrypoints.web.api.deps import container, use_cases
from faceapi.entrypoints.web.console.views import bp, policy_set
from faceapi.services import audit_trail

PAGE_SIZE = 50
FILTER_FIELDS = ("since", "until", "actor", "role", "action", "outcome", "policy",
                 "subject", "request_id", "resource")
# The key roles in the permission table's order, then the two non-key actors.
ROLE_CHOICES = (*access.ROLES, SYSTEM.role, ANONYMOUS.role)


class BadFilter(FaceApiError):
    code = "invalid_parameter"


def _time(name: str, raw: str) -> datetime | None:
    """A `datetime-local` value, read as UTC (the page says so)."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
        # OverflowError: a time with no UTC form (0001-01-01T00:00+05:00).
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise BadFilter(f"{name}: expected a date and time like 2026-01-31T13:45") from exc


def filters_from(args: Mapping[str, str]) -> dict[str, str]:
    """The filter fields as sent, trimmed; empty ones dropped."""
    return {name: args.get(name, "").strip()[:200] for name in FILTER_FIELDS
            if args.get(name, "").strip()}


def query_from(filters: Mapping[str, str], *, after: int | None = None,
               newest_first: bool = True) -> AuditQuery:
    action = filters.get("action")
    if action and action not in {a.value for a in Action}:
        raise BadFilter(f"action: unknown action {action[:40]!r}")
    return AuditQuery(
        since=_time("since", filters.get("since", "")),
        until=_time("until", filters.get("until", "")),
        actor_key_id=filters.get("actor") or None,
        actor_role=filters.get("role") or None,
        actions=(action,) if action else (),
        outcome=filters.get("outcome") or None,
        policy_name=filters.get("policy") or None,
        subject_id=filters.get("subject") or None,
        request_id=filters.get("request_id") or None,
        resource=filters.get("resource") or None,
        newest_first=newest_first, after_seq=after)


def _url(endpoint: str, params: Mapping[str, Any]) -> str:
    return url_for(endpoint, **params)


@bp.route("/audit", methods=["GET"])
def audit() -> Any:
    """The audit trail inside the key's scope, filtered and paginated, newest first."""
    filters = filters_from(request.args)
    after_raw = request.args.get("after", "")
    # ASCII digits only, and few enough for a BIGINT: "²".isdigit() holds and int()
    # refuses it; a 30-digit number overflows the database's integer.
    after = int(after_raw) if re.fullmatch(r"[0-9]{1,18}", after_raw) else None
    error = None
    events: list[Any] = []
    next_after = None
    try:
        query = query_from(filters, after=after)
        events, next_after = use_cases().list_audit_events(query, PAGE_SIZE, reader=g.actor)
    except BadFilter as exc:
        error = exc.message
    return render_template(
        "audit.html", title="Audit trail", events=events, filters=filters, error=error,
        next_url=_url("console.audit", {**filters, "after": next_after}) if next_after else None,
        first_url=_url("console.audit", filters) if after else None,
        actions=[a.value for a in Action], roles=ROLE_CHOICES,
        policy_names=[n for n in policy_set() if access.can_use_policy(g.actor, n)],
        export_jsonl=_url("console.audit_export", {**filters, "format": "jsonl"}),
        export_csv=_url("console.audit_export", {**filters, "format": "csv"}))


@bp.route("/audit/events/<event_id>", methods=["GET"])
def audit_event(event_id: str) -> Any:
    """One audit event with every recorded field and its hashes."""
    record = use_cases().get_audit_event(event_id[:64], reader=g.actor)
    data = record_to_json(record)
    return render_template("audit_event.html", title=f"Audit event {record.seq}",
                           record=record, data=data, back=request.referrer)


@bp.route("/audit/verify", methods=["POST"])
def audit_verify() -> Any:
    """Walk the whole hash chain and its signed checkpoints now (the check is audited)."""
    report = use_cases().verify_audit_trail(actor=g.actor)
    if report.ok:
        last = report.last_checkpoint_seq
        keys = ", ".join(f"{k} ({n})" for k, n in sorted(report.keys_used.items()))
        flash(f"Chain verified: {report.events_checked} events intact, head #{report.head_seq}"
              + (f", signed checkpoint #{last} valid" if last is not None else "")
              + (f"; checkpoints by key: {keys}." if keys else "."), "ok")
    else:
        problem = report.problem
        flash("Chain verification FAILED"
              + (f" at event #{problem.seq} ({problem.kind}): {problem.message}"
                 if problem is not None else "."), "error")
    return redirect(_url("console.audit", filters_from(request.form)))


@bp.route("/audit/export", methods=["GET"])
def audit_export() -> Any:
    """Download the filtered events with their hashes and checkpoints (JSONL or CSV)."""
    fmt = request.args.get("format", "jsonl")
    if fmt not in audit_trail.EXPORT_FORMATS:
        abort(422, description="format must be jsonl or csv")
    filters = filters_from(request.args)
    try:
        query = query_from(filters, newest_first=False)
    except BadFilter as exc:
        abort(422, description=exc.message)
    lines: Iterator[str]
    name, lines = use_cases().export_audit_trail(query, fmt, actor=g.actor,
                                                 now=container().clock.now())
    return Response(lines, mimetype=audit_trail.EXPORT_MEDIA[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


