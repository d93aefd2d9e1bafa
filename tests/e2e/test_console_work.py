"""The console's work, end to end: reviews decided in the browser reach the API's
decisions, the audit trail is filtered and exported, a subject is erased. The data
comes from the real server running the real local engine on real face images."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server, image_body, shoot, sign_in

pytestmark = pytest.mark.e2e


def ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_collection(server: Server) -> str:
    collection_id = ref("e2e")
    status, body = server.api("POST", "/v1/collections", key=server.keys["operator"],
                              body={"collection_id": collection_id,
                                    "description": "console end-to-end test",
                                    "policies": ["login", "identity_check", "watchlist_search"]})
    assert status in (200, 201), body
    return collection_id


def enroll(server: Server, collection_id: str, subject_id: str, images: list[Path]) -> Path:
    """Index the first image that yields a face; returns it."""
    answer: Any = None
    for path in images:
        status, body = server.api(
            "POST", f"/v1/collections/{collection_id}/faces", key=server.keys["operator"],
            body={"subject_id": subject_id, "image": image_body(path),
                  "consent": {"basis": "explicit_consent", "reference": "e2e-form-1"}})
        if status == 200 and body.get("FaceRecords"):
            return path
        answer = (status, body)
    raise AssertionError(f"none of {len(images)} images could be enrolled; last: {answer}")


def pending(server: Server, method: str, path: str, images: list[Path],
            **fields: Any) -> dict[str, Any]:
    """The decision of the first image the policy sends to review."""
    last: Any = None
    for image in images:
        status, body = server.api(method, path, key=server.keys["app"],
                                  body={**fields, "image": image_body(image)})
        decision = body.get("decision", body) if isinstance(body, dict) else None
        if status == 200 and decision and decision.get("outcome") == "pending_review":
            return dict(decision)
        last = (status, body)
    raise AssertionError(f"no image went to review; last answer {last}")


def identity_with(faces: dict[str, list[Path]], n: int) -> tuple[str, list[Path]]:
    for name, paths in sorted(faces.items(), key=lambda kv: -len(kv[1])):
        if len(paths) >= n:
            return name, paths
    pytest.skip(f"no identity with {n} images")


def decision_of(server: Server, decision_id: str) -> dict[str, Any]:
    status, body = server.api("GET", f"/v1/decisions/{decision_id}", key=server.keys["app"])
    assert status == 200, body
    return dict(body)


def test_a_reviewer_works_a_review_to_its_end_and_the_app_sees_the_decision(
        new_page: Any, server: Server, faces: dict[str, list[Path]]) -> None:
    _, paths = identity_with(faces, 3)
    collection_id = make_collection(server)
    subject_id = ref("subject")
    enrolled = enroll(server, collection_id, subject_id, paths)
    decision = pending(server, "POST", "/v1/verify", [p for p in paths if p != enrolled],
                       collection_id=collection_id, subject_id=subject_id,
                       policy="identity_check")
    before = decision_of(server, decision["decision_id"])
    assert before["outcome"] == "pending_review"
    assert before["final"] is False

    tab = new_page()
    sign_in(tab, server.keys["reviewer"])
    tab.goto("/console/reviews")
    row = tab.locator(f"tr[data-review='{decision['review_id']}']")
    assert row.is_visible()
    assert "identity_check" in row.inner_text()
    shoot(tab, "console-reviews")
    with tab.expect_navigation():
        row.get_by_role("link").click()

    # The probe (whole image and face crop) comes from the evidence route and loads.
    images = tab.locator("img[data-evidence]")
    assert images.count() >= 1
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
    assert tab.locator(".candidate").count() >= 1
    assert tab.locator("#fact-threshold").inner_text() == "80"
    assert re.fullmatch(r"\d+\.\d", tab.locator("#fact-similarity").inner_text())
    assert "Detector confidence" in tab.locator("#fact-quality").inner_text()
    shoot(tab, "console-review-item")
    # For the docs: the same page with the face images blurred.
    tab.evaluate("document.querySelectorAll('img[data-evidence]')"
                 ".forEach(i => { i.style.filter = 'blur(14px)'; })")
    shoot(tab, "console-review-item-blurred")

    # The reason is required: the browser does not send the form without one ...
    tab.get_by_role("button", name="Confirm match").click()
    assert tab.locator("#decide-form").is_visible()
    # ... and neither does the server accept an empty one.
    token = tab.locator("#decide-form input[name=csrf_token]").get_attribute("value")
    tab.request.post(tab.url + "/decision",
                     form={"csrf_token": token or "", "decision": "confirm", "reason": " "})
    assert decision_of(server, decision["decision_id"])["final"] is False

    tab.get_by_label("Reason (required)").fill("Same person: eyes, nose and jaw line agree.")
    with tab.expect_navigation():
        tab.get_by_role("button", name="Confirm match").click()
    assert "now match" in tab.locator(".flash-ok").inner_text()
    assert tab.locator("#review-status").inner_text() == "confirmed"

    after = decision_of(server, decision["decision_id"])
    assert after["outcome"] == "match"
    assert after["final"] is True

    # The overview's chart now has bars for identity_check, drawn as inline SVG.
    tab.goto("/console/overview?policy=identity_check")
    assert tab.locator("#decisions-chart rect").count() >= 1
    assert "reviewed: match" in tab.locator(".legend").inner_text()


def test_two_person_review_hides_the_first_decision_until_the_second_reviewer_decides(
        new_page: Any, server: Server, faces: dict[str, list[Path]]) -> None:
    _, paths = identity_with(faces, 3)
    collection_id = make_collection(server)
    enrolled = enroll(server, collection_id, ref("watched"), paths)
    # The enrolled photo itself surely finds its face; a review follows every hit.
    decision = pending(server, "POST", f"/v1/collections/{collection_id}/search",
                       [enrolled, *[p for p in paths if p != enrolled]],
                       policy="watchlist_search")
    review_url = f"/console/reviews/{decision['review_id']}"

    first = new_page()
    sign_in(first, server.keys["reviewer"])
    first.goto(review_url)
    assert first.locator("#votes-hidden").is_visible()
    first.get_by_label("Reason (required)").fill("Different person: ear shape differs.")
    with first.expect_navigation():
        first.get_by_role("button", name="Reject").click()
    assert "second reviewer" in first.locator(".flash-ok").inner_text()
    assert first.locator(".vote").count() == 1

    second = new_page(390)
    sign_in(second, server.keys["reviewer2"])
    second.goto(review_url)
    # The second reviewer sees that one decision exists, not what it was.
    assert second.locator("#votes-hidden").is_visible()
    assert second.locator(".vote").count() == 0
    assert "Different person" not in second.content()
    shoot(second, "console-review-second-reviewer")
    # Decided from the keyboard alone: type the reason, Tab past Confirm to Reject, Enter.
    second.get_by_label("Reason (required)").focus()
    second.keyboard.type("Not the same person: chin and brows differ.")
    second.keyboard.press("Tab")
    second.keyboard.press("Tab")
    assert second.evaluate("document.activeElement.id") == "reject"
    with second.expect_navigation():
        second.keyboard.press("Enter")
    # Now both decisions show, and the decision is final for the app.
    assert second.locator(".vote").count() == 2
    assert "Different person" in second.content()
    after = decision_of(server, decision["decision_id"])
    assert after["final"] is True
    assert after["outcome"] == "no_match"


def test_an_auditor_filters_verifies_and_exports_the_audit_trail(
        page: Any, server: Server) -> None:
    # Make known events: refused requests are audited as auth.fail (enough for 2 pages).
    for _ in range(55):
        server.api("GET", "/v1/policies", key="fa_Nope1234_" + "x" * 40)
    traced = uuid.uuid4().hex
    server.api("GET", "/v1/policies", key="fa_Nope1234_" + "y" * 40,
               headers={"X-Request-ID": traced})
    sign_in(page, server.keys["auditor"])
    page.goto("/console/audit")
    shoot(page, "console-audit")

    # One request id finds exactly that request's event.
    page.get_by_label("Request id").fill(traced)
    with page.expect_navigation():
        page.get_by_role("button", name="Apply filters").click()
    assert page.locator("#events tbody tr[data-seq]").count() == 1
    assert traced in page.locator("#events").inner_text()

    # A time window after now holds nothing; one that started an hour ago holds events.
    page.goto("/console/audit")
    page.get_by_label("From (UTC)").fill("2099-01-01T00:00")
    with page.expect_navigation():
        page.get_by_role("button", name="Apply filters").click()
    assert page.locator("#events tbody tr[data-seq]").count() == 0
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page.get_by_label("From (UTC)").fill(hour_ago)
    with page.expect_navigation():
        page.get_by_role("button", name="Apply filters").click()
    assert page.locator("#events tbody tr[data-seq]").count() > 0
    page.goto("/console/audit")
    page.get_by_label("Action").select_option("auth.fail")
    with page.expect_navigation():
        page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("#events tbody tr[data-seq]")
    assert rows.count() >= 3
    actions = {rows.nth(i).get_attribute("data-action") for i in range(rows.count())}
    assert actions == {"auth.fail"}

    # 50 a page, newest first; the next page continues with older events, same filter.
    assert rows.count() == 50
    first_page = [int(rows.nth(i).get_attribute("data-seq") or 0) for i in range(50)]
    assert first_page == sorted(first_page, reverse=True)
    with page.expect_navigation():
        page.locator("#next-page").click()
    older = page.locator("#events tbody tr[data-seq]")
    assert older.count() >= 5
    assert max(int(older.nth(i).get_attribute("data-seq") or 0)
               for i in range(older.count())) < min(first_page)
    assert {older.nth(i).get_attribute("data-action")
            for i in range(older.count())} == {"auth.fail"}
    page.go_back()

    # Event detail shows the hash chain fields.
    with page.expect_navigation():
        rows.first.get_by_role("link").click()
    assert re.search(r"[0-9a-f]{64}", page.locator("#event-facts").inner_text())
    shoot(page, "console-audit-event")
    page.go_back()

    # Export of the filtered set, JSONL and CSV: only the filtered events, with hashes.
    with page.expect_download() as jsonl_info:
        page.locator("#export-jsonl").click()
    lines = [json.loads(line) for line in
             Path(jsonl_info.value.path()).read_text().splitlines() if line.strip()]
    events = [line for line in lines if "action" in line and "hash" in line]
    assert len(events) >= 3
    assert {e["action"] for e in events} == {"auth.fail"}
    with page.expect_download() as csv_info:
        page.locator("#export-csv").click()
    table = list(csv.DictReader(io.StringIO(Path(csv_info.value.path()).read_text())))
    event_rows = [r for r in table if r.get("action")]
    assert {r["action"] for r in event_rows} == {"auth.fail"}

    # Verify the chain: the result shows, and the check itself is now in the trail.
    with page.expect_navigation():
        page.get_by_role("button", name="Verify chain").click()
    assert "Chain verified" in page.locator(".flash-ok").inner_text()
    page.goto("/console/audit?action=audit.export")
    assert page.locator("#events tbody tr[data-seq]").count() >= 2
    page.goto("/console/overview")
    assert "ok" in page.locator("#stat-verify").inner_text()
    shoot(page, "console-overview")


def test_an_operator_erases_a_subject_after_typing_its_id(
        page: Any, server: Server, faces: dict[str, list[Path]]) -> None:
    _, paths = identity_with(faces, 2)
    collection_id = make_collection(server)
    subject_id = ref("leaver")
    enroll(server, collection_id, subject_id, paths)
    sign_in(page, server.keys["operator"])
    page.goto("/console/collections")
    assert page.locator(f"tr[data-collection='{collection_id}']").is_visible()
    shoot(page, "console-collections")
    with page.expect_navigation():
        page.get_by_role("link", name=collection_id).click()
    shoot(page, "console-collection")
    with page.expect_navigation():
        page.get_by_role("link", name=subject_id).click()
    assert page.locator(".face").count() >= 1
    # No thumbnails: enrollment keeps no images, and the page says so.
    assert page.locator(".face img").count() == 0
    shoot(page, "console-subject")

    # A wrong confirmation erases nothing.
    page.get_by_label(re.compile("Type the subject id")).fill("someone-else")
    with page.expect_navigation():
        page.get_by_role("button", name="Erase subject").click()
    assert "exactly" in page.locator(".flash-error").inner_text()
    status, _ = server.api("GET", f"/v1/collections/{collection_id}/subjects/{subject_id}",
                           key=server.keys["operator"])
    assert status == 200

    page.get_by_label(re.compile("Type the subject id")).fill(subject_id)
    with page.expect_navigation():
        page.get_by_role("button", name="Erase subject").click()
    assert "erased" in page.locator(".flash-ok").inner_text()
    assert page.locator(f"tr[data-subject='{subject_id}']").count() == 0
    status, _ = server.api("GET", f"/v1/collections/{collection_id}/subjects/{subject_id}",
                           key=server.keys["operator"])
    assert status == 404
    # The erasure is in the audit trail, by the operator's key.
    status, body = server.api(
        "GET", f"/v1/audit/events?action=subject.erase&subject_id={subject_id}",
        key=server.keys["auditor"])
    assert status == 200, body
    assert "subject.erase" in json.dumps(body)


def test_an_operator_unlocks_a_subject_locked_out_by_failed_logins(
        page: Any, server: Server, faces: dict[str, list[Path]]) -> None:
    name, paths = identity_with(faces, 2)
    collection_id = make_collection(server)
    subject_id = ref("locked")
    enroll(server, collection_id, subject_id, paths)
    impostors = [p for other, ps in sorted(faces.items()) if other != name for p in ps]
    body_base = {"collection_id": collection_id, "subject_id": subject_id, "policy": "login"}
    locked = False
    # Repeated no_match results count too: cycle through the impostors.
    for image in itertools.islice(itertools.cycle(impostors), 40):
        status, _ = server.api("POST", "/v1/verify", key=server.keys["app"],
                               body={**body_base, "image": image_body(image)})
        if status == 423:
            locked = True
            break
    assert locked, "five failed logins did not lock the subject"

    sign_in(page, server.keys["operator"])
    page.goto(f"/console/collections/{collection_id}/subjects/{subject_id}")
    lock = page.locator(".lock[data-policy=login]")
    assert "locked" in lock.inner_text()
    with page.expect_navigation():
        lock.get_by_role("button", name="Unlock for login").click()
    assert "Unlocked" in page.locator(".flash-ok").inner_text()
    assert page.locator("#no-lock").is_visible()
    status, _ = server.api("POST", "/v1/verify", key=server.keys["app"],
                           body={**body_base, "image": image_body(impostors[0])})
    assert status == 200
