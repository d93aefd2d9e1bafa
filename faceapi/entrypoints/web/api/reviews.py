"""The human-review queue: list, read (with evidence images), decide."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from types import SimpleNamespace
from typing import Any

from flask import Response, url_for
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from faceapi.domain.decisions import ReviewStatus, Vote
from faceapi.entrypoints.web.api.deps import current_actor, request_id, use_cases
from faceapi.entrypoints.web.api.idempotency import idempotent
from faceapi.entrypoints.web.api.schemas import StrictSchema
from faceapi.services.review import ReviewQuery, ReviewView, VoteRequest

blp = Blueprint("reviews", __name__, url_prefix="/v1/reviews",
                description="Human review of consequential decisions")

_STATUSES = [s.value for s in ReviewStatus]
MAX_AGE_MINUTES = 10 * 366 * 24 * 60


class ReviewListArgsSchema(Schema):
    status = fields.String(load_default="pending", validate=validate.OneOf([*_STATUSES, "all"]))
    policy = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    # Bounded (ten years) so "now minus this" stays a date: 1e12 overflowed into a 500.
    # Float refuses nan and inf by itself (allow_nan defaults to False).
    older_than_minutes = fields.Float(load_default=None,
                                      validate=validate.Range(min=0, max=MAX_AGE_MINUTES))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    after = fields.String(load_default=None, validate=validate.Length(max=36),
                          metadata={"description": "the last id of the previous page"})


class CandidateSchema(Schema):
    face_id = fields.String()
    subject_id = fields.String()
    similarity = fields.Float()


class VoteSchema(Schema):
    reviewer_key_id = fields.String()
    decision = fields.Function(lambda v: v.vote.value)
    reason = fields.String()
    face_id = fields.String(allow_none=True)
    at = fields.DateTime()


class ReviewSummarySchema(Schema):
    review_id = fields.String(attribute="id")
    decision_id = fields.String()
    kind = fields.Function(lambda r: r.kind.value)
    status = fields.Function(lambda r: r.status.value)
    policy = fields.Function(lambda r: {"name": r.policy_name, "version": r.policy_version})
    collection_id = fields.String(allow_none=True)
    subject_id = fields.String(allow_none=True)
    required_reviewers = fields.Integer()
    requester_key_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    flagged = fields.Boolean()


class ReviewListSchema(Schema):
    reviews = fields.List(fields.Nested(ReviewSummarySchema))
    next_token = fields.String(allow_none=True)


class EvidenceSchema(Schema):
    name = fields.String()
    url = fields.String()


class ReviewDetailSchema(ReviewSummarySchema):
    candidates = fields.List(fields.Nested(CandidateSchema))
    similarity = fields.Float(allow_none=True)
    threshold = fields.Float(allow_none=True)
    reasons = fields.List(fields.String())
    decision_outcome = fields.String(allow_none=True)
    votes_received = fields.Integer()
    votes = fields.List(fields.Nested(VoteSchema), allow_none=True,
                        metadata={"description": "hidden (null) from a reviewer who has not "
                                                 "voted on a pending review"})
    evidence = fields.List(fields.Nested(EvidenceSchema))
    evidence_expires_at = fields.DateTime(allow_none=True)


class DecideRequestSchema(StrictSchema):
    decision = fields.String(required=True, validate=validate.OneOf([v.value for v in Vote]))
    # One line of text: control characters (CR, tab, newline ...) are refused here (422)
    # rather than by the audit trail's checks, and cannot open a cell in a CSV export.
    reason = fields.String(required=True, validate=[
        validate.Length(min=3, max=256),
        validate.Regexp(r"^[^\x00-\x1f\x7f]*\Z", error="one line, no control characters")])
    face_id = fields.String(load_default=None, validate=validate.Length(min=1, max=36),
                            metadata={"description": "search: the candidate confirmed "
                                                     "(default: the top one)"})


def _detail(view: ReviewView) -> SimpleNamespace:
    review, decision = view.review, view.decision
    evidence = [] if review.evidence_purged else [
        {"name": name, "url": url_for("reviews.get_review_evidence", review_id=review.id,
                                      name=name)} for name in review.evidence]
    return SimpleNamespace(**{
        **{f.name: getattr(review, f.name) for f in dataclass_fields(review)},
        "similarity": decision.similarity if decision else None,
        "threshold": decision.threshold if decision else None,
        "reasons": list(decision.reasons) if decision else [],
        "decision_outcome": decision.outcome.value if decision else None,
        "votes_received": len(review.votes),
        "votes": list(review.votes) if view.votes_visible else None,
        "evidence": evidence,
    })


@blp.route("", methods=["GET"])
@blp.arguments(ReviewListArgsSchema, location="query")
@blp.response(200, ReviewListSchema)
def list_review_queue(args: dict[str, Any]) -> Any:
    """List reviews, oldest first (default: pending), by status, policy and age."""
    status = None if args["status"] == "all" else ReviewStatus(args["status"])
    query = ReviewQuery(status=status, policy_name=args["policy"],
                        older_than_minutes=args["older_than_minutes"], limit=args["limit"],
                        after=args["after"])
    found = use_cases().list_reviews(query, actor=current_actor())
    return {"reviews": found,
            "next_token": found[-1].id if len(found) == query.limit else None}


@blp.route("/<string:review_id>", methods=["GET"])
@blp.response(200, ReviewDetailSchema)
def get_review_item(review_id: str) -> Any:
    """Read a review: decision context, candidates, evidence links, votes."""
    view = use_cases().get_review(review_id, actor=current_actor())
    return _detail(view)


@blp.route("/<string:review_id>/evidence/<string:name>", methods=["GET"])
@blp.response(200, description="the evidence image (JPEG)")
def get_review_evidence(review_id: str, name: str) -> Response:
    """Fetch one evidence image of a review (probe or face crop)."""
    data = use_cases().get_evidence(review_id, name, actor=current_actor(),
                                    request_id=request_id())
    response = Response(data, mimetype="image/jpeg")
    # Biometric data: never kept by a browser or a proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.route("/<string:review_id>/decision", methods=["POST"])
@idempotent
@blp.arguments(DecideRequestSchema)
@blp.response(200, ReviewDetailSchema)
def decide_review_item(body: dict[str, Any], review_id: str) -> Any:
    """Confirm or reject a pending review, with a reason (not by the requester)."""
    req = VoteRequest(review_id=review_id, vote=Vote(body["decision"]), reason=body["reason"],
                      face_id=body["face_id"])
    view = use_cases().decide_review(req, actor=current_actor(), request_id=request_id())
    return _detail(view)
