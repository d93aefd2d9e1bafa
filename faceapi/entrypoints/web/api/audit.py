"""Compliance API (/v1/audit): list, get, verify, export, checkpoints, public key.

Roles: auditor and admin (enforced centrally by api/auth.py from domain/access.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Response, stream_with_context
from flask_smorest import Blueprint

from faceapi.domain.audit import AuditQuery
from faceapi.domain.audit_chain import (
    checkpoint_to_json,
    key_id_of,
    public_key_pem,
    record_to_json,
)
from faceapi.domain.errors import InvalidParameter, NotFound
from faceapi.entrypoints.web.api.audit_schemas import (
    AuditEventSchema,
    AuditExportArgsSchema,
    AuditListArgsSchema,
    AuditPageSchema,
    CheckpointListSchema,
    CheckpointSchema,
    PublicKeySchema,
    VerifyReportSchema,
    filters_to_kwargs,
)
from faceapi.entrypoints.web.api.deps import container, current_actor, use_cases
from faceapi.services import audit_trail

blp = Blueprint("audit", __name__, url_prefix="/v1/audit",
                description="Tamper-evident audit trail for compliance staff")

# A sequence number is a BIGINT in the database: a larger cursor would overflow the
# query's parameter (a 500), so it is refused here like any other bad cursor.
MAX_SEQ = 2**63 - 1


def encode_cursor(seq: int, order: str) -> str:
    raw = json.dumps({"s": seq, "o": order}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        seq, cursor_order = data["s"], data["o"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidParameter("cursor is not valid", details={"field": "cursor"}) from exc
    # bool is an int to isinstance: {"s": true} must not reach the query as a bound.
    if (not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ
            or cursor_order != order):
        raise InvalidParameter("cursor does not belong to this order",
                               details={"field": "cursor"})
    return seq


@blp.route("/events", methods=["GET"])
@blp.arguments(AuditListArgsSchema, location="query")
@blp.response(200, AuditPageSchema)
def list_events(args: dict[str, Any]) -> Any:
    """List the audit events inside the key's scope: filters, cursor pagination."""
    order = args["order"]
    after = decode_cursor(args["cursor"], order) if args.get("cursor") else None
    query = AuditQuery(**filters_to_kwargs(args), newest_first=order == "newest",
                       after_seq=after)
    events, next_after = use_cases().list_audit_events(query, args["limit"],
                                                       reader=current_actor())
    return {"events": [record_to_json(e) for e in events],
            "next_cursor": None if next_after is None else encode_cursor(next_after, order)}


@blp.route("/events/<string:event_id>", methods=["GET"])
@blp.response(200, AuditEventSchema)
def get_event(event_id: str) -> Any:
    """Get one audit event by id, with its hashes."""
    if len(event_id) > 64:
        raise NotFound(f"no audit event {event_id[:64]}")
    return record_to_json(use_cases().get_audit_event(event_id, reader=current_actor()))


@blp.route("/verify", methods=["GET"])
@blp.response(200, VerifyReportSchema)
def verify_chain() -> Any:
    """Verify the whole chain and its signed checkpoints; names the first bad event
    (a scoped key learns only the kind and sequence number of a problem)."""
    report = use_cases().verify_audit_trail(actor=current_actor())
    return report.as_json()


@blp.route("/export", methods=["GET"])
@blp.arguments(AuditExportArgsSchema, location="query")
@blp.response(200, description="JSONL or CSV stream of events, hashes and checkpoints")
def export_events(args: dict[str, Any]) -> Any:
    """Export the filtered events inside the key's scope with hashes and checkpoints
    (JSONL or CSV); audited."""
    fmt = args["format"]
    query = AuditQuery(**filters_to_kwargs(args), newest_first=False)
    name, chunks = use_cases().export_audit_trail(query, fmt, actor=current_actor())
    return Response(stream_with_context(chunks), mimetype=audit_trail.EXPORT_MEDIA[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@blp.route("/checkpoints", methods=["GET"])
@blp.response(200, CheckpointListSchema)
def list_checkpoints() -> Any:
    """List the signed checkpoints of the chain head, oldest first."""
    checkpoints = use_cases().list_checkpoints()
    return {"checkpoints": [checkpoint_to_json(cp) for cp in checkpoints]}


@blp.route("/checkpoints", methods=["POST"])
@blp.response(201, CheckpointSchema)
def create_checkpoint() -> Any:
    """Sign the current chain head now (on demand)."""
    checkpoint = use_cases().create_checkpoint()
    if checkpoint is None:
        raise NotFound("the audit trail is empty: there is no head to sign")
    return checkpoint_to_json(checkpoint)


@blp.route("/public-key", methods=["GET"])
@blp.response(200, PublicKeySchema)
def public_key() -> Any:
    """The Ed25519 public key that signs checkpoints now, and the retired ones still
    trusted for older checkpoints (for offline export checks)."""
    signer = container().signer
    return {"key_id": signer.key_id, "algorithm": "Ed25519", "public_key": signer.public_key_pem,
            "retired_keys": [{"key_id": key_id_of(k), "public_key": public_key_pem(k)}
                             for k in signer.retired_public_keys]}
