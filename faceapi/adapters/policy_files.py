"""Reading `policies/*.yaml`: YAML, then a strict marshmallow schema, then the domain
model (faceapi/domain/policies.py). Used at start by create_app and by
`faceapi policies check`; a bad file raises PolicyError naming the file and the field.

The schema lives here, not in the domain, because the domain imports no framework.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from faceapi.config import ConfigError, Settings
from faceapi.domain.policies import (
    DEFAULT_DECISION_RETENTION_DAYS,
    KNOWN_ATTRIBUTES,
    HumanReview,
    InvalidPolicyBinding,
    LivenessRule,
    Lockout,
    Operation,
    Policy,
    PolicyError,
    PolicySet,
    QualityGate,
    ReviewMode,
    TemplateScoring,
    check_binding,
    policy_problems,
)

_NAME = validate.Regexp(r"^[a-z][a-z0-9_]{0,62}$", error="lower-case letters, digits and _")
_PERCENT = validate.Range(min=0, max=100)


def _no_nul(value: str) -> None:
    """A policy's text goes into PostgreSQL (policy_versions.canonical_text, written at
    every start), which takes no NUL: YAML's "\\0" would stop the app at start-up with a
    database error instead of this file's name."""
    if "\x00" in value:
        raise ValidationError("must not hold a NUL character (U+0000)")


class _Strict(Schema):
    class Meta:
        unknown = RAISE  # a misspelt rule must not be silently ignored


class QualitySchema(_Strict):
    min_face_px = fields.Integer(load_default=0, validate=validate.Range(min=0, max=4096))
    max_yaw = fields.Float(load_default=90.0, validate=validate.Range(min=0, max=90))
    max_pitch = fields.Float(load_default=90.0, validate=validate.Range(min=0, max=90))
    max_roll = fields.Float(load_default=180.0, validate=validate.Range(min=0, max=180))
    min_sharpness = fields.Float(load_default=0.0, validate=_PERCENT)
    min_brightness = fields.Float(load_default=0.0, validate=_PERCENT)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> QualityGate:
        return QualityGate(**data)


class HumanReviewSchema(_Strict):
    mode = fields.String(required=True, validate=validate.OneOf([m.value for m in ReviewMode]))
    band = fields.List(fields.Float(validate=_PERCENT), validate=validate.Length(equal=2),
                       load_default=None)
    reviewers = fields.Integer(load_default=1, validate=validate.OneOf([1, 2]))
    max_wait_hours = fields.Float(load_default=72.0,
                                  validate=validate.Range(min=0.01, max=24 * 90))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> HumanReview:
        band = data.get("band")
        return HumanReview(mode=ReviewMode(data["mode"]),
                           band=(band[0], band[1]) if band is not None else None,
                           reviewers=data["reviewers"], max_wait_hours=data["max_wait_hours"])


class LockoutSchema(_Strict):
    # NIST SP 800-63B 5.2.2 allows at most 100 consecutive failed attempts.
    failures = fields.Integer(required=True, validate=validate.Range(min=1, max=100))
    window_minutes = fields.Float(load_default=60.0, validate=validate.Range(min=1))
    base_delay_seconds = fields.Float(load_default=60.0, validate=validate.Range(min=1))
    max_delay_seconds = fields.Float(load_default=3600.0, validate=validate.Range(min=1))

    @validates_schema
    def _delays(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("max_delay_seconds", 3600.0) < data.get("base_delay_seconds", 60.0):
            raise ValidationError("must be >= base_delay_seconds", "max_delay_seconds")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Lockout:
        return Lockout(**data)


class LivenessSchema(_Strict):
    required = fields.Boolean(required=True)
    # Issuer names as in FACEAPI_LIVENESS_ISSUERS (its keys come from there, never here).
    issuers = fields.List(fields.String(validate=[validate.Length(min=1, max=256), _no_nul]),
                          load_default=list, validate=validate.Length(max=16))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> LivenessRule:
        return LivenessRule(required=data["required"], issuers=tuple(data["issuers"]))


class PolicySchema(_Strict):
    """The shape of one policy file; cross-field rules are refused here too."""

    name = fields.String(required=True, validate=_NAME)
    description = fields.String(required=True,
                                validate=[validate.Length(min=1, max=500), _no_nul])
    operation = fields.String(required=True,
                              validate=validate.OneOf([o.value for o in Operation]))
    consequential = fields.Boolean(required=True)
    min_similarity = fields.Float(required=True, validate=_PERCENT)
    min_face_confidence = fields.Float(load_default=90.0, validate=_PERCENT)
    quality = fields.Nested(QualitySchema, load_default=None)
    max_faces = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100))
    max_matches = fields.Integer(load_default=10, validate=validate.Range(min=1, max=4096))
    human_review = fields.Nested(HumanReviewSchema, required=True)
    lockout = fields.Nested(LockoutSchema, load_default=None, allow_none=True)
    retention_days = fields.Integer(load_default=30, validate=validate.Range(min=0, max=3650))
    decision_retention_days = fields.Integer(load_default=DEFAULT_DECISION_RETENTION_DAYS,
                                             validate=validate.Range(min=1, max=3650))
    attributes = fields.List(fields.String(validate=validate.OneOf(KNOWN_ATTRIBUTES)),
                             load_default=["BoundingBox", "Confidence"])
    liveness = fields.Nested(LivenessSchema, load_default=None)
    template_scoring = fields.String(
        load_default=TemplateScoring.BEST_OF.value,
        validate=validate.OneOf([t.value for t in TemplateScoring]))

    @validates_schema
    def _consequential_needs_review(self, data: dict[str, Any], **_: Any) -> None:
        review = data.get("human_review")
        if not isinstance(review, HumanReview):
            return
        if data.get("consequential") and review.mode is not ReviewMode.ALWAYS:
            raise ValidationError("a consequential policy must use `always`",
                                  "human_review.mode")
        if (data.get("consequential") and data.get("operation") == Operation.SEARCH.value
                and review.reviewers < 2):
            raise ValidationError("consequential 1:N search needs 2 reviewers",
                                  "human_review.reviewers")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Policy:
        probe = {**data, "operation": Operation(data["operation"]),
                 "quality": data["quality"] or QualityGate(),
                 "liveness": data["liveness"] or LivenessRule(),
                 "attributes": tuple(data["attributes"]),
                 "template_scoring": TemplateScoring(data["template_scoring"])}
        try:
            return Policy(**probe)
        except PolicyError as exc:
            # policy_problems says "field: message"; surface it as a field error.
            field_name, _sep, message = exc.message.split(": ", 1)[1].partition(": ")
            raise ValidationError(message, field_name) from exc


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {' '.join(messages)}"]
    if isinstance(messages, list):
        return [line for item in messages for line in _flatten(item, prefix)]
    return [f"{prefix}: {messages}"]


def parse_policy(text: str, source: str, expected_name: str | None = None) -> Policy:
    """One policy from YAML text; PolicyError names `source` and the bad field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: expected a mapping of policy fields")
    try:
        policy: Policy = PolicySchema().load(raw)
    except ValidationError as exc:
        lines = _flatten(exc.messages)
        raise PolicyError(f"{source}: {'; '.join(lines)}",
                          details={"file": source, "errors": lines}) from exc
    if expected_name is not None and policy.name != expected_name:
        raise PolicyError(f"{source}: name: must match the file name ({expected_name})",
                          details={"file": source, "errors": ["name: must match file name"]})
    return policy


def read_policy_file(path: Path) -> Policy:
    """The policy in one file, named like the file; PolicyError if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        raise PolicyError(f"{path}: cannot be read ({reason})") from exc
    return parse_policy(text, str(path), path.stem)


def load_policies(directory: Path) -> PolicySet:
    """Every `*.yaml` in `directory`; the first bad file stops the load."""
    if not directory.is_dir():
        raise PolicyError(f"policies directory {directory} not found (FACEAPI_POLICIES_DIR)")
    found: dict[str, Policy] = {}
    for path in sorted(directory.glob("*.yaml")):
        found[path.stem] = read_policy_file(path)
    if not found:
        raise PolicyError(f"no policies (*.yaml) in {directory}")
    return PolicySet(found)


def check_default_binding(settings: Settings, policies: PolicySet) -> tuple[str, ...]:
    """The default collection binding, checked against the loaded policies once at
    start; a bad name stops the start with a ConfigError naming the setting."""
    try:
        return check_binding(settings.default_collection_policies, policies)
    except InvalidPolicyBinding as exc:
        raise ConfigError(f"FACEAPI_DEFAULT_COLLECTION_POLICIES: {exc.message}") from exc


__all__ = ["PolicySchema", "check_default_binding", "load_policies", "parse_policy",
           "policy_problems"]
