"""Finding 8 (audit and review APIs): numeric query values out of range. A cursor whose
sequence is 10^29 reached the database as a BIGINT parameter and came back as a 500;
every number the audit and review APIs read from a query is now bounded at the edge,
and a bad one is a 4xx in our error envelope."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import KeyFactory
from tests.security.conftest import Http


def cursor(seq: object, order: str = "newest", raw: str | None = None) -> str:
    text = raw if raw is not None else json.dumps({"s": seq, "o": order})
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def assert_refused(reply_status: int, body: dict[str, object]) -> None:
    assert 400 <= reply_status < 500, body
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] in ("invalid_parameter", "validation_error")
    assert error["request_id"]


@pytest.mark.parametrize("value", [
    cursor(10**29), cursor(2**63), cursor(-1), cursor(True), cursor(1.5), cursor("12"),
    cursor(None, raw='{"s": 1e309, "o": "newest"}'),
    cursor(None, raw='{"s": ' + "9" * 5000 + ', "o": "newest"}')[:200],
    cursor(5, order="oldest"), "not-base64!", "",
], ids=["1e29", "2^63", "negative", "bool", "float", "string", "inf", "5000 digits",
        "other order", "garbage", "empty"])
def test_an_out_of_range_or_malformed_cursor_is_a_4xx_not_a_500(
        http: Http, make_key: KeyFactory, value: str) -> None:
    auditor = make_key("auditor")
    reply = http.get(f"/v1/audit/events?cursor={value}", key=auditor)
    if value == "":
        assert reply.status == 200  # no cursor: the first page
        return
    assert_refused(reply.status, reply.json())


def test_the_largest_sequence_a_bigint_holds_is_a_valid_cursor(
        http: Http, make_key: KeyFactory) -> None:
    reply = http.get(f"/v1/audit/events?cursor={cursor(2**63 - 1)}", key=make_key("auditor"))
    assert reply.status == 200, reply.body[:300]


HUGE = ["1" + "0" * 29, "1e309", "-1", "nan", "inf", "9" * 5000, "1e12"]


@pytest.mark.parametrize("path", [
    "/v1/audit/events?limit={}",
    "/v1/reviews?limit={}",
    "/v1/reviews?older_than_minutes={}",
])
@pytest.mark.parametrize("value", HUGE)
def test_every_numeric_query_value_of_the_audit_and_review_apis_is_bounded(
        http: Http, make_key: KeyFactory, path: str, value: str) -> None:
    role = "auditor" if path.startswith("/v1/audit") else "reviewer"
    reply = http.get(path.format(value), key=make_key(role))
    assert_refused(reply.status, reply.json())


def test_the_console_audit_page_ignores_a_cursor_too_large_for_the_database(
        http: Http, make_key: KeyFactory) -> None:
    from tests.security.test_read_scopes import Console

    assert Console(http, make_key("auditor")).get("/console/audit?after=" + "9" * 30).status \
        == 200
    assert Console(http, make_key("reviewer")).get("/console/reviews?after=" + "9" * 40).status \
        == 200
