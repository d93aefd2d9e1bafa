"""Schemas of the compliance API (/v1/audit): query filters and the event shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from faceapi.domain.audit import ROLES, Action


def _in_utc_range(moment: datetime) -> None:
    # 0001-01-01T00:00:00+05:00 parses but has no UTC form: refuse it here (422), not as
    # an OverflowError wherever the time is first converted.
    try:
        moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValidationError("time is out of range once converted to UTC") from exc


class AuditFilterSchema(Schema):
    """Filters shared by list and export; every one narrows the result."""

    since = fields.AwareDateTime(validate=_in_utc_range, metadata={
        "description": "ISO 8601 time with offset, inclusive"})
    until = fields.AwareDateTime(validate=_in_utc_range, metadata={
        "description": "ISO 8601 time with offset, exclusive"})
    actor = fields.String(validate=validate.Length(max=64),
                          metadata={"description": "API key id of the actor"})
    role = fields.String(validate=validate.OneOf(sorted(ROLES)))
    action = fields.List(fields.String(validate=validate.OneOf([a.value for a in Action])),
                         metadata={"description": "repeat for several actions"})
    outcome = fields.String(validate=validate.Length(max=32))
    policy = fields.String(validate=validate.Length(max=64))
    resource = fields.String(validate=validate.Length(max=256), metadata={
        "description": "a resource, or a parent: collections/c1 matches its faces too"})
    subject_id = fields.String(validate=validate.Length(max=128))
    request_id = fields.String(validate=validate.Length(max=128))


class AuditListArgsSchema(AuditFilterSchema):
    order = fields.String(load_default="newest", validate=validate.OneOf(["newest", "oldest"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=validate.Length(max=200),
                           metadata={"description": "next_cursor of the previous page"})


class AuditExportArgsSchema(AuditFilterSchema):
    format = fields.String(load_default="jsonl", validate=validate.OneOf(["jsonl", "csv"]))


class ActorSchema(Schema):
    key_id = fields.String(allow_none=True)
    role = fields.String()


class PolicyRefSchema(Schema):
    name = fields.String(allow_none=True)
    version = fields.String(allow_none=True)


class EngineRefSchema(Schema):
    name = fields.String(allow_none=True)
    model_version = fields.String(allow_none=True)


class AuditEventSchema(Schema):
    """One event as stored, with the hashes that chain it."""

    seq = fields.Integer()
    id = fields.String()
    time = fields.String(metadata={"description": "UTC, microseconds, as hashed"})
    action = fields.String()
    outcome = fields.String()
    actor = fields.Nested(ActorSchema)
    resource = fields.String(allow_none=True)
    subject_id = fields.String(allow_none=True)
    policy = fields.Nested(PolicyRefSchema)
    engine = fields.Nested(EngineRefSchema)
    scores = fields.Dict(keys=fields.String(), values=fields.Raw())
    input_digests = fields.List(fields.String())
    request_id = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    details = fields.Dict(keys=fields.String(), values=fields.Raw())
    prev_hash = fields.String()
    hash = fields.String()


class AuditPageSchema(Schema):
    events = fields.List(fields.Nested(AuditEventSchema))
    next_cursor = fields.String(allow_none=True)


class CheckpointSchema(Schema):
    seq = fields.Integer()
    hash = fields.String()
    created_at = fields.String()
    key_id = fields.String()
    signature = fields.String(metadata={"description": "base64 Ed25519 signature"})


class CheckpointListSchema(Schema):
    checkpoints = fields.List(fields.Nested(CheckpointSchema))


class ProblemSchema(Schema):
    kind = fields.String()
    seq = fields.Integer()
    event_id = fields.String(allow_none=True)
    message = fields.String()


class VerifyReportSchema(Schema):
    ok = fields.Boolean()
    complete = fields.Boolean()
    events_checked = fields.Integer()
    head_seq = fields.Integer()
    head_hash = fields.String()
    checkpoints_checked = fields.Integer()
    last_checkpoint_seq = fields.Integer(allow_none=True)
    keys_used = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "checkpoints whose signature held, by the key id that signed them"})
    problem = fields.Nested(ProblemSchema, allow_none=True)
    seconds = fields.Float()


class TrustedKeySchema(Schema):
    key_id = fields.String()
    public_key = fields.String(metadata={"description": "PEM (SubjectPublicKeyInfo)"})


class PublicKeySchema(Schema):
    key_id = fields.String()
    algorithm = fields.String()
    public_key = fields.String(metadata={"description": "PEM (SubjectPublicKeyInfo)"})
    retired_keys = fields.List(fields.Nested(TrustedKeySchema), metadata={
        "description": "retired keys this server still trusts for old checkpoints "
                       "(FACEAPI_AUDIT_TRUSTED_PUBLIC_KEYS); an auditor keeps its own copies"})


def filters_to_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    """Query arguments -> AuditQuery keyword arguments."""
    return {"since": args.get("since"), "until": args.get("until"),
            "actor_key_id": args.get("actor"), "actor_role": args.get("role"),
            "actions": tuple(args.get("action") or ()), "outcome": args.get("outcome"),
            "policy_name": args.get("policy"), "resource": args.get("resource"),
            "subject_id": args.get("subject_id"), "request_id": args.get("request_id")}
