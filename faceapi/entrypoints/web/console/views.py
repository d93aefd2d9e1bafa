"""The console blueprint: sign-in, sign-out, the session guard and the pages.

Every request to /console passes `_guard` first: it loads the session, ends it when
idle or when its key was revoked, checks the role against the permission table, and
checks the CSRF token of every POST. Views then call the same service functions as the
API, so the console can do nothing the signed-in key could not do over HTTP.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from faceapi.domain.access import Actor, OutOfScope
from faceapi.domain.errors import FaceApiError
from faceapi.domain.policies import PolicySet
from faceapi.entrypoints.web.api.deps import NUL_REFUSED, container, holds_nul, request_id
from faceapi.entrypoints.web.console import access
from faceapi.entrypoints.web.console.present import policy_rules
from faceapi.entrypoints.web.console.session import (
    csrf_ok,
    end_session,
    expired,
    new_csrf_token,
    new_session_id,
    safe_console_path,
    timestamp,
    was_ended,
)

log = structlog.get_logger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")

# Pages in the navigation, in order; each shows only to roles the table allows.
NAV: tuple[tuple[str, str], ...] = (
    ("console.overview", "Overview"),
    ("console.reviews", "Reviews"),
    ("console.audit", "Audit trail"),
    ("console.collections", "Collections"),
    ("console.policies", "Policies"),
    ("console.calibration", "Calibration"),
)


def _open(endpoint: str) -> bool:
    """Sign-in, sign-out and the static files need no session (Access.CONSOLE in the
    permission table); every other console endpoint needs one and a role rule."""
    return access.needs_no_session(endpoint)


def principal() -> Actor | None:
    value = getattr(g, "console_principal", None)
    return value if isinstance(value, Actor) else None


def may(endpoint: str) -> bool:
    """Whether the signed-in role may use `endpoint` (templates hide what it may not)."""
    who = principal()
    return who is not None and access.allowed(who.role, endpoint)


@bp.app_template_global()
def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = new_csrf_token()
        session["csrf"] = token
    return token


@bp.context_processor
def _template_context() -> dict[str, Any]:
    who = principal()
    items = [(endpoint, label) for endpoint, label in NAV if who and may(endpoint)]
    return {"principal": who, "nav_items": items, "may": may}


@bp.before_request
def _guard() -> Any:
    endpoint = request.endpoint or ""
    if endpoint == "console.static":
        # The stylesheet and script are public; no store read, no cookie refresh.
        return None
    now = container().clock.now()
    who: Actor | None = None
    if session.get("key_id"):
        why = expired(session, now, container().settings.session_idle_minutes)
        if why is None and was_ended(container().blobs, str(session["sid"])):
            why = "signed_out"
        if why is None:
            who = access.reload_principal(str(session["key_id"]))
            why = None if who is not None else "revoked"
        if why is not None:
            log.info("console_session_ended", reason=why)
            session.clear()
            if not _open(endpoint):
                flash("Your session ended (idle too long)." if why == "idle" else
                      "Your session ended; please sign in again.", "info")
        elif who is not None:
            session["seen"] = timestamp(now)
            g.console_principal = who
            # The same actor the API's auth hook sets: services audit it as the caller.
            g.actor = who
    if request.method == "POST" and not csrf_ok(session, request):
        log.info("console_csrf_refused", endpoint=endpoint)
        abort(403, description="The form's security token is missing or wrong. "
                               "Reload the page and try again.")
    if _open(endpoint):
        _refuse_nul(endpoint)
        return None
    if who is None:
        if request.method == "GET":
            return redirect(url_for("console.signin", next=request.full_path.rstrip("?")))
        abort(401)
    if not access.allowed(who.role, endpoint):
        access.record_denial(who, endpoint)
        abort(403, description="Your role may not open this page.")
    _refuse_nul(endpoint)
    return None


def _refuse_nul(endpoint: str) -> None:
    """A NUL in the path, the query or any form field is a 400 on the error page before
    any view reads it (PostgreSQL takes no NUL in text, stored or as a query parameter:
    psycopg raises DataError, a 500 wherever a view let one through). It runs after the
    CSRF, session and role checks above, so a request those refuse is refused, and
    audited, as before. A sign-in form holding one is a refused sign-in, an `auth.fail`
    like a wrong key; elsewhere, as on the API, it is a malformed request, logged with
    the request id."""
    if not holds_nul():
        return
    if endpoint == "console.signin" and request.method == "POST":
        access.record_malformed_signin("nul_character")
    log.info("console_nul_refused", endpoint=endpoint)
    abort(400, description=NUL_REFUSED)


@bp.after_request
def _no_store(response: Response) -> Response:
    # Pages show biometric evidence and audit data: keep them out of shared caches and
    # the back-button cache after sign-out, and never inside someone else's frame.
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return response


def _render_error(status: int, heading: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, heading=heading, message=message,
                           request_id=request_id()), status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int] | Response:
    status = exc.code or 500
    if status == 401:
        return _render_error(401, "Sign-in needed", "Sign in to use the console.")
    return _render_error(status, exc.name, str(exc.description or exc.name))


@bp.errorhandler(FaceApiError)
def _domain_error(exc: FaceApiError) -> tuple[str, int]:
    from faceapi.entrypoints.web.api.errors import STATUS_BY_CODE
    who = principal()
    if isinstance(exc, OutOfScope) and who is not None:
        # Shown exactly as a missing object, but on record, as the API does.
        access.record_out_of_scope(who, request.endpoint or "", exc.details)
    status = STATUS_BY_CODE.get(exc.code, 400)
    return _render_error(status, exc.code.replace("_", " "), exc.message)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int] | Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("console_unhandled_error", error_type=type(exc).__name__)
    return _render_error(500, "Something went wrong",
                         "An internal error occurred; quote the request id to an operator.")


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: an open redirect would let a phishing link
    bounce a freshly signed-in reviewer to another site, and CR/LF in the Location
    header would be a 500 (or a split response)."""
    return safe_console_path(target) or url_for("console.home")


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    """Exchange an API key for a console session."""
    if request.method == "GET":
        if principal() is not None:
            return redirect(url_for("console.home"))
        return render_template("signin.html", error=None,
                               next_url=_safe_next(request.args.get("next")))
    raw_key = (request.form.get("api_key") or "").strip()
    next_url = _safe_next(request.form.get("next"))
    who = access.authenticate(raw_key) if raw_key else None
    if who is None:
        return render_template("signin.html", next_url=next_url,
                               error="That key was not accepted."), 401
    now = timestamp(container().clock.now())
    # A fresh session (and CSRF token) on sign-in: a token planted before sign-in
    # (session fixation) is worthless afterwards.
    session.clear()
    session.update(key_id=who.key_id, sid=new_session_id(), since=now, seen=now,
                   csrf=new_csrf_token())
    log.info("console_signin", key_id=who.key_id, role=who.role)
    return redirect(next_url)


@bp.route("/signout", methods=["POST"])
def signout() -> Any:
    """End the console session, here and for any copy of its cookie."""
    sid = session.get("sid")
    if isinstance(sid, str) and session.get("key_id"):
        end_session(container().blobs, sid, container().clock.now())
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("console.signin"))


@bp.route("/", methods=["GET"])
def home() -> Any:
    """The first page the role may open."""
    for endpoint, _label in NAV:
        if may(endpoint):
            return redirect(url_for(endpoint))
    abort(403, description="Your role has no console pages.")


def policy_set() -> PolicySet:
    return container().policies


@bp.route("/policies", methods=["GET"])
def policies() -> Any:
    """Every policy in force, its rules in plain words and its version."""
    items = [{"policy": p, "rules": policy_rules(p)} for p in policy_set().values()]
    return render_template("policies.html", title="Policies", items=items)
