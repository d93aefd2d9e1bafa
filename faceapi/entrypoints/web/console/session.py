"""Console sessions: the signing secret, the cookie, idle expiry and CSRF tokens.

The console authenticates people by a session cookie obtained once with an API key;
the key itself is never kept in the cookie, only its id and role, so a stolen cookie
cannot be turned back into a key. Flask signs the cookie with the secret key, so its
contents (key id, role, timestamps, CSRF token) cannot be forged by the browser.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Request, request
from flask.sessions import SecureCookieSessionInterface

from faceapi.adapters.private_files import create_private_file_once
from faceapi.config import Settings
from faceapi.services.ports import BlobStore

SIGNING_FILE_NAME = "console_secret_key"
COOKIE_NAME = "faceapi_console"
CSRF_FIELD = "csrf_token"
# A session also ends this long after sign-in, however active it was, so that a
# cookie copied from an unattended browser does not live for ever.
ABSOLUTE_LIFETIME_SECONDS = 12 * 3600


def load_or_create_secret_key(settings: Settings) -> str:
    """`settings.secret_key`, or a random key generated into the data dir on first start.

    Written to a temporary file (mode 0600) then hard-linked into place, so gunicorn
    workers starting together all read the same complete key, and no other local user
    can read it (whoever holds it can mint console sessions)."""
    if settings.secret_key:
        return settings.secret_key
    if settings.secret_key_file:
        key = Path(settings.secret_key_file).read_text(encoding="ascii").strip()
        if not key:
            raise ValueError(f"FACEAPI_SECRET_KEY_FILE: {settings.secret_key_file} is empty")
        return key
    path = settings.data_dir / SIGNING_FILE_NAME
    if not path.exists():
        create_private_file_once(path, secrets.token_urlsafe(48).encode("ascii"))
    return Path(path).read_text(encoding="ascii").strip()


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with `Secure` set whenever the request came in
    over HTTPS (behind a proxy: once ProxyFix passes the scheme on), not only by config."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def configure_cookie(app: Flask, settings: Settings) -> None:
    """HttpOnly (no script can read it), SameSite=Lax (not sent on cross-site POSTs),
    scoped to /console so the JSON API never sees it and stays bearer-only. In
    production it is always Secure: TLS usually ends at a proxy, where the app would
    otherwise see plain HTTP and send the cookie without the flag."""
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_SECURE=settings.env == "production",
    )
    app.session_interface = ConsoleSessionInterface()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(session: Any, req: Request) -> bool:
    """The form's hidden field equals the session's token."""
    expected = session.get("csrf")
    sent = req.form.get(CSRF_FIELD) or ""
    if not isinstance(expected, str) or not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


# Sessions signed out before their natural end, one blob each, kept until the
# lifetime would have ended them anyway. The cookie is stateless, so without this
# list a copy of it taken before sign-out would stay usable until idle expiry; the
# blob store is shared by every worker (the review evidence lives there too).
ENDED_PREFIX = "console-sessions"


# Where sign-in may send a person back to: a path inside the console, written in the
# characters a URL path and query use. No scheme or host (https://evil, //evil), no
# backslash (/\evil, which browsers read as //evil), no whitespace or control bytes
# (CR/LF would split the Location header), no ".." segment.
_CONSOLE_PATH_RE = re.compile(r"^/console(?:[/?#][A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*)?$")
MAX_NEXT_LENGTH = 2048


def safe_console_path(target: str | None) -> str | None:
    """`target` when it is a safe place to redirect to after sign-in, else None."""
    if not target or len(target) > MAX_NEXT_LENGTH or not _CONSOLE_PATH_RE.match(target):
        return None
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "//" in path or ".." in path.split("/"):
        return None
    return target


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


def _ended_key(session_id: str) -> str:
    return f"{ENDED_PREFIX}/{session_id}/ended"


def end_session(blobs: BlobStore, session_id: str, now: datetime) -> None:
    """Record a sign-out so the cookie is refused from now on, everywhere."""
    until = timestamp(now) + ABSOLUTE_LIFETIME_SECONDS
    blobs.put(_ended_key(session_id), str(until).encode("ascii"))
    for key in blobs.keys(ENDED_PREFIX):
        raw = blobs.get(key)
        try:
            stale = raw is None or int(raw) < timestamp(now)
        except ValueError:
            stale = True
        if stale:
            blobs.delete_prefix(key.rsplit("/", 1)[0])


def was_ended(blobs: BlobStore, session_id: str) -> bool:
    try:
        return blobs.get(_ended_key(session_id)) is not None
    except ValueError:  # not a well-formed id: never issued by us
        return True


def timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def expired(session: Any, now: datetime, idle_minutes: int) -> str | None:
    """Why the signed-in session is over ("idle" or "lifetime"), or None if it is live
    (sign-out is checked separately, against the shared list of ended sessions)."""
    seen = session.get("seen")
    started = session.get("since")
    if not isinstance(seen, int) or not isinstance(started, int) \
            or not isinstance(session.get("sid"), str):
        return "idle"
    current = timestamp(now)
    if current - seen > idle_minutes * 60:
        return "idle"
    if current - started > ABSOLUTE_LIFETIME_SECONDS:
        return "lifetime"
    return None
