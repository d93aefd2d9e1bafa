"""Review queue pages (reviewer): pending items oldest first, an item with the probe
and the candidates side by side, and the confirm/reject form with a required reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Response, abort, flash, g, redirect, render_template, request, url_for

from faceapi.domain.access import OutOfScope, can_use_policy
from faceapi.domain.audit import Action
from faceapi.domain.decisions import (
    Decision,
    OwnerAlreadyVoted,
    ReviewerIsRequester,
    ReviewStatus,
    Vote,
)
from faceapi.domain.errors import FaceApiError, NotFound
from faceapi.entrypoints.web.api.auth import record_refusal
from faceapi.entrypoints.web.api.deps import container, request_id, use_cases
from faceapi.entrypoints.web.console.present import age
from faceapi.entrypoints.web.console.views import bp, policy_set
from faceapi.services import review as reviews

PAGE_SIZE = 50
MAX_REASON = 250  # the audit trail keeps reasons short (no room for pasted data)
# Evidence names the review service writes; anything else is refused before any read.
PROBE_NAMES = (reviews.PROBE, reviews.PROBE_FACE)
# Crops of candidate enrolled faces, when the evidence holds them (only possible where
# enrolled images are kept): `candidate_<face id>.jpg`.
CANDIDATE_RE = re.compile(r"^candidate_([A-Za-z0-9_.\-]{1,128})\.jpg$")


def candidate_images(evidence: tuple[str, ...]) -> dict[str, str]:
    """Face id -> evidence name of its crop, for the candidates that have one."""
    found: dict[str, str] = {}
    for name in evidence:
        match = CANDIDATE_RE.match(name)
        if match:
            found[match.group(1)] = name
    return found


@bp.route("/reviews", methods=["GET"], endpoint="reviews")
def reviews_page() -> Any:
    """The review queue inside the key's scope: pending items, oldest first."""
    policy = request.args.get("policy") or None
    names = [n for n in policy_set() if can_use_policy(g.actor, n)]
    if policy not in names:
        policy = None
    status_raw = request.args.get("status", "pending")
    status = next((s for s in ReviewStatus if s.value == status_raw), ReviewStatus.PENDING)
    after = request.args.get("after") or None
    items = use_cases().list_reviews(
        reviews.ReviewQuery(status=status, policy_name=policy, limit=PAGE_SIZE + 1,
                            after=after), actor=g.actor)
    now = container().clock.now()
    page = items[:PAGE_SIZE]
    rows = [{"review": r, "age": age(r.created_at, now),
             "voted": any(v.reviewer_key_id == g.actor.key_id for v in r.votes)}
            for r in page]
    next_url = (url_for("console.reviews", status=status.value, policy=policy or "",
                        after=page[-1].id) if len(items) > PAGE_SIZE else None)
    return render_template("reviews.html", title="Review queue", rows=rows, policy=policy,
                           policy_names=names, status=status.value,
                           statuses=[s.value for s in ReviewStatus], next_url=next_url)


@bp.route("/reviews/<review_id>", methods=["GET"])
def review(review_id: str) -> Any:
    """One review item: probe and candidates side by side, the decision's facts, and
    the form. Other reviewers' votes stay hidden until this reviewer has decided."""
    view = use_cases().get_review(review_id[:64], actor=g.actor)
    item = view.review
    policy = policy_set().get(item.policy_name)
    now = container().clock.now()
    mine = next((v for v in item.votes if v.reviewer_key_id == g.actor.key_id), None)
    can_vote = (item.pending and mine is None and item.requester_key_id != g.actor.key_id)
    scores = _decision_scores(view.decision)
    return render_template(
        "review.html", title="Review", item=item, decision=view.decision, policy=policy,
        votes_visible=view.votes_visible, mine=mine, can_vote=can_vote,
        requested_by_me=item.requester_key_id == g.actor.key_id,
        age=age(item.created_at, now), evidence=[n for n in PROBE_NAMES if n in item.evidence]
        if not item.evidence_purged else [],
        candidate_images={} if item.evidence_purged else candidate_images(item.evidence),
        max_reason=MAX_REASON, face_confidence=scores.get("face_confidence"))


def _decision_scores(decision: Decision | None) -> Mapping[str, Any]:
    """The scores recorded with the decision (the probe's detector confidence is one),
    read from its own audit event: the decision row does not keep them."""
    if decision is None or decision.audit_event_id is None:
        return {}
    try:
        record = use_cases().get_audit_event(decision.audit_event_id, reader=g.actor)
    except NotFound:
        return {}
    return record.event.scores


@bp.route("/reviews/<review_id>/evidence/<name>", methods=["GET"])
def review_evidence(review_id: str, name: str) -> Any:
    """An evidence image of a review, for reviewers, while it is retained."""
    if name not in PROBE_NAMES and not CANDIDATE_RE.match(name):
        abort(404)
    data = use_cases().get_evidence(review_id[:64], name, actor=g.actor)
    response = Response(data, mimetype="image/jpeg")
    # A face image: never cached anywhere, never shown outside the console.
    response.headers["Content-Disposition"] = "inline"
    return response


@bp.route("/reviews/<review_id>/decision", methods=["POST"])
def review_decide(review_id: str) -> Any:
    """Record this reviewer's confirm or reject, with the required reason."""
    choice = request.form.get("decision", "")
    reason = " ".join((request.form.get("reason") or "").split())
    face_id = request.form.get("face_id") or None
    target = url_for("console.review", review_id=review_id)
    vote = next((v for v in Vote if v.value == choice), None)
    if vote is None:
        flash("Choose confirm or reject.", "error")
        return redirect(target)
    if not reason:
        flash("A reason is required for every decision.", "error")
        return redirect(target)
    if len(reason) > MAX_REASON:
        flash(f"Keep the reason under {MAX_REASON} characters.", "error")
        return redirect(target)
    try:
        view = use_cases().decide_review(
            reviews.VoteRequest(review_id=review_id[:64], vote=vote, reason=reason,
                                face_id=face_id if vote is Vote.CONFIRM else None),
            actor=g.actor, request_id=request_id() or None)
    except OutOfScope:
        raise  # a 404 like a missing review, audited by the console's error handler
    except (ReviewerIsRequester, OwnerAlreadyVoted) as exc:
        # A way around the two-person rule: audited here as the API's hook does there.
        record_refusal(Action.AUTHZ_DENY, "denied", g.actor, "console.review_decide",
                       reason=exc.code, details={"channel": "console"})
        flash(exc.message, "error")
        return redirect(target)
    except FaceApiError as exc:
        flash(exc.message, "error")
        return redirect(target)
    if view.review.pending:
        flash("Your decision is recorded; the item waits for a second reviewer.", "ok")
    else:
        outcome = view.decision.outcome.value if view.decision is not None else "closed"
        flash(f"Review closed: the decision is now {outcome}.", "ok")
    return redirect(target)
