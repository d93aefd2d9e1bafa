"""Console sessions: the signing secret, the cookie, idle expiry and CSRF tokens.

The console authenticates people by a session cookie obtained once with an API key;
the key itself is never kept in the cookie, only its id and role, so a stolen cookie
cannot be turned back into a key. Flask signs the cookie with the secret key, so its
contents (key id, role, timestamps, CSRF token) cannot be forged by the browser.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Request, request
from flask.sessions import SecureCookieSessionInterface

from faceapi.config import Settings

SIGNING_FILE_NAME = "console_secret_key"
COOKIE_NAME = "faceapi_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
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
    path = settings.data_dir / SIGNING_FILE_NAME
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=settings.data_dir, prefix=".console_key_")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secrets.token_urlsafe(48).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another worker won the race; use its key
        finally:
            os.unlink(tmp)
    return Path(path).read_text(encoding="ascii").strip()


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with `Secure` set whenever the request came in
    over HTTPS (behind a proxy: once ProxyFix passes the scheme on), not only by config."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def configure_cookie(app: Flask) -> None:
    """HttpOnly (no script can read it), SameSite=Lax (not sent on cross-site POSTs),
    scoped to /console so the JSON API never sees it and stays bearer-only."""
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/console",
    )
    app.session_interface = ConsoleSessionInterface()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(session: Any, req: Request) -> bool:
    """The form field (or header, for script requests) equals the session's token."""
    expected = session.get("csrf")
    sent = req.form.get(CSRF_FIELD) or req.headers.get(CSRF_HEADER) or ""
    if not isinstance(expected, str) or not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def expired(session: Any, now: datetime, idle_minutes: int) -> str | None:
    """Why the signed-in session is over ("idle" or "lifetime"), or None if it is live."""
    seen = session.get("seen")
    started = session.get("since")
    if not isinstance(seen, int) or not isinstance(started, int):
        return "idle"
    current = timestamp(now)
    if current - seen > idle_minutes * 60:
        return "idle"
    if current - started > ABSOLUTE_LIFETIME_SECONDS:
        return "lifetime"
    return None
