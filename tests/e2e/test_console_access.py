"""Sign-in, sessions, CSRF and role-dependent pages, in headless chromium against a
real gunicorn server."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import ROLES, Server, shoot, sign_in

pytestmark = pytest.mark.e2e

# Every console page (GET), with the roles that may open it: the same table as the API.
PAGES = {
    "/console/overview": set(ROLES),
    "/console/policies": set(ROLES),
    "/console/audit": {"auditor", "admin"},
    "/console/reviews": {"reviewer"},
    "/console/collections": {"operator", "admin"},
    "/console/calibration": {"operator", "auditor", "admin"},
}
NAV = {"overview": "/console/overview", "policies": "/console/policies",
       "audit": "/console/audit", "reviews": "/console/reviews",
       "collections": "/console/collections", "calibration": "/console/calibration"}


def nav_links(tab: Any) -> set[str]:
    return {tab.locator("nav[aria-label=Main] a").nth(i).get_attribute("data-nav") or ""
            for i in range(tab.locator("nav[aria-label=Main] a").count())}


def test_no_console_page_opens_without_a_session(page: Any, server: Server) -> None:
    for path in [*PAGES, "/console/", "/console/audit/export?format=jsonl",
                 "/console/reviews/any-id", "/console/reviews/any-id/evidence/probe.jpg",
                 "/console/collections/any/subjects/any", "/console/audit/events/any"]:
        response = page.goto(path)
        assert response is not None
        assert urlpath(page.url) == "/console/signin", path
        assert page.get_by_label("API key").is_visible()
    # Forms and downloads without a session are refused too, not redirected into.
    for path in ("/console/audit/verify", "/console/signout"):
        assert page.request.post(server.url + path, form={}).status == 403
    shoot(page, "console-signin")


def api_versions(body: Any) -> dict[str, str]:
    items = body.get("policies", body) if isinstance(body, dict) else body
    return {p["name"]: p["version"] for p in items}


def urlpath(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url).split("?")[0]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_signs_in_and_sees_only_the_pages_it_may_use(
        page: Any, server: Server, role: str) -> None:
    sign_in(page, server.keys[role])
    assert page.locator(f".role[data-role={role}]").is_visible()
    expected = {name for name, path in NAV.items() if role in PAGES[path]}
    assert nav_links(page) == expected
    shoot(page, f"console-home-{role}")
    for path, roles in PAGES.items():
        response = page.goto(path)
        assert response is not None
        if role in roles:
            assert response.status == 200, path
        else:
            assert response.status == 403, path
            assert "403" in page.locator("h1").inner_text()
            if role == "app" and path == "/console/audit":
                shoot(page, "console-forbidden")
    # Links and buttons follow the same rule as the pages.
    page.goto("/console/overview")
    assert (page.locator("a[href='/console/audit']").count() > 0) == ("audit" in expected)
    assert (page.locator("a[href='/console/reviews']").count() > 0) == ("reviews" in expected)
    if "audit" in expected:
        page.goto("/console/audit")
        assert page.get_by_role("button", name="Verify chain").is_visible()
        assert page.locator("#export-jsonl").is_visible()


def test_a_wrong_key_is_refused_with_a_generic_message(page: Any, server: Server) -> None:
    page.goto("/console/signin")
    page.get_by_label("API key").fill("fa_nothere1_" + "x" * 40)
    page.get_by_role("button", name="Sign in").click()
    assert page.locator("#signin-error").inner_text() == "That key was not accepted."
    assert page.locator("#signout").count() == 0


def test_the_session_cookie_is_httponly_samesite_and_scoped_to_the_console(
        page: Any, server: Server) -> None:
    sign_in(page, server.keys["auditor"])
    cookies = [c for c in page.context.cookies() if c["name"] == "faceapi_console"]
    assert len(cookies) == 1
    cookie = cookies[0]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] in ("Lax", "Strict")
    assert cookie["path"] == "/console"
    # The key itself is never in the cookie, only its public id.
    assert server.keys["auditor"] not in cookie["value"]
    assert page.evaluate("document.cookie") == ""


def test_a_form_without_its_csrf_token_is_refused(page: Any, server: Server) -> None:
    sign_in(page, server.keys["auditor"])
    page.goto("/console/audit")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    missing = page.request.post(server.url + "/console/audit/verify", form={})
    assert missing.status == 403
    wrong = page.request.post(server.url + "/console/audit/verify",
                              form={"csrf_token": token[:-2] + "xx"})
    assert wrong.status == 403
    # The same request with the page's token goes through.
    right = page.request.post(server.url + "/console/audit/verify", form={"csrf_token": token})
    assert right.status == 200
    # Removing the hidden field in the page and submitting gives the 403 page.
    page.evaluate("document.querySelectorAll('input[name=csrf_token]')"
                  ".forEach(e => e.remove())")
    page.get_by_role("button", name="Verify chain").click()
    assert "403" in page.locator("h1").inner_text()


def test_sign_in_form_is_csrf_protected_too(page: Any, server: Server) -> None:
    response = page.request.post(server.url + "/console/signin",
                                 form={"api_key": server.keys["auditor"]})
    assert response.status == 403


def test_sign_out_ends_the_session_and_every_copy_of_its_cookie(
        page: Any, new_page: Any, server: Server) -> None:
    sign_in(page, server.keys["operator"])
    copied = page.context.cookies()
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert urlpath(page.url) == "/console/signin"
    page.goto("/console/overview")
    assert urlpath(page.url) == "/console/signin"
    # The cookie as it was before sign-out, replayed from another browser: refused.
    other = new_page()
    other.context.add_cookies(copied)
    other.goto("/console/collections")
    assert urlpath(other.url) == "/console/signin"


def test_sign_in_returns_to_the_page_asked_for_and_never_off_site(
        page: Any, server: Server) -> None:
    page.goto("/console/policies")
    assert urlpath(page.url) == "/console/signin"
    page.get_by_label("API key").fill(server.keys["app"])
    page.get_by_role("button", name="Sign in").click()
    assert urlpath(page.url) == "/console/policies"
    page.get_by_role("button", name="Sign out").click()
    page.goto("/console/signin?next=https://evil.example/")
    page.get_by_label("API key").fill(server.keys["app"])
    page.get_by_role("button", name="Sign in").click()
    assert page.url.startswith(server.url + "/console/")


def test_revoking_a_key_ends_its_console_session(page: Any, server: Server) -> None:
    key = server.create_key("auditor", "e2e revoked later")
    sign_in(page, key)
    page.goto("/console/audit")
    assert urlpath(page.url) == "/console/audit"
    key_id = key.split("_")[1]
    server.cli("keys", "revoke", key_id)
    page.goto("/console/audit")
    assert urlpath(page.url) == "/console/signin"


def test_the_console_works_from_the_keyboard(page: Any, server: Server) -> None:
    page.goto("/console/signin")
    # The key field has the focus on arrival; typing and Enter sign in.
    assert page.evaluate("document.activeElement.id") == "api_key"
    page.keyboard.type(server.keys["auditor"])
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#signout").count() == 1
    page.goto("/console/audit")
    # The first Tab reaches the skip link, which moves the focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.get_by_label("Action").focus()
    page.get_by_label("Action").select_option("auth.fail")
    page.keyboard.press("Tab")
    page.keyboard.type("denied")
    assert page.evaluate("document.activeElement.id") == "f-outcome"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "action=auth.fail" in page.url
    assert "outcome=denied" in page.url


def test_policies_page_shows_rules_in_plain_words_and_versions(
        page: Any, server: Server) -> None:
    sign_in(page, server.keys["app"])
    page.goto("/console/policies")
    status, body = server.api("GET", "/v1/policies", key=server.keys["app"])
    assert status == 200
    for name in ("login", "identity_check", "watchlist_search"):
        section = page.locator(f"[data-policy={name}]")
        assert section.is_visible()
        version = section.locator("code.version").inner_text()
        assert re.fullmatch(r"[0-9a-f]{64}", version)
        # The same version the API reports.
        assert api_versions(body)[name] == version
    text = page.locator("[data-policy=identity_check]").inner_text()
    assert "decided by one reviewer" in text
    shoot(page, "console-policies")
