"""Policies in force: list and read, each with its version (SHA-256 of its canonical
form); and the canonical text of any version ever loaded (services/policy_history.py)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from faceapi.domain.errors import NotFound
from faceapi.domain.policies import Policy
from faceapi.entrypoints.web.api.deps import current_actor, use_cases

blp = Blueprint("policies", __name__, url_prefix="/v1/policies",
                description="The policies decisions are made under")


class QualityGateSchema(Schema):
    min_face_px = fields.Integer()
    max_yaw = fields.Float()
    max_pitch = fields.Float()
    max_roll = fields.Float()
    min_sharpness = fields.Float()
    min_brightness = fields.Float()


class HumanReviewSchema(Schema):
    mode = fields.String(metadata={"description": "always | band | never"})
    band = fields.List(fields.Float(), allow_none=True,
                       metadata={"description": "[low, high): scores here go to review"})
    reviewers = fields.Integer(metadata={"description": "distinct reviewers who must agree"})
    max_wait_hours = fields.Float(metadata={"description": "then the review expires, rejected"})


class LockoutSchema(Schema):
    failures = fields.Integer()
    window_minutes = fields.Float()
    base_delay_seconds = fields.Float()
    max_delay_seconds = fields.Float()


class PolicySchema(Schema):
    name = fields.String()
    version = fields.String(metadata={"description": "SHA-256 of the canonical form"})
    description = fields.String()
    operation = fields.String(metadata={"description": "verify | search | compare"})
    consequential = fields.Boolean()
    min_similarity = fields.Float()
    min_face_confidence = fields.Float()
    quality = fields.Nested(QualityGateSchema)
    max_faces = fields.Integer(metadata={"description": "faces the probe image may contain"})
    max_matches = fields.Integer(metadata={"description": "search: most candidates returned"})
    human_review = fields.Nested(HumanReviewSchema)
    lockout = fields.Nested(LockoutSchema, allow_none=True)
    retention_days = fields.Integer(
        metadata={"description": "days review evidence is kept after the review ends"})
    decision_retention_days = fields.Integer(
        metadata={"description": "days decision rows are kept after they were made"})
    attributes = fields.List(fields.String())
    template_scoring = fields.String(metadata={
        "description": "verify with several enrolled faces: fused (one template fused "
                       "from them) or best_of; absent means best_of"})


class PolicyListSchema(Schema):
    policies = fields.List(fields.Nested(PolicySchema))


def policy_json(policy: Policy) -> dict[str, Any]:
    return {"version": policy.version, **policy.canonical()}


@blp.route("", methods=["GET"])
@blp.response(200, PolicyListSchema)
def list_policies() -> Any:
    """List the policies in force with their versions."""
    return {"policies": [policy_json(p) for p in use_cases().list_policies()]}


@blp.route("/<string:name>", methods=["GET"])
@blp.response(200, PolicySchema)
def get_policy(name: str) -> Any:
    """Read one policy: every rule and its version."""
    policy = use_cases().get_policy(name)
    if policy is None:
        raise NotFound(f"no policy named {name[:64]!r}")
    return policy_json(policy)


class PolicyVersionSchema(Schema):
    name = fields.String()
    version = fields.String(metadata={"description": "SHA-256 of canonical_text, as "
                                                     "recorded by decisions and audit events"})
    canonical_text = fields.String(metadata={
        "description": "the policy's canonical JSON (sorted keys, no spaces, UTF-8), every "
                       "default filled in"})
    text_sha256 = fields.String(metadata={
        "description": "SHA-256 of canonical_text computed now: equal to version unless "
                       "the stored text was altered"})
    intact = fields.Boolean(metadata={"description": "text_sha256 == version"})
    first_loaded_at = fields.DateTime(metadata={"description": "the first start that "
                                                               "loaded this version"})
    audit_event_id = fields.String(metadata={
        "description": "the policy.load event that recorded it (its policy version is in "
                       "the hash chain)"})


@blp.route("/<string:name>/versions/<string:version>", methods=["GET"])
@blp.response(200, PolicyVersionSchema)
@blp.alt_response(404, description="no start has loaded this version of this policy "
                                   "(versions loaded before revision 0010 were not kept)")
def get_policy_version(name: str, version: str) -> Any:
    """The canonical text of a policy version any start has loaded (what a past decision
    recording this name and version ran under); 404 for a version never loaded."""
    view = use_cases().get_policy_version(name, version, actor=current_actor())
    found = view.recorded
    return {"name": found.name, "version": found.version,
            "canonical_text": found.canonical_text, "text_sha256": view.text_sha256,
            "intact": view.intact, "first_loaded_at": found.first_loaded_at,
            "audit_event_id": found.audit_event_id}
