"""API keys and scope rules on fakes: no app, no database."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faceapi.adapters.private_files import PrivateFiles
from faceapi.domain import access
from faceapi.domain.access import ApiKey
from faceapi.domain.audit import API_KEY_RE, SYSTEM, Action
from faceapi.domain.errors import Conflict, InvalidParameter, NotFound
from faceapi.services import keys
from tests.fakes import FakeClock
from tests.fakes_audit import FakeUnitOfWork as AuditUnitOfWork

ADMIN_ACTOR = access.Actor(role="admin", key_id="AdminKey")


@dataclass
class FakeApiKeys:
    rows: dict[str, ApiKey] = field(default_factory=dict)
    touches: int = 0
    sigv4_secrets: dict[str, str] = field(default_factory=dict)

    def add(self, key: ApiKey) -> None:
        assert key.id not in self.rows
        self.rows[key.id] = key

    def get(self, key_id: str) -> ApiKey | None:
        return self.rows.get(key_id)

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        return [k for k in self.rows.values() if include_revoked or k.revoked_at is None]

    def count(self) -> int:
        return len(self.rows)

    def lock(self) -> None:
        return None

    def revoke(self, key_id: str, at: datetime) -> None:
        self.rows[key_id] = replace(self.rows[key_id], revoked_at=at)

    def touch(self, key_id: str, at: datetime) -> None:
        self.touches += 1
        self.rows[key_id] = replace(self.rows[key_id], last_used_at=at)

    def set_sigv4_secret(self, key_id: str, secret: str) -> None:
        self.sigv4_secrets[key_id] = secret

    def sigv4_secret(self, key_id: str) -> str | None:
        return self.sigv4_secrets.get(key_id)


@dataclass
class FakeUnitOfWork(AuditUnitOfWork):
    """The audit fake (validated, hash-chained events) plus a key table whose writes
    are visible at once: what matters here is what was committed."""

    api_keys: FakeApiKeys = field(default_factory=FakeApiKeys)

    def factory(self) -> FakeUnitOfWork:
        return self


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def make(uow: FakeUnitOfWork, clock: FakeClock, role: str = "app",
         **scope: object) -> keys.CreatedKey:
    return keys.create_key(keys.NewKey(name=f"{role} key", role=role, **scope),  # type: ignore[arg-type]
                           uow=uow, clock=clock, actor=ADMIN_ACTOR)


def auth(uow: FakeUnitOfWork, clock: FakeClock, token: str | None) -> access.Actor:
    return keys.authenticate(token, read_uow=uow.factory, write_uow=uow.factory, clock=clock)


def test_generated_keys_have_the_documented_shape_and_are_unique() -> None:
    seen = set()
    for _ in range(200):
        key_id, key = keys.generate_key()
        assert keys.KEY_RE.match(key)
        assert keys.key_id_of(key) == key_id
        # The audit schema's key detector must recognise our keys.
        assert API_KEY_RE.search(key)
        seen.add(key)
    assert len(seen) == 200


def test_a_created_key_is_stored_only_as_its_hash(uow: FakeUnitOfWork, clock: FakeClock) -> None:
    created = make(uow, clock)
    stored = uow.api_keys.rows[created.key.id]
    assert stored.key_hash == keys.hash_key(created.secret)
    assert created.secret not in repr(stored)
    assert created.secret.split("_")[2] not in repr(stored)


def test_creating_a_key_is_audited_without_the_key(uow: FakeUnitOfWork, clock: FakeClock) -> None:
    created = make(uow, clock, "operator", collections=frozenset({"c1"}))
    [event] = [r.event for r in uow.audit.committed]
    assert event.action is Action.KEY_CREATE
    assert event.actor == ADMIN_ACTOR
    assert event.resource == f"keys/{created.key.id}"
    assert created.secret not in repr(event)


def test_a_valid_key_authenticates_as_its_actor_with_scope(uow: FakeUnitOfWork,
                                                           clock: FakeClock) -> None:
    created = make(uow, clock, "app", collections=frozenset({"a"}), policies=frozenset({"login"}))
    actor = auth(uow, clock, created.secret)
    assert (actor.role, actor.key_id) == ("app", created.key.id)
    assert actor.collections == frozenset({"a"})
    assert actor.policies == frozenset({"login"})


@pytest.mark.parametrize(("token", "reason"), [
    (None, "missing_key"),
    ("", "missing_key"),
    ("not-a-key", "malformed_key"),
    ("fa_short_abc", "malformed_key"),
    ("fa_ABCDEFGH_" + "x" * 40, "unknown_key"),
])
def test_bad_tokens_are_refused_with_a_reason(uow: FakeUnitOfWork, clock: FakeClock,
                                              token: str | None, reason: str) -> None:
    make(uow, clock)
    with pytest.raises(keys.AuthenticationFailed) as info:
        auth(uow, clock, token)
    assert info.value.reason == reason
    assert info.value.code == "unauthorized"


def test_the_right_id_with_a_wrong_secret_is_an_unknown_key(uow: FakeUnitOfWork,
                                                            clock: FakeClock) -> None:
    created = make(uow, clock)
    forged = f"fa_{created.key.id}_" + "A" * keys.SECRET_LENGTH
    with pytest.raises(keys.AuthenticationFailed) as info:
        auth(uow, clock, forged)
    assert info.value.reason == "unknown_key"
    assert info.value.role is None  # nothing about the real key is revealed


def test_revoked_and_expired_keys_are_refused(uow: FakeUnitOfWork, clock: FakeClock) -> None:
    revoked = make(uow, clock)
    expiring = make(uow, clock, expires_at=clock.now() + timedelta(hours=1))
    keys.revoke_key(revoked.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    with pytest.raises(keys.AuthenticationFailed) as info:
        auth(uow, clock, revoked.secret)
    assert info.value.reason == "revoked"
    assert auth(uow, clock, expiring.secret).key_id == expiring.key.id
    clock.advance(hours=1)
    with pytest.raises(keys.AuthenticationFailed) as info:
        auth(uow, clock, expiring.secret)
    assert info.value.reason == "expired"


def test_last_used_is_written_at_most_once_a_minute(uow: FakeUnitOfWork, clock: FakeClock) -> None:
    created = make(uow, clock)
    for _ in range(5):
        auth(uow, clock, created.secret)
    assert uow.api_keys.touches == 1
    clock.advance(seconds=61)
    auth(uow, clock, created.secret)
    assert uow.api_keys.touches == 2
    assert uow.api_keys.rows[created.key.id].last_used_at == clock.now()


def test_revoking_is_audited_once_and_unknown_ids_are_not_found(uow: FakeUnitOfWork,
                                                               clock: FakeClock) -> None:
    created = make(uow, clock)
    keys.revoke_key(created.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    keys.revoke_key(created.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    assert [r.event.action for r in uow.audit.committed] == [Action.KEY_CREATE, Action.KEY_REVOKE]
    with pytest.raises(NotFound):
        keys.revoke_key("NoSuchId", uow=uow, clock=clock, actor=ADMIN_ACTOR)


def test_the_last_active_admin_key_is_kept_unless_forced(uow: FakeUnitOfWork,
                                                         clock: FakeClock) -> None:
    first = make(uow, clock, "admin")
    with pytest.raises(Conflict):
        keys.revoke_key(first.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    second = make(uow, clock, "admin")
    keys.revoke_key(first.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    keys.revoke_key(second.key.id, uow=uow, clock=clock, actor=SYSTEM, allow_last_admin=True)
    assert all(k.revoked_at for k in uow.api_keys.rows.values())


@pytest.mark.parametrize("new", [
    keys.NewKey(name="x", role="superuser"),
    keys.NewKey(name="", role="app"),
    keys.NewKey(name="fa_ABCDEFGH_" + "a" * 40, role="app"),
    keys.NewKey(name="ok", role="app", collections=frozenset({"has space"})),
    keys.NewKey(name="ok", role="app", expires_at=datetime(2020, 1, 1, tzinfo=UTC)),
    keys.NewKey(name="ok", role="app", expires_at=datetime(2030, 1, 1)),
])
def test_invalid_new_keys_are_refused(uow: FakeUnitOfWork, clock: FakeClock,
                                      new: keys.NewKey) -> None:
    with pytest.raises(InvalidParameter):
        keys.create_key(new, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    assert uow.api_keys.rows == {}


def test_bootstrap_creates_one_owner_only_admin_key_and_is_idempotent(
        uow: FakeUnitOfWork, clock: FakeClock, tmp_path: Path) -> None:
    result = keys.bootstrap(tmp_path, uow=uow, clock=clock, files=PrivateFiles())
    assert result.created
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    secret = result.path.read_text().strip()
    actor = auth(uow, clock, secret)
    assert actor.role == "admin"
    again = keys.bootstrap(tmp_path, uow=uow, clock=clock, files=PrivateFiles())
    assert not again.created
    assert uow.api_keys.count() == 1
    assert result.path.read_text().strip() == secret


def test_bootstrap_does_nothing_when_any_key_exists(uow: FakeUnitOfWork, clock: FakeClock,
                                                   tmp_path: Path) -> None:
    make(uow, clock, "app")
    assert not keys.bootstrap(tmp_path, uow=uow, clock=clock, files=PrivateFiles()).created
    assert not (tmp_path / keys.BOOTSTRAP_FILE_NAME).exists()


@pytest.mark.parametrize(("text", "delta"), [("90d", timedelta(days=90)),
                                              ("12h", timedelta(hours=12)),
                                              ("30m", timedelta(minutes=30))])
def test_expiry_durations(text: str, delta: timedelta, clock: FakeClock) -> None:
    assert keys.parse_expiry(text, clock.now()) == clock.now() + delta


def test_expiry_dates_default_to_utc(clock: FakeClock) -> None:
    assert keys.parse_expiry("2027-03-01", clock.now()) == datetime(2027, 3, 1, tzinfo=UTC)
    with pytest.raises(InvalidParameter):
        keys.parse_expiry("next tuesday", clock.now())


@pytest.mark.parametrize("text", ["99999999999d", "3000000d", "9999999999999m"])
def test_an_expiry_past_year_9999_is_invalid_not_an_overflow(text: str, clock: FakeClock) -> None:
    with pytest.raises(InvalidParameter):
        keys.parse_expiry(text, clock.now())


def test_scope_lists_split_on_commas() -> None:
    assert keys.split_scope(("a,b", "c")) == frozenset({"a", "b", "c"})
    assert keys.split_scope(()) is None


def test_rotation_makes_a_successor_with_the_same_role_and_scope(uow: FakeUnitOfWork,
                                                                 clock: FakeClock) -> None:
    old = make(uow, clock, "app", collections=frozenset({"shop"}), policies=frozenset({"login"}))
    new = keys.rotate_key(old.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    assert new.key.id != old.key.id
    assert (new.key.role, new.key.name, new.key.collections, new.key.policies) == (
        "app", old.key.name, frozenset({"shop"}), frozenset({"login"}))
    assert auth(uow, clock, old.secret).key_id == old.key.id  # still works until revoked
    assert auth(uow, clock, new.secret).key_id == new.key.id
    assert uow.audit.committed[-1].event.details["rotated_from"] == old.key.id
    keys.revoke_key(old.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    with pytest.raises(Conflict):
        keys.rotate_key(old.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    with pytest.raises(NotFound):
        keys.rotate_key("NoSuchId", uow=uow, clock=clock, actor=ADMIN_ACTOR)


def test_a_scoped_key_cannot_mint_a_key_beyond_its_scope(uow: FakeUnitOfWork,
                                                         clock: FakeClock) -> None:
    scoped_admin = access.Actor(role="admin", key_id="Scoped01", collections=frozenset({"a"}))
    for new in (keys.NewKey(name="wider", role="app"),
                keys.NewKey(name="other", role="app", collections=frozenset({"b"})),
                keys.NewKey(name="more", role="app", collections=frozenset({"a", "b"}))):
        with pytest.raises(access.Forbidden):
            keys.create_key(new, uow=uow, clock=clock, actor=scoped_admin)
    inside = keys.create_key(keys.NewKey(name="inside", role="app",
                                         collections=frozenset({"a"})),
                             uow=uow, clock=clock, actor=scoped_admin)
    assert inside.key.collections == frozenset({"a"})
    unscoped = make(uow, clock, "app")
    # A key beyond the caller's scope answers like a missing one.
    with pytest.raises(access.OutOfScope):
        keys.rotate_key(unscoped.key.id, uow=uow, clock=clock, actor=scoped_admin)


SCOPED_ADMIN = access.Actor(role="admin", key_id="Scoped01", collections=frozenset({"a"}))


def test_a_scoped_admin_lists_reads_and_revokes_only_keys_inside_its_scope(
        uow: FakeUnitOfWork, clock: FakeClock) -> None:
    first = make(uow, clock, "admin")
    unscoped_app = make(uow, clock, "app")
    other = make(uow, clock, "app", collections=frozenset({"b"}))
    policy_only = make(uow, clock, "app", policies=frozenset({"login"}))
    inside = make(uow, clock, "app", collections=frozenset({"a"}))
    listed = keys.list_keys(uow=uow, actor=SCOPED_ADMIN)
    assert [k.id for k in listed] == [inside.key.id]
    for outside in (first, unscoped_app, other, policy_only):
        with pytest.raises(access.OutOfScope) as info:
            keys.get_key(outside.key.id, uow=uow, actor=SCOPED_ADMIN)
        with pytest.raises(access.OutOfScope):
            keys.revoke_key(outside.key.id, uow=uow, clock=clock, actor=SCOPED_ADMIN)
        # Exactly what a missing key answers.
        with pytest.raises(NotFound) as missing:
            keys.get_key("NoSuchId", uow=uow, actor=SCOPED_ADMIN)
        assert info.value.code == missing.value.code
        assert info.value.message == f"API key {outside.key.id!r} not found"
    assert all(k.revoked_at is None for k in uow.api_keys.rows.values())
    assert keys.get_key(inside.key.id, uow=uow, actor=SCOPED_ADMIN).id == inside.key.id
    keys.revoke_key(inside.key.id, uow=uow, clock=clock, actor=SCOPED_ADMIN)
    assert len(keys.list_keys(uow=uow, actor=ADMIN_ACTOR)) == 5


def test_a_policy_scoped_admin_manages_keys_whose_policies_are_within_its_own(
        uow: FakeUnitOfWork, clock: FakeClock) -> None:
    admin = access.Actor(role="admin", key_id="PolAdmin", policies=frozenset({"login", "x"}))
    within = make(uow, clock, "app", collections=frozenset({"c"}), policies=frozenset({"login"}))
    beyond = make(uow, clock, "app", collections=frozenset({"c"}))
    assert [k.id for k in keys.list_keys(uow=uow, actor=admin)] == [within.key.id]
    with pytest.raises(access.OutOfScope):
        keys.get_key(beyond.key.id, uow=uow, actor=admin)


@pytest.mark.parametrize("role", ["reviewer", "admin"])
def test_a_scoped_admin_cannot_create_or_rotate_reviewer_or_admin_keys(
        uow: FakeUnitOfWork, clock: FakeClock, role: str) -> None:
    with pytest.raises(access.Forbidden):
        keys.create_key(keys.NewKey(name="x", role=role, owner="mallory@example.org",
                                    collections=frozenset({"a"})),
                        uow=uow, clock=clock, actor=SCOPED_ADMIN)
    # A reviewer key inside the scope, made by an unscoped admin: rotating it would
    # hand the scoped admin a working reviewer key of someone else.
    existing = make(uow, clock, role, collections=frozenset({"a"}))
    with pytest.raises(access.Forbidden):
        keys.rotate_key(existing.key.id, uow=uow, clock=clock, actor=SCOPED_ADMIN)
    assert len(uow.api_keys.rows) == 1


def test_scoped_admins_do_not_count_as_the_last_unscoped_admin(uow: FakeUnitOfWork,
                                                               clock: FakeClock) -> None:
    first = make(uow, clock, "admin")
    make(uow, clock, "admin", collections=frozenset({"a"}))
    with pytest.raises(Conflict):
        keys.revoke_key(first.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    refused = uow.audit.committed[-1].event
    assert (refused.action, refused.outcome, refused.reason) == (
        Action.KEY_REVOKE, "refused", "last_unscoped_admin")
    assert uow.api_keys.rows[first.key.id].revoked_at is None
    keys.revoke_key(first.key.id, uow=uow, clock=clock, actor=SYSTEM, allow_last_admin=True)
    assert uow.api_keys.rows[first.key.id].revoked_at is not None


def test_a_key_names_its_owner_in_lower_case_and_its_creation_event_records_it(
        uow: FakeUnitOfWork, clock: FakeClock) -> None:
    created = keys.create_key(keys.NewKey(name="billing", role="app",
                                          owner=" System:Billing-App "),
                              uow=uow, clock=clock, actor=ADMIN_ACTOR)
    assert created.key.owner == "system:billing-app"
    assert auth(uow, clock, created.secret).owner == "system:billing-app"
    assert uow.audit.committed[-1].event.details["owner"] == "system:billing-app"
    rotated = keys.rotate_key(created.key.id, uow=uow, clock=clock, actor=ADMIN_ACTOR)
    assert rotated.key.owner == "system:billing-app"
    # Code that makes keys itself without an owner: the name names it, as migrated.
    assert make(uow, clock).key.owner == "app key"


@pytest.mark.parametrize("owner", ["", "  ", "-x", "a\nb", "x" * 129,
                                   "fa_ABCDEFGH_" + "a" * 40])
def test_invalid_owners_are_refused(uow: FakeUnitOfWork, clock: FakeClock, owner: str) -> None:
    with pytest.raises(InvalidParameter):
        keys.create_key(keys.NewKey(name="ok", role="app", owner=owner),
                        uow=uow, clock=clock, actor=ADMIN_ACTOR)
    assert uow.api_keys.rows == {}


def test_the_bootstrap_key_is_owned_by_bootstrap(uow: FakeUnitOfWork, clock: FakeClock,
                                                 tmp_path: Path) -> None:
    result = keys.bootstrap(tmp_path, uow=uow, clock=clock, files=PrivateFiles())
    assert result.key_id is not None
    assert uow.api_keys.rows[result.key_id].owner == "bootstrap"
