"""The overview page: decisions per outcome and policy over time (inline SVG), pending
reviews, locked subjects and the last chain verification."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

from flask import render_template, request

from faceapi.domain.access import Actor
from faceapi.domain.audit import Action, AuditQuery
from faceapi.entrypoints.web.api.deps import container, use_cases
from faceapi.entrypoints.web.console.present import stacked_bars
from faceapi.entrypoints.web.console.views import bp, policy_set, principal
from faceapi.services import audit_trail

DAYS = 14
DECISION_ACTIONS = (Action.VERIFY_DECISION.value, Action.SEARCH_DECISION.value,
                    Action.FACE_COMPARE.value, Action.REVIEW_DECISION.value,
                    Action.REVIEW_EXPIRE.value)
REVIEW_ACTIONS = (Action.REVIEW_DECISION, Action.REVIEW_EXPIRE)


def outcome_of(action: Action, outcome: str, details: Any) -> str | None:
    """The decision outcome an event stands for, or None for events that are not one.

    A decision event counts with its own outcome (pending_review included); a review
    that closed counts as "reviewed: <final outcome>"; single votes are not decisions."""
    if action in REVIEW_ACTIONS:
        final = details.get("decision_outcome")
        return f"reviewed: {final}" if isinstance(final, str) else None
    return outcome
# An overview must stay quick however long the trail grows: count at most this many.
MAX_EVENTS = 50_000


Counts = tuple[list[str], dict[str, dict[str, int]], Counter[tuple[str, str]], bool]


def _decision_counts(policy: str | None, who: Actor) -> Counts:
    now = container().clock.now()
    first = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [(first + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(DAYS)]
    per_day: dict[str, dict[str, int]] = defaultdict(dict)
    per_policy: Counter[tuple[str, str]] = Counter()
    after: int | None = None
    seen = 0
    while True:
        query = AuditQuery(since=first, actions=DECISION_ACTIONS, policy_name=policy,
                           newest_first=False, after_seq=after)
        # The reader's scope keeps other collections' and policies' figures out.
        events, after = use_cases().list_audit_events(query, audit_trail.MAX_PAGE,
                                                      reader=who)
        for record in events:
            event = record.event
            # Stateless compares without a policy are analysis, not decisions.
            if event.policy_name is None:
                continue
            outcome = outcome_of(event.action, event.outcome, event.details)
            if outcome is None:
                continue
            day = record.time.strftime("%Y-%m-%d")
            per_day[day][outcome] = per_day[day].get(outcome, 0) + 1
            per_policy[(event.policy_name, outcome)] += 1
        seen += len(events)
        if after is None or seen >= MAX_EVENTS:
            break
    return days, per_day, per_policy, seen >= MAX_EVENTS


def _recent_locks(who: Actor) -> int:
    """Lockouts (lock events) in the chart's window and the key's scope, from the trail."""
    now = container().clock.now()
    events, _ = use_cases().list_audit_events(
        AuditQuery(since=now - timedelta(days=DAYS), actions=(Action.LOCKOUT_LOCK.value,)),
        audit_trail.MAX_PAGE, reader=who)
    return len(events)


def _last_verification(who: Actor) -> Any:
    # A verification names no collection: scoped keys do not see it (access.can_read).
    events, _ = use_cases().list_audit_events(
        AuditQuery(actions=(Action.AUDIT_VERIFY.value,), newest_first=True), 1, reader=who)
    return events[0] if events else None


def _pending_review_count(who: Actor) -> int | None:
    """Pending review items the actor may see, or None for a role that sees none."""
    if who.role not in ("reviewer", "auditor", "admin", "operator"):
        return None
    return use_cases().count_waiting_reviews(actor=who)


@bp.route("/overview", methods=["GET"])
def overview() -> Any:
    """Decisions over time, pending reviews, lockouts, last chain verification: the
    key's collection and policy scope only."""
    who = principal()
    assert who is not None
    policy = request.args.get("policy") or None
    scope = who.policies
    names = [n for n in policy_set() if scope is None or n in scope]
    if policy not in names:
        policy = None
    days, per_day, per_policy, truncated = _decision_counts(policy, who)
    outcomes = sorted({o for counts in per_day.values() for o in counts})
    chart = stacked_bars(days, per_day, outcomes)
    table = sorted(per_policy.items())
    return render_template(
        "overview.html", title="Overview", chart=chart, table=table, days=days,
        policy=policy, policy_names=names, truncated=truncated,
        total=sum(per_policy.values()),
        pending=_pending_review_count(who), locks=_recent_locks(who),
        max_locks=audit_trail.MAX_PAGE,
        last_verify=_last_verification(who))
