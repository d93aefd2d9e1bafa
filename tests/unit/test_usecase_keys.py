"""Use case: API keys (services/keys.py): create, authenticate, revoke, on fakes."""

from __future__ import annotations

import pytest

from faceapi.domain.errors import FaceApiError
from faceapi.services.keys import (
    AuthenticationFailed,
    NewKey,
    authenticate,
    create_key,
    revoke_key,
)
from tests.unit.usecase_world import ADMIN, World


def test_a_created_key_authenticates_and_only_its_hash_is_stored() -> None:
    w = World()
    created = create_key(NewKey(name="app", role="app", owner="team"), uow=w.store.uow(),
                         clock=w.clock, actor=ADMIN)
    stored = w.store.state.api_keys[created.key.id]
    assert created.secret not in repr(stored)
    assert stored.key_hash != created.secret
    actor = authenticate(created.secret, read_uow=w.store.uow, write_uow=w.store.uow,
                         clock=w.clock)
    assert (actor.role, actor.key_id) == ("app", created.key.id)
    assert w.store.state.api_keys[created.key.id].last_used_at == w.clock.now()
    assert w.store.actions == ["key.create"]  # the last-use time is not an event


def test_a_revoked_key_no_longer_authenticates() -> None:
    w = World()
    created = create_key(NewKey(name="app", role="app", owner="team"), uow=w.store.uow(),
                         clock=w.clock, actor=ADMIN)
    revoke_key(created.key.id, uow=w.store.uow(), clock=w.clock, actor=ADMIN)
    with pytest.raises(AuthenticationFailed):
        authenticate(created.secret, read_uow=w.store.uow, write_uow=w.store.uow,
                     clock=w.clock)
    assert w.store.actions == ["key.create", "key.revoke"]


def test_a_wrong_secret_for_a_real_key_id_is_refused() -> None:
    w = World()
    created = create_key(NewKey(name="app", role="app", owner="team"), uow=w.store.uow(),
                         clock=w.clock, actor=ADMIN)
    forged = created.secret[:-4] + ("AAAA" if not created.secret.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationFailed):
        authenticate(forged, read_uow=w.store.uow, write_uow=w.store.uow, clock=w.clock)


def test_the_last_unscoped_admin_key_cannot_be_revoked_and_the_refusal_is_audited() -> None:
    w = World()
    admin = create_key(NewKey(name="root", role="admin", owner="ops"), uow=w.store.uow(),
                       clock=w.clock, actor=ADMIN)
    with pytest.raises(FaceApiError) as refused:
        revoke_key(admin.key.id, uow=w.store.uow(), clock=w.clock, actor=ADMIN)
    assert refused.value.code == "conflict"
    assert w.store.state.api_keys[admin.key.id].revoked_at is None
    assert [r.event.outcome for r in w.store.audit.committed] == ["created", "refused"]
