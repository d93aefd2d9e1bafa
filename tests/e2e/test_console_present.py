"""The console's plain-words policy rules and its chart geometry (no browser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faceapi.adapters.policy_files import load_policies
from faceapi.entrypoints.web.console.present import age, policy_rules, stacked_bars

pytestmark = pytest.mark.e2e
POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_every_shipped_policy_reads_as_sentences_with_its_numbers() -> None:
    for policy in load_policies(POLICIES).values():
        text = " ".join(policy_rules(policy))
        assert f"{policy.min_similarity:g} out of 100" in text
        assert all(rule.endswith(".") for rule in policy_rules(policy))
        if policy.consequential:
            assert "a human decides" in text
        if policy.human_review.reviewers == 2:
            assert "two different reviewers" in text
        if policy.lockout is not None:
            assert f"After {policy.lockout.failures} failed attempts" in text
        if policy.liveness.required:  # login_liveness
            assert "liveness attestation signed by example-liveness" in text
            assert "does not detect printed photos" in text


def test_ages_read_like_a_person_would_say_them() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert age(now - timedelta(seconds=5), now) == "5 s"
    assert age(now - timedelta(minutes=12), now) == "12 min"
    assert age(now - timedelta(hours=5, minutes=2), now) == "5 h 2 min"
    assert age(now - timedelta(days=2, hours=4), now) == "2 d 4 h"


def test_chart_bars_stack_to_each_days_total_on_a_round_axis() -> None:
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    counts = {"2026-01-01": {"match": 3, "no_match": 1}, "2026-01-03": {"match": 7}}
    chart = stacked_bars(days, counts, ["match", "no_match"])
    assert [value for _, value in chart.ticks] == [0, 5, 10]
    assert len(chart.bars) == 3
    plot_height = chart.height - 24 - 8
    # A day's stacked bars reach as high as its total on the axis scale.
    first_day = [b for b in chart.bars if b.label.startswith("2026-01-01")]
    assert round(chart.base - min(b.y for b in first_day), 1) == round(plot_height * 4 / 10, 1)
    assert sum(b.h for b in first_day) == pytest.approx(plot_height * 4 / 10, abs=0.2)


# Each console page and the API endpoint whose data or action it shows.
MIRRORS = {
    "console.policies": "policies.list_policies",
    "console.reviews": "reviews.list_review_queue",
    "console.review": "reviews.get_review_item",
    "console.review_evidence": "reviews.get_review_evidence",
    "console.review_decide": "reviews.decide_review_item",
    "console.audit": "audit.list_events",
    "console.audit_event": "audit.get_event",
    "console.audit_verify": "audit.verify_chain",
    "console.audit_export": "audit.export_events",
    "console.collections": "collections.list_collections",
    "console.collection": "collections.list_faces",
    "console.subject": "collections.get_subject",
    "console.subject_erase": "collections.erase_collection_subject",
    "console.subject_unlock": "lockouts.unlock_subject",
    "console.calibration": "system.engine_calibration",
    "console.calibration_plot": "system.engine_calibration",
}


def test_every_console_page_opens_for_exactly_the_roles_of_its_api() -> None:
    from faceapi.domain.access import CONSOLE_PAGES, roles_allowed

    for page, endpoint in MIRRORS.items():
        assert CONSOLE_PAGES[page] == roles_allowed(endpoint), page
    # Every console page with a role rule is either mirrored or open to every role.
    unmirrored = {p for p in CONSOLE_PAGES if p not in MIRRORS}
    assert unmirrored == {"console.home", "console.overview"}


def test_candidate_crops_are_found_by_face_id_and_nothing_else_is() -> None:
    from faceapi.entrypoints.web.console.review_pages import candidate_images

    names = ("probe.jpg", "probe_face.jpg", "candidate_f-1.jpg", "candidate_f/2.jpg",
             "other.jpg", "candidate_.jpg")
    assert candidate_images(names) == {"f-1": "candidate_f-1.jpg"}
