"""The permission table's shape and the object-level scope helpers."""

from __future__ import annotations

import pytest

from faceapi.domain import access
from faceapi.domain.access import Actor, Forbidden, OutOfScope
from faceapi.domain.audit import ANONYMOUS, SYSTEM
from faceapi.domain.audit import Actor as AuditActor
from faceapi.domain.errors import NotFound


def test_every_rule_names_only_known_roles() -> None:
    for endpoint, rule in access.PERMISSIONS.items():
        # Flask endpoint names are blueprint.view (the app's own static route aside).
        assert "." in endpoint or endpoint == "static", endpoint
        roles = rule.roles if isinstance(rule, access.ConsolePage) else rule
        if isinstance(roles, frozenset):
            assert roles, f"{endpoint}: an empty role set; remove it or mark it"
            assert roles <= access.ALL_ROLES, endpoint


def test_only_probes_docs_and_the_spec_are_public() -> None:
    public = {e for e, r in access.PERMISSIONS.items() if r is access.Access.PUBLIC}
    assert public <= {"system.healthz", "system.readyz", "system.docs_page",
                      "api-docs.openapi_json", "static"}


def test_an_unknown_endpoint_has_no_rule_and_no_roles() -> None:
    assert access.rule_for("nobody.added_this") is None
    assert access.rule_for(None) is None
    assert access.roles_allowed("nobody.added_this") == frozenset()


def test_the_console_view_of_the_table_is_derived_from_it() -> None:
    for endpoint, roles in access.CONSOLE_PAGES.items():
        rule = access.PERMISSIONS[endpoint]
        assert isinstance(rule, access.ConsolePage)
        assert rule.roles == roles


def test_the_access_actor_is_an_audit_actor_with_the_same_identity() -> None:
    actor = Actor(role="app", key_id="Abcd1234", collections=frozenset({"a"}))
    assert isinstance(actor, AuditActor)
    assert actor.audit_actor() == AuditActor(role="app", key_id="Abcd1234")


def test_an_unscoped_key_reaches_every_collection_and_policy() -> None:
    actor = Actor(role="operator", key_id="Abcd1234")
    access.require_collection_access(actor, "anything")
    access.require_policy_access(actor, "login")
    assert access.collection_filter(actor) is None


def test_out_of_scope_collections_look_exactly_like_missing_ones() -> None:
    actor = Actor(role="app", key_id="Abcd1234", collections=frozenset({"a"}))
    access.require_collection_access(actor, "a")
    with pytest.raises(OutOfScope) as info:
        access.require_collection_access(actor, "b")
    assert isinstance(info.value, NotFound)
    assert info.value.code == "not_found"
    assert info.value.message == access.collection_not_found_message("b")
    assert access.collection_filter(actor) == frozenset({"a"})


def test_policies_outside_the_scope_are_forbidden() -> None:
    actor = Actor(role="app", key_id="Abcd1234", policies=frozenset({"login"}))
    access.require_policy_access(actor, "login")
    with pytest.raises(Forbidden):
        access.require_policy_access(actor, "watchlist_search")


def test_the_anonymous_actor_reaches_nothing_and_jobs_reach_everything() -> None:
    with pytest.raises(OutOfScope):
        access.require_collection_access(ANONYMOUS, "a")
    with pytest.raises(Forbidden):
        access.require_policy_access(ANONYMOUS, "login")
    access.require_collection_access(SYSTEM, "a")
    access.require_policy_access(SYSTEM, "login")


def test_require_role() -> None:
    access.require_role(Actor(role="operator", key_id="k"), {"operator", "admin"})
    with pytest.raises(Forbidden):
        access.require_role(Actor(role="app", key_id="k"), {"operator", "admin"})
