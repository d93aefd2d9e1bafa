"""Verify (1:1 under a policy), the decisions apps read back, and operators' unlock."""

from __future__ import annotations

import json
from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from faceapi.domain.access import APP
from faceapi.domain.decisions import Decision, DecisionKind, Outcome, requester_view
from faceapi.entrypoints.web.api.deps import (
    current_actor,
    load_body,
    request_id,
    require_image,
    use_cases,
)
from faceapi.entrypoints.web.api.faces import image_request_body
from faceapi.entrypoints.web.api.idempotency import idempotent
from faceapi.entrypoints.web.api.schemas import ImageSchema, StrictSchema
from faceapi.services.verify import CompareRequest, VerifyRequest

blp = Blueprint("verify", __name__, url_prefix="/v1",
                description="Verify a claimed subject under a policy; read decisions")
lockouts_blp = Blueprint("lockouts", __name__, url_prefix="/v1/collections",
                         description="Failed-verify lockouts (operators)")

_ID = validate.Regexp(r"^[A-Za-z0-9_.\-]{1,128}\Z", error="letters, digits, _ . - (1-128)")


class VerifyRequestSchema(StrictSchema):
    collection_id = fields.String(required=True, validate=_ID)
    subject_id = fields.String(required=True, validate=_ID,
                               metadata={"description": "the claimed subject"})
    policy = fields.String(required=True, validate=validate.Length(min=1, max=64),
                           metadata={"description": "e.g. login or identity_check"})
    image = fields.Nested(ImageSchema)
    liveness_attestation = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=8192),
        metadata={"description": "a liveness service's signed attestation (JWT) whose "
                                 "`sub` is the claimed subject id; required by a policy "
                                 "with `liveness.required` (docs/verify.md)"})


class PolicyCompareRequestSchema(StrictSchema):
    policy = fields.String(required=True, validate=validate.Length(min=1, max=64),
                           metadata={"description": "a compare policy, e.g. dataset_cleaning"})
    source = fields.Nested(ImageSchema)
    target = fields.Nested(ImageSchema)


class DecisionSchema(Schema):
    decision_id = fields.String(attribute="id")
    # Typed in the document (a Function field is untyped), for generated clients.
    kind = fields.Function(lambda d: d.kind.value,
                           metadata={"description": "verify | search | compare",
                                     "type": "string",
                                     "enum": [k.value for k in DecisionKind]})
    outcome = fields.Function(
        lambda d: d.outcome.value,
        metadata={"description": "match | no_match | pending_review | rejected",
                  "type": "string", "enum": [o.value for o in Outcome]})
    final = fields.Boolean(metadata={"description": "false while a review is pending"})
    reasons = fields.List(fields.String())
    similarity = fields.Function(
        lambda d: round(d.similarity, 4) if d.outcome is Outcome.MATCH and d.similarity
        is not None else None,
        metadata={"description": "best similarity; given on a final match only",
                  "type": "number", "nullable": True})
    threshold = fields.Float()
    policy = fields.Function(lambda d: {"name": d.policy_name, "version": d.policy_version},
                             metadata={"type": "object", "properties": {
                                 "name": {"type": "string"}, "version": {"type": "string"}}})
    collection_id = fields.String(allow_none=True)
    subject_id = fields.String(allow_none=True)
    matched_face_id = fields.String(allow_none=True)
    matched_subject_id = fields.String(
        allow_none=True,
        metadata={"description": "the subject of the matched face, on a final match only "
                                 "(a search's confirmed candidate; a verify's claimed "
                                 "subject); null after the subject's erasure"})
    liveness = fields.Function(
        lambda d: {"status": d.liveness.status.value, "issuer": d.liveness.issuer,
                   "jti_sha256": d.liveness.jti_sha256},
        metadata={"description": "status: not_required | attested | failed; the issuer "
                                 "and the SHA-256 of the attestation's issuer and jti "
                                 "(never the token)"})
    review_id = fields.String(allow_none=True)
    audit_event_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


def render_decision(decision: Decision) -> bytes:
    """The JSON body of a decision as this schema shows it: what a review callback sends
    (faceapi/services/webhooks.py), the same fields GET /v1/decisions/{id} returns."""
    return json.dumps(DecisionSchema().dump(decision), sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


class LockoutStatusSchema(Schema):
    policy = fields.String(attribute="policy_name")
    failures = fields.Integer(metadata={"description": "consecutive failures counted"})
    lock_count = fields.Integer(metadata={"description": "locks since the last success"})
    locked_until = fields.DateTime(allow_none=True)
    retry_after = fields.Integer(allow_none=True, metadata={"description": "seconds"})


class LockoutListSchema(Schema):
    lockouts = fields.List(fields.Nested(LockoutStatusSchema))


class UnlockArgsSchema(Schema):
    policy = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                           metadata={"description": "one policy; absent: all"})


class UnlockedSchema(Schema):
    unlocked = fields.Integer()


@blp.route("/verify", methods=["POST"])
@idempotent
@blp.doc(requestBody=image_request_body(VerifyRequestSchema, ("image",)))
@blp.response(200, DecisionSchema)
@blp.alt_response(423, description="locked: too many failures; see Retry-After")
def verify_subject() -> Any:
    """Verify that the image shows the claimed subject, under a policy."""
    loaded = load_body(VerifyRequestSchema(), ("image",))
    req = VerifyRequest(collection_id=loaded["collection_id"], subject_id=loaded["subject_id"],
                        image=require_image(loaded, "image"), policy=loaded["policy"],
                        liveness_attestation=loaded["liveness_attestation"])
    return requester_view(use_cases().verify(req, actor=current_actor(),
                                             request_id=request_id()))


@blp.route("/compare", methods=["POST"])
@idempotent
@blp.doc(requestBody=image_request_body(PolicyCompareRequestSchema, ("source", "target")))
@blp.response(200, DecisionSchema)
def compare_pair() -> Any:
    """Decide whether two images show the same person, under a compare policy."""
    loaded = load_body(PolicyCompareRequestSchema(), ("source", "target"))
    req = CompareRequest(source=require_image(loaded, "source"),
                         target=require_image(loaded, "target"), policy=loaded["policy"])
    return requester_view(use_cases().compare_under_policy(req, actor=current_actor(),
                                                           request_id=request_id()))


@blp.route("/decisions/<string:decision_id>", methods=["GET"])
@blp.response(200, DecisionSchema)
def get_decision_view(decision_id: str) -> Decision:
    """Read a decision: its final outcome once its review has ended."""
    actor = current_actor()
    decision = use_cases().get_decision(decision_id, actor=actor)
    # Apps, and whoever requested it, learn nothing from a decision until it is final;
    # reviewers, auditors and admins who did not request it see it whole.
    if actor.role == APP or actor.key_id == decision.requester_key_id:
        return requester_view(decision)
    return decision


@lockouts_blp.route("/<string:collection_id>/subjects/<string:subject_id>/lockout",
                    methods=["GET"])
@lockouts_blp.response(200, LockoutListSchema)
def get_lockout(collection_id: str, subject_id: str) -> Any:
    """Show a subject's failed-verify count and lock, per policy."""
    states = use_cases().lockout_status(collection_id, subject_id, actor=current_actor())
    return {"lockouts": states}


@lockouts_blp.route("/<string:collection_id>/subjects/<string:subject_id>/lockout",
                    methods=["DELETE"])
@lockouts_blp.arguments(UnlockArgsSchema, location="query")
@lockouts_blp.response(200, UnlockedSchema)
def unlock_subject(args: dict[str, Any], collection_id: str, subject_id: str) -> Any:
    """Unlock a subject (operators): clears the failure count; audited."""
    count = use_cases().unlock(collection_id, subject_id, args["policy"],
                               actor=current_actor(), request_id=request_id())
    return {"unlocked": count}
