"""The console's calibration page, in headless chromium against a real gunicorn: the
plot of the shipped calibration and its measured table, for operators and auditors
only, with the same figures as GET /v1/engine/calibration."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Server, shoot, sign_in

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_operators_and_auditors_see_the_calibration_plot_and_table(
        page: Any, server: Server, role: str) -> None:
    sign_in(page, server.keys[role])
    response = page.goto("/console/calibration")
    assert response is not None
    assert response.status == 200
    status, document = server.api("GET", "/v1/engine/calibration", key=server.keys[role])
    assert status == 200
    # The plot is a real image the browser decoded, not a broken link.
    plot = page.locator("#calibration-plot")
    plot.scroll_into_view_if_needed()
    page.wait_for_function("document.getElementById('calibration-plot').complete")
    assert page.evaluate("document.getElementById('calibration-plot').naturalWidth") > 500
    # The table shows every threshold from 50 to 99, with the API's figures.
    rows = page.locator("#calibration-table tbody tr")
    assert rows.count() == 50
    at = {r["similarity"]: r for r in document["similarity_meaning"]}
    row80 = page.locator("#calibration-table tr[data-threshold='80'] td")
    assert float(row80.nth(2).inner_text()) == pytest.approx(at[80]["measured_fmr"], abs=1e-6)
    assert float(row80.nth(2).inner_text()) <= 1e-3
    assert row80.nth(5).inner_text() == ""  # measured, not extrapolated
    assert page.locator("#calibration-table tr[data-threshold='99'] td").nth(5) \
        .inner_text() == "yes"
    median = float(page.locator("#genuine-median").inner_text())
    assert median == document["genuine_similarity"]["p50"]
    assert median >= 90.0
    if role == "operator":
        shoot(page, "console-calibration")


@pytest.mark.parametrize("role", ["app", "reviewer"])
def test_other_roles_get_neither_the_page_nor_the_plot_nor_the_api(
        page: Any, server: Server, role: str) -> None:
    sign_in(page, server.keys[role])
    for path in ("/console/calibration", "/console/calibration.png"):
        assert page.request.get(server.url + path).status == 403, path
    status, _ = server.api("GET", "/v1/engine/calibration", key=server.keys[role])
    assert status == 403


def test_the_plot_needs_a_session(page: Any, server: Server) -> None:
    response = page.request.get(server.url + "/console/calibration.png", max_redirects=0)
    assert response.status in (302, 303, 403)
    assert response.headers.get("content-type", "") != "image/png"
