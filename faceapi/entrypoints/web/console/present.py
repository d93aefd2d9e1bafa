"""Plain-words renderings for people: policies as sentences, ages, outcome labels.

Presentation only (no Flask): the same text serves the pages and their tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from faceapi.domain.policies import Operation, Policy, ReviewMode

_OPERATION_WORDS = {
    Operation.VERIFY: "Checks one selfie against the enrolled faces of the subject the "
                      "caller claims (1:1).",
    Operation.SEARCH: "Searches a whole collection for the face in an image (1:N).",
    Operation.COMPARE: "Compares the faces in two images (1:1).",
}


def _num(value: float) -> str:
    return f"{value:g}"


def policy_rules(policy: Policy) -> list[str]:
    """Each rule of a policy as one sentence a reviewer or auditor can read."""
    rules = [_OPERATION_WORDS[policy.operation]]
    rules.append("Consequential: the outcome affects the person, so a human decides."
                 if policy.consequential else
                 "Not consequential: the service may decide on its own.")
    rules.append(f"A match needs a similarity of at least {_num(policy.min_similarity)} "
                 "out of 100.")
    rules.append(f"A face counts only if the detector is at least "
                 f"{_num(policy.min_face_confidence)}% confident of it.")
    gate = policy.quality
    quality = []
    if gate.min_face_px:
        quality.append(f"at least {gate.min_face_px} px wide and high")
    # The QualityGate defaults (90°, 90°, 180°, 0) mean "no limit": say nothing of them.
    if (gate.max_yaw, gate.max_pitch, gate.max_roll) != (90.0, 90.0, 180.0):
        quality.append(f"turned at most {_num(gate.max_yaw)}° sideways, "
                       f"{_num(gate.max_pitch)}° up or down and tilted "
                       f"{_num(gate.max_roll)}°")
    if gate.min_sharpness:
        quality.append(f"sharpness at least {_num(gate.min_sharpness)}")
    if gate.min_brightness:
        quality.append(f"brightness at least {_num(gate.min_brightness)}")
    if quality:
        rules.append("The face must be " + ", ".join(quality) + "; otherwise the request "
                     "is rejected before any comparison.")
    else:
        rules.append("No size, pose or image-quality limits beyond finding the face.")
    if policy.operation is Operation.VERIFY:
        rules.append("The image must show exactly one face.")
    elif policy.max_faces == 1:
        rules.append("The image may show one face only.")
    else:
        rules.append(f"The image may show up to {policy.max_faces} "
                     f"face{'s' if policy.max_faces != 1 else ''}.")
    if policy.operation is Operation.SEARCH:
        rules.append(f"At most {policy.max_matches} candidates are returned.")
    review = policy.human_review
    people = "two different reviewers, who must agree" if review.reviewers >= 2 \
        else "one reviewer"
    if review.mode is ReviewMode.ALWAYS:
        rules.append(f"Every result with a usable face is decided by {people}; "
                     "the caller sees pending_review until then.")
    elif review.mode is ReviewMode.BAND and review.band is not None:
        low, high = review.band
        rules.append(f"Scores from {_num(low)} up to (not including) {_num(high)} are "
                     f"decided by {people}; other scores are decided automatically.")
    else:
        rules.append("No human review: the answer is final at once.")
    if review.mode is not ReviewMode.NEVER:
        rules.append(f"A review still waiting after {_num(review.max_wait_hours)} hours "
                     "expires as rejected.")
    if policy.lockout is not None:
        lock = policy.lockout
        rules.append(f"After {lock.failures} failed attempts in a row within "
                     f"{_num(lock.window_minutes)} minutes the subject is locked for "
                     f"{_num(lock.base_delay_seconds)} seconds; each further lock doubles "
                     f"that, up to {_num(lock.max_delay_seconds)} seconds.")
    else:
        rules.append("No lockout after failed attempts.")
    if policy.liveness.required:
        rules.append("The request must carry a fresh, unused liveness attestation signed by "
                     f"{' or '.join(policy.liveness.issuers)}; without one it is rejected. "
                     "faceapi itself does not detect printed photos, screens or masks.")
    if policy.retention_days:
        rules.append(f"Review evidence (the submitted image and its face crop) is kept "
                     f"{policy.retention_days} days after the review ends, then deleted.")
    else:
        rules.append("No review evidence is kept.")
    rules.append("Face attributes returned: " + ", ".join(policy.attributes) + ".")
    return rules


def age(since: datetime, now: datetime) -> str:
    """'3 min', '5 h 2 min', '2 d 4 h': how long an item has waited."""
    seconds = max(0, int((now - since).total_seconds()))
    delta = timedelta(seconds=seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{delta.days} d {delta.seconds // 3600} h"


# Outcome colours for the overview chart (colour-blind-safe Okabe-Ito palette).
OUTCOME_COLOURS = {
    "match": "#009E73", "no_match": "#D55E00", "rejected": "#CC79A7",
    "pending_review": "#E69F00", "reviewed: match": "#56B4E9",
    "reviewed: no_match": "#0072B2", "reviewed: rejected": "#999999",
}
_FALLBACK_COLOURS = ("#F0E442", "#000000", "#7F7F7F")


def outcome_colour(outcome: str, index: int) -> str:
    return OUTCOME_COLOURS.get(outcome, _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)])


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    fill: str
    label: str


@dataclass(frozen=True)
class Chart:
    """A stacked bar chart's geometry in SVG user units, ready for the template."""

    width: int
    height: int
    left: int
    base: int
    bars: list[Bar]
    ticks: list[tuple[float, int]]  # (y, value)
    labels: list[tuple[float, str]]  # (x, text)
    legend: list[tuple[str, str]]  # (outcome, colour)


def stacked_bars(days: list[str], counts: dict[str, dict[str, int]], outcomes: list[str], *,
                 width: int = 960, height: int = 240) -> Chart:
    """One bar per day, one colour per outcome: the template draws it as inline SVG
    (no script, no library; it prints and scales)."""
    left, bottom, top = 36, 24, 8
    plot_h = height - bottom - top
    peak = max([sum(counts.get(d, {}).values()) for d in days] + [1])
    # A round axis maximum: 1, 2, 5 times a power of ten.
    step = 1
    while step * 10 < peak:
        step *= 10
    axis_max = next(m * step for m in (1, 2, 5, 10) if m * step >= peak)
    slot = (width - left - 4) / max(1, len(days))
    bar_w = max(2.0, slot * 0.7)
    bars: list[Bar] = []
    for i, day in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        y = float(top + plot_h)
        for j, outcome in enumerate(outcomes):
            n = counts.get(day, {}).get(outcome, 0)
            if not n:
                continue
            h = plot_h * n / axis_max
            y -= h
            bars.append(Bar(round(x, 1), round(y, 1), round(bar_w, 1), round(h, 1),
                            outcome_colour(outcome, j), f"{day}: {n} {outcome}"))
    middle = {axis_max // 2} if axis_max % 2 == 0 else set()
    ticks = [(round(top + plot_h - plot_h * v / axis_max, 1), v)
             for v in sorted({0, axis_max, *middle})]
    labels = [(round(left + i * slot + slot / 2, 1), day[5:])
              for i, day in enumerate(days) if len(days) <= 8 or i % 2 == 0]
    return Chart(width=width, height=height, left=left, base=top + plot_h, bars=bars,
                 ticks=ticks, labels=labels,
                 legend=[(o, outcome_colour(o, j)) for j, o in enumerate(outcomes)])
