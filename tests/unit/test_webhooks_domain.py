"""The callback rules without a network: URL checks, address checks, the signature a
receiver verifies, the backoff between attempts (faceapi/domain/webhooks.py)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest

from faceapi.config import ConfigError, Settings
from faceapi.domain.webhooks import (
    AddressRules,
    WebhookUrlRefused,
    address_allowed,
    backoff,
    check_url,
    signature_header,
    verify_signature,
)

RULES = AddressRules(hosts=("hooks.example.com", "*.example.org"))


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"decision_id":"d1"}'
    header = signature_header("whsec_abc", 1767225600, body)
    expected = hmac.new(b"whsec_abc", b"1767225600." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1767225600,v1={expected}"
    assert verify_signature("whsec_abc", header, body, now=1767225600 + 299)


@pytest.mark.parametrize(("secret", "body", "now"), [
    ("whsec_other", b'{"decision_id":"d1"}', 1767225600),  # wrong secret
    ("whsec_abc", b'{"decision_id":"d2"}', 1767225600),  # body changed
    ("whsec_abc", b'{"decision_id":"d1"}', 1767225600 + 301),  # replayed too late
])
def test_a_signature_does_not_verify_with_another_secret_body_or_too_late(
        secret: str, body: bytes, now: int) -> None:
    header = signature_header("whsec_abc", 1767225600, b'{"decision_id":"d1"}')
    assert not verify_signature(secret, header, body, now=now)


def test_a_malformed_signature_header_does_not_verify() -> None:
    for header in ("", "t=x,v1=00", "v1=00", "t=1767225600"):
        assert not verify_signature("s", header, b"{}", now=1767225600)


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    waits = [backoff(n, base_seconds=30) for n in range(1, 10)]
    assert waits[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert waits[-1] == timedelta(hours=1)


@pytest.mark.parametrize("address", ["169.254.169.254", "10.0.0.1", "172.16.0.1",
                                     "192.168.1.1", "127.0.0.1", "::1", "fe80::1",
                                     "fd00::1", "0.0.0.0", "224.0.0.1", "100.64.0.1",  # noqa: S104
                                     "::ffff:127.0.0.1", "not-an-ip"])
def test_non_public_addresses_are_refused_unless_a_network_allows_them(address: str) -> None:
    assert not address_allowed(address, RULES)


def test_an_allowed_network_admits_its_addresses_only() -> None:
    rules = AddressRules(networks=("10.20.0.0/16",))
    assert address_allowed("10.20.3.4", rules)
    assert not address_allowed("10.21.3.4", rules)
    assert address_allowed("93.184.215.14", rules)


@pytest.mark.parametrize("url", ["https://hooks.example.com/x",
                                 "https://HOOKS.example.com./x?token=1",
                                 "https://a.b.example.org:8443/x"])
def test_allowed_urls_pass(url: str) -> None:
    assert check_url(url, RULES).scheme == "https"


def test_http_is_allowed_only_to_127_0_0_1_with_the_development_setting() -> None:
    dev = AddressRules(hosts=("127.0.0.1", "hooks.example.com"),
                       networks=("127.0.0.1/32",), http_loopback=True)
    assert check_url("http://127.0.0.1:8080/x", dev)
    with pytest.raises(WebhookUrlRefused):
        check_url("http://hooks.example.com/x", dev)
    with pytest.raises(WebhookUrlRefused):
        check_url("http://127.0.0.1:8080/x", AddressRules(hosts=("127.0.0.1",),
                                                          networks=("127.0.0.1/32",)))


def test_no_host_is_allowed_by_default() -> None:
    with pytest.raises(WebhookUrlRefused) as refused:
        check_url("https://hooks.example.com/x", AddressRules())
    assert refused.value.details == {"reason": "host_not_allowed"}


def test_settings_refuse_http_loopback_in_production_and_bad_networks() -> None:
    with pytest.raises(ConfigError):
        Settings(env="production", webhook_allow_http_loopback=True)
    with pytest.raises(ConfigError):
        Settings(webhook_allowed_networks=("10.0.0.0/33",))
    with pytest.raises(ConfigError):
        Settings(webhook_timeout_seconds=10, webhook_lease_seconds=15)
    assert Settings.from_env({"FACEAPI_WEBHOOK_ALLOWED_HOSTS": "a.example.com, *.b.org"}
                             ).webhook_allowed_hosts == ("a.example.com", "*.b.org")


def test_a_url_that_is_not_ascii_is_refused() -> None:
    with pytest.raises(WebhookUrlRefused) as refused:
        check_url("https://hooks.example.com/r\u00e9ception", RULES)
    assert refused.value.details == {"reason": "not_ascii"}
