"""API keys: create (shown once), list, revoke, authenticate, and the first admin key.

Key format: `fa_<id>_<secret>`; `id` is 8 random alphanumerics, public, the key's
name in lists, logs and the audit trail; `secret` is 40 random alphanumerics (about
238 bits). Only SHA-256 of the whole key is stored. A plain hash, not a slow password
hash, is enough because the key is random with far more entropy than any offline
guessing can cover; a slow hash would only add latency to every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from faceapi.domain import access
from faceapi.domain.access import ApiKey, InvalidScope
from faceapi.domain.audit import API_KEY_RE, Action, AuditEvent
from faceapi.domain.audit import Actor as AuditActor
from faceapi.domain.clock import Clock
from faceapi.domain.errors import Conflict, FaceApiError, InvalidParameter, NotFound
from faceapi.services.ports import SecretFileWriter, UnitOfWork, UnitOfWorkFactory

_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 8
SECRET_LENGTH = 40
KEY_RE = re.compile(rf"^fa_([A-Za-z0-9]{{{ID_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})$")
# Writing last-used on every request would make every read a write; once a minute
# per key is precise enough for "is this key still in use?".
TOUCH_INTERVAL = timedelta(minutes=1)
BOOTSTRAP_KEY_NAME = "bootstrap-admin"
BOOTSTRAP_KEY_OWNER = "bootstrap"
BOOTSTRAP_FILE_NAME = "admin-key.txt"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,127}$")
# An e-mail address or `system:<name>`; `+` and `_` for addresses like a+b_c@example.org.
_OWNER_RE = re.compile(r"^[a-z0-9][a-z0-9 ._:@+_-]{0,127}$")
# Keys only an unscoped caller may hand out: reviewers are the check on everyone else
# (an admin scoped to one collection minting reviewers would pass the two-person rule
# alone), and an admin key is the power to mint keys.
UNSCOPED_ONLY_ROLES = frozenset({access.REVIEWER, access.ADMIN})


class AuthenticationFailed(FaceApiError):
    """The presented credentials do not identify a usable key. `reason` is for the
    audit trail and logs; callers answer every reason with the same generic 401 so a
    caller learns nothing about which keys exist."""

    code = "unauthorized"

    def __init__(self, reason: str, *, key_id: str | None = None,
                 role: str | None = None) -> None:
        super().__init__("missing or invalid API key")
        self.reason = reason
        self.key_id = key_id
        self.role = role


@dataclass(frozen=True)
class NewKey:
    """What `create_key` needs; scopes are None for "unrestricted".

    `owner` is the person or system the key belongs to. The REST API and the CLI
    require it; None (code that makes keys itself: tests, benches) takes the name."""

    name: str
    role: str
    collections: frozenset[str] | None = None
    policies: frozenset[str] | None = None
    expires_at: datetime | None = None
    owner: str | None = None


@dataclass(frozen=True)
class CreatedKey:
    """The stored key and the key itself, which exists only in this value; with its
    SigV4 secret access key for the Rekognition-compatible endpoint (the access key id
    is `key.id`), shown once like the key and kept only sealed (faceapi/adapters/secret_box.py)."""

    key: ApiKey
    secret: str
    sigv4_secret: str = field(default="", repr=False)


def generate_key() -> tuple[str, str]:
    """A new (id, full key) pair from the OS's CSPRNG."""
    key_id = "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return key_id, f"fa_{key_id}_{secret}"


def generate_sigv4_secret() -> str:
    """A SigV4 secret access key: 40 random alphanumerics, AWS's length."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def key_id_of(token: str) -> str | None:
    """The public id of a well-formed key, or None."""
    match = KEY_RE.match(token)
    return match.group(1) if match else None


def _validate(new: NewKey, now: datetime) -> NewKey:
    if new.role not in access.ROLES:
        raise InvalidParameter(f"role must be one of {', '.join(access.ROLES)}",
                               details={"field": "role"})
    name = new.name.strip()
    if not _NAME_RE.match(name) or key_id_of(name) is not None:
        raise InvalidParameter("name: 1-128 letters, digits, spaces or ._:@-",
                               details={"field": "name"})
    owner = normalise_owner(new.owner if new.owner is not None else name)
    if new.expires_at is not None:
        if new.expires_at.tzinfo is None:
            raise InvalidParameter("expires_at must carry a time zone",
                                   details={"field": "expires_at"})
        if new.expires_at <= now:
            raise InvalidParameter("expires_at must be in the future",
                                   details={"field": "expires_at"})
    try:
        collections = (None if new.collections is None
                       else access.check_scope_names(new.collections, what="collections"))
        policies = (None if new.policies is None
                    else access.check_scope_names(new.policies, what="policies"))
    except InvalidScope as exc:
        raise InvalidParameter(exc.message, details=exc.details) from exc
    return replace(new, name=name, collections=collections, policies=policies, owner=owner)


def normalise_owner(text: str) -> str:
    """An owner as stored and compared: trimmed and lower case, so `Alice@example.org`
    and `alice@example.org` are one person to the two-person rule."""
    owner = text.strip().lower()
    if not _OWNER_RE.match(owner) or API_KEY_RE.search(owner):
        raise InvalidParameter("owner: the person or system owning the key, e.g. "
                               "alice@example.org or system:billing-app (1-128 letters, "
                               "digits, spaces or ._:@+_-)", details={"field": "owner"})
    return owner


def _scope_of(actor: AuditActor) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    # The CLI and jobs (plain audit actors): whoever runs them already holds the
    # database, so they are unscoped.
    if not isinstance(actor, access.Actor):
        return None, None
    return actor.collections, actor.policies


def _is_scoped(actor: AuditActor) -> bool:
    return _scope_of(actor) != (None, None)


def manages(actor: AuditActor, collections: frozenset[str] | None,
            policies: frozenset[str] | None) -> bool:
    """Whether a key with this scope lies inside the actor's: for each of collections
    and policies, the actor is unlimited or the key is limited to a subset of the
    actor's. A key with no collection limit is never inside a collection-scoped actor."""
    for mine, theirs in zip(_scope_of(actor), (collections, policies), strict=True):
        if mine is not None and (theirs is None or not theirs <= mine):
            return False
    return True


def _require_manages(actor: AuditActor, key: ApiKey) -> None:
    """A key outside the caller's scope answers exactly like a missing one (404); the
    API layer audits OutOfScope as `authz.deny`."""
    if not manages(actor, key.collections, key.policies):
        missing = _key_not_found(key.id)
        raise access.OutOfScope(missing.message, details=missing.details)


def _within_callers_scope(new: NewKey, actor: AuditActor) -> None:
    """A scoped key may only hand out keys inside its own scope (otherwise an admin key
    limited to one collection could mint an unrestricted key and escape its scope), and
    never reviewer or admin keys (UNSCOPED_ONLY_ROLES)."""
    mine = _scope_of(actor)
    for what, own, theirs in (("collections", mine[0], new.collections),
                              ("policies", mine[1], new.policies)):
        if own is not None and (theirs is None or not theirs <= own):
            raise access.Forbidden(f"this key may only create keys whose {what} are within "
                                   f"its own: {', '.join(sorted(own))}",
                                   details={"field": what})
    if new.role in UNSCOPED_ONLY_ROLES and _is_scoped(actor):
        raise access.Forbidden(f"only an unscoped admin key may create {new.role} keys",
                               details={"field": "role", "role": new.role})


def _add_key(new: NewKey, *, uow: UnitOfWork, now: datetime, actor: AuditActor,
             rotated_from: str | None = None) -> CreatedKey:
    # 62^8 ids: a collision is rare, but a retry costs nothing and a duplicate would fail.
    for _ in range(5):
        key_id, secret = generate_key()
        if uow.api_keys.get(key_id) is None:
            break
    else:  # pragma: no cover - needs five collisions in a row
        raise RuntimeError("could not find a free key id")
    assert new.owner is not None  # _validate fills it in
    key = ApiKey(id=key_id, name=new.name, role=new.role, key_hash=hash_key(secret),
                 created_at=now, owner=new.owner, collections=new.collections,
                 policies=new.policies, expires_at=new.expires_at, created_by=actor.key_id)
    uow.api_keys.add(key)
    # Never in the audit event or a log line: it exists in clear only in the reply.
    sigv4_secret = generate_sigv4_secret()
    uow.api_keys.set_sigv4_secret(key_id, sigv4_secret)
    uow.audit.append(AuditEvent(
        action=Action.KEY_CREATE, outcome="created", actor=actor, resource=f"keys/{key_id}",
        details={"role": new.role, "owner": new.owner,
                 "scoped_collections": new.collections is not None,
                 "scoped_policies": new.policies is not None,
                 "expires": new.expires_at is not None,
                 **({"rotated_from": rotated_from} if rotated_from else {})}))
    return CreatedKey(key=key, secret=secret, sigv4_secret=sigv4_secret)


def create_key(new: NewKey, *, uow: UnitOfWork, clock: Clock, actor: AuditActor) -> CreatedKey:
    """Create a key; the returned secret is the only copy there will ever be."""
    now = clock.now()
    new = _validate(new, now)
    _within_callers_scope(new, actor)
    with uow:
        created = _add_key(new, uow=uow, now=now, actor=actor)
        uow.commit()
    return created


def list_keys(*, uow: UnitOfWork, actor: AuditActor,
              include_revoked: bool = True) -> list[ApiKey]:
    """The keys inside the actor's scope (every key for an unscoped one; hash included,
    the API layer never shows it)."""
    with uow:
        found = uow.api_keys.list(include_revoked=include_revoked)
    return [k for k in found if manages(actor, k.collections, k.policies)]


def _key_not_found(key_id: str) -> NotFound:
    # Echo the id only when it is shaped like one: a whole key pasted into the URL by
    # mistake must not come back in the error body (or anything that logs it).
    if re.fullmatch(rf"[A-Za-z0-9]{{{ID_LENGTH}}}", key_id):
        return NotFound(f"API key {key_id!r} not found", details={"key_id": key_id})
    return NotFound("API key not found: ask with the key's id, never the key itself")


def get_key(key_id: str, *, uow: UnitOfWork, actor: AuditActor) -> ApiKey:
    """One key inside the actor's scope (a key's own record always is)."""
    with uow:
        key = uow.api_keys.get(key_id)
    if key is None:
        raise _key_not_found(key_id)
    _require_manages(actor, key)
    return key


def _is_unscoped_admin(key: ApiKey, now: datetime) -> bool:
    return key.role == access.ADMIN and key.unscoped and key.status(now) == "active"


def revoke_key(key_id: str, *, uow: UnitOfWork, clock: Clock, actor: AuditActor,
               allow_last_admin: bool = False) -> ApiKey:
    """Revoke a key inside the actor's scope at once (every worker reads the store on
    each request). Revoking a revoked key changes nothing and records nothing. The last
    active unscoped admin key is kept unless `allow_last_admin` (the CLI's --force):
    scoped admins do not count, since they cannot manage unscoped keys or mint
    reviewers and admins, and nobody could over HTTP. The refusal is audited."""
    with uow:
        key = uow.api_keys.get(key_id)
        if key is None:
            raise _key_not_found(key_id)
        _require_manages(actor, key)
        if key.revoked_at is not None:
            return key
        now = clock.now()
        if _is_unscoped_admin(key, now) and not allow_last_admin and not any(
                _is_unscoped_admin(k, now) and k.id != key.id
                for k in uow.api_keys.list(include_revoked=False)):
            uow.audit.append(AuditEvent(
                action=Action.KEY_REVOKE, outcome="refused", actor=actor,
                resource=f"keys/{key_id}", reason="last_unscoped_admin",
                details={"role": key.role}))
            uow.commit()
            raise Conflict("this is the last active unscoped admin key: create another "
                           "unscoped admin key first (or use `faceapi keys revoke --force`)",
                           details={"key_id": key_id})
        uow.api_keys.revoke(key_id, now)
        uow.audit.append(AuditEvent(action=Action.KEY_REVOKE, outcome="revoked", actor=actor,
                                    resource=f"keys/{key_id}", details={"role": key.role}))
        uow.commit()
    return replace(key, revoked_at=now)


def rotate_key(key_id: str, *, uow: UnitOfWork, clock: Clock, actor: AuditActor,
               expires_at: datetime | None = None) -> CreatedKey:
    """A new key with the old one's name, role and scope. The old key keeps working
    until it is revoked, so clients can move over without downtime."""
    now = clock.now()
    with uow:
        old = uow.api_keys.get(key_id)
        if old is not None:
            _require_manages(actor, old)
        if old is None or old.status(now) != "active":
            raise _key_not_found(key_id) if old is None else Conflict(
                f"API key {key_id!r} is {old.status(now)}: create a new key instead",
                details={"key_id": key_id})
        new = _validate(NewKey(name=old.name, role=old.role, collections=old.collections,
                               policies=old.policies, owner=old.owner,
                               expires_at=expires_at if expires_at is not None
                               else old.expires_at), now)
        _within_callers_scope(new, actor)
        created = _add_key(new, uow=uow, now=now, actor=actor, rotated_from=old.id)
        uow.commit()
    return created


def authenticate(token: str | None, *, read_uow: UnitOfWorkFactory,
                 write_uow: UnitOfWorkFactory, clock: Clock) -> access.Actor:
    """The Actor for a presented key, or AuthenticationFailed with the reason.

    The web console calls this too when it exchanges a key for a session."""
    if not token:
        raise AuthenticationFailed("missing_key")
    key_id = key_id_of(token)
    if key_id is None:
        raise AuthenticationFailed("malformed_key")
    with read_uow() as uow:
        key = uow.api_keys.get(key_id)
    presented = hash_key(token)
    # Constant-time comparison; an unknown id still costs a comparison, against a
    # value no key can hash to, so both paths take the same time.
    stored = key.key_hash if key is not None else "0" * 64
    if not hmac.compare_digest(presented, stored) or key is None:
        raise AuthenticationFailed("unknown_key", key_id=key_id)
    return admit(key, write_uow=write_uow, clock=clock)


def admit(key: ApiKey, *, write_uow: UnitOfWorkFactory, clock: Clock) -> access.Actor:
    """The Actor of a key whose holder has proved possession (Bearer secret or SigV4
    signature), if the key is active; records its last use."""
    now = clock.now()
    status = key.status(now)
    if status != "active":
        raise AuthenticationFailed(status, key_id=key.id, role=key.role)
    if key.last_used_at is None or now - key.last_used_at >= TOUCH_INTERVAL:
        with write_uow() as uow:
            uow.api_keys.touch(key.id, now)
            uow.commit()
    return key.actor()


def parse_expiry(text: str, now: datetime) -> datetime:
    """`90d`, `12h`, `30m`, or an ISO 8601 date/time (UTC when no zone is given)."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", text)
    try:
        if match:
            amount, unit = int(match.group(1)), match.group(2)
            delta = {"d": timedelta(days=amount), "h": timedelta(hours=amount),
                     "m": timedelta(minutes=amount)}[unit]
            return now + delta
        moment = datetime.fromisoformat(text.strip())
    except (ValueError, OverflowError) as exc:
        # OverflowError: a duration past year 9999 (99999999999d).
        raise InvalidParameter("expiry: use 90d, 12h, 30m or an ISO 8601 date/time",
                               details={"field": "expires"}) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=now.tzinfo)


def split_scope(values: Iterable[str] | None) -> frozenset[str] | None:
    """`--collections a,b --collections c` -> {"a", "b", "c"}; nothing given -> None."""
    if not values:
        return None
    return frozenset(part.strip() for value in values for part in value.split(",")
                     if part.strip())


@dataclass(frozen=True)
class BootstrapResult:
    created: bool
    path: Path
    key_id: str | None = None


def bootstrap(data_dir: Path, *, uow: UnitOfWork, clock: Clock,
              files: SecretFileWriter) -> BootstrapResult:
    """On an empty key table, create the first admin key into `<data_dir>/admin-key.txt`
    (mode 0600). With any key present it does nothing: there is never a default key."""
    path = data_dir / BOOTSTRAP_FILE_NAME
    now = clock.now()
    with uow:
        uow.api_keys.lock()
        if uow.api_keys.count() > 0:
            return BootstrapResult(created=False, path=path)
        created = _add_key(NewKey(name=BOOTSTRAP_KEY_NAME, role=access.ADMIN,
                                  owner=BOOTSTRAP_KEY_OWNER), uow=uow,
                           now=now, actor=AuditActor.system("bootstrap"))
        # The file first: a key committed but never written would leave nobody able
        # to use it, and bootstrap would not run again.
        files.write(path, (created.secret + "\n").encode("ascii"))
        try:
            uow.commit()
        except BaseException:
            files.remove(path)
            raise
    return BootstrapResult(created=True, path=path, key_id=created.key.id)

