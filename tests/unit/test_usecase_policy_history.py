"""Policy texts kept (services/policy_history.py), on fakes: every start that loads a
version not yet recorded records it once with a `policy.load` event, and its canonical
text reads back with a hash that proves it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from faceapi.domain.access import Actor as KeyActor
from faceapi.domain.access import Forbidden
from faceapi.domain.audit import Actor
from faceapi.domain.errors import NotFound
from faceapi.domain.policies import PolicySet, PolicyVersion
from faceapi.services.policy_history import get_version, record_loaded
from tests.unit.usecase_world import World

START = Actor.system("start")
AUDITOR = Actor(role="auditor", key_id="aud1")


def start(w: World, policies: PolicySet | None = None) -> list[PolicyVersion]:
    return record_loaded(policies or w.policies, uow=w.store.uow(), clock=w.clock,
                         actor=START)


def test_the_first_start_records_every_version_with_one_policy_load_event_each() -> None:
    w = World()
    recorded = start(w)
    assert sorted(v.name for v in recorded) == sorted(w.policies)
    events = [e.event for e in w.store.audit.committed]
    assert [e.action.value for e in events] == ["policy.load"] * len(w.policies)
    for version, event in zip(recorded, events, strict=True):
        assert (event.policy_name, event.policy_version) == (version.name, version.version)
        assert hashlib.sha256(version.canonical_text.encode()).hexdigest() == version.version
        assert json.loads(version.canonical_text)["name"] == version.name
    assert [v.audit_event_id for v in recorded] == [e.id for e in w.store.audit.committed]


def test_a_second_start_of_the_same_versions_records_nothing() -> None:
    w = World()
    start(w)
    committed = len(w.store.audit.committed)
    assert start(w) == []
    assert len(w.store.audit.committed) == committed


def test_a_changed_policy_is_a_new_version_kept_beside_the_old_one() -> None:
    w = World()
    start(w)
    old = w.policies["login"]
    changed = replace(old, min_similarity=old.min_similarity + 1)
    w.clock.advance(days=1)
    recorded = start(w, PolicySet({**w.policies, "login": changed}))
    assert [(v.name, v.version) for v in recorded] == [("login", changed.version)]
    assert w.store.actions[-1] == "policy.load"
    with w.store.uow() as uow:
        assert [v.version for v in uow.policy_versions.versions_of("login")] == [
            old.version, changed.version]
    past = get_version("login", old.version, actor=AUDITOR, uow=w.store.uow())
    assert past.intact
    assert json.loads(past.recorded.canonical_text)["min_similarity"] == old.min_similarity


def test_a_version_never_loaded_is_not_found() -> None:
    w = World()
    start(w)
    with pytest.raises(NotFound):
        get_version("login", "0" * 64, actor=AUDITOR, uow=w.store.uow())
    with pytest.raises(NotFound):
        get_version("nosuch", w.policies["login"].version, actor=AUDITOR, uow=w.store.uow())


def test_a_key_limited_to_some_policies_reads_only_their_history() -> None:
    w = World()
    start(w)
    scoped = KeyActor(role="auditor", key_id="aud2", policies=frozenset({"login"}))
    assert get_version("login", w.policies["login"].version, actor=scoped,
                       uow=w.store.uow()).intact
    with pytest.raises(Forbidden):
        get_version("identity_check", w.policies["identity_check"].version, actor=scoped,
                    uow=w.store.uow())


def test_an_altered_stored_text_shows_as_not_intact() -> None:
    w = World()
    start(w)
    key = ("login", w.policies["login"].version)
    stored = w.store.state.policy_versions[key]
    w.store.state.policy_versions[key] = replace(
        stored, canonical_text=stored.canonical_text.replace('"min_similarity":',
                                                             '"min_similarity": '))
    view = get_version(*key, actor=AUDITOR, uow=w.store.uow())
    assert not view.intact
    assert view.text_sha256 != view.recorded.version
