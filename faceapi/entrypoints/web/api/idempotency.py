"""`Idempotency-Key` on the calls that decide or write (verify, compare, search, index
faces, review votes): the web side of services/idempotency.py.

    @blp.route("/verify", methods=["POST"])
    @idempotent                      # outside smorest's decorators: sees the Response
    @blp.response(200, DecisionSchema)
    def verify_subject(): ...

Without the header nothing changes. With it, the request's fingerprint is the SHA-256
of the method, the path, the caller's key id, the media type and the body (a multipart
body by its fields and the SHA-256 of each file part, so a retry that draws a new
multipart boundary is the same request); neither the body nor the image is kept.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

import structlog
from flask import Response, make_response, request

from faceapi.adapters.store.idempotency_repo import ActiveClaim, active_claim
from faceapi.domain.errors import FaceApiError, InvalidIdempotencyKey
from faceapi.entrypoints.web.api.deps import current_actor, json_body, use_cases
from faceapi.entrypoints.web.api.errors import STATUS_BY_CODE
from faceapi.services.idempotency import Claim, IdempotentRequest, Replay

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Printable ASCII, 1-255 characters, not starting or ending with a space, and no comma:
# servers join repeated headers with commas, so "a, b" would be two keys sent at once.
_KEY_RE = re.compile(r"[\x21-\x2b\x2d-\x7e](?:[\x20-\x2b\x2d-\x7e]{0,253}[\x21-\x2b\x2d-\x7e])?")
# The response headers that are part of the answer (the rest are per response:
# request id, rate limit counters, dates).
KEPT_HEADERS = ("Content-Type", "X-Faceapi-Decision-Id", "Location")
_CHUNK = 1 << 16

F = TypeVar("F", bound=Callable[..., Any])

# Marks a view for api/openapi_doc.py, which documents the header and its answers.
IDEMPOTENT_ATTR = "_faceapi_idempotent"


def _header_key() -> str | None:
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    key = values[0]
    if len(values) > 1 or len(key) > MAX_KEY_LENGTH or not _KEY_RE.fullmatch(key):
        raise InvalidIdempotencyKey(
            f"{HEADER} must be one header of 1-{MAX_KEY_LENGTH} printable ASCII characters",
            details={"header": HEADER})
    return key


class _Digest:
    """SHA-256 over length-prefixed parts, so no two different sequences of parts
    hash alike."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def part(self, data: bytes | str) -> None:
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        self._h.update(len(raw).to_bytes(8, "big"))
        self._h.update(raw)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def request_fingerprint(key_id: str) -> str:
    """The request's identity under its key: method, path, caller, media type, body."""
    digest = _Digest()
    for piece in (request.method, request.path, key_id, request.mimetype):
        digest.part(piece)
    if request.mimetype == "multipart/form-data":
        for name in sorted(request.form):
            digest.part("field")
            digest.part(name)
            for value in request.form.getlist(name):
                digest.part(value)
        for name in sorted(request.files):
            for upload in request.files.getlist(name):
                digest.part("file")
                digest.part(name)
                file_hash = hashlib.sha256()
                stream = upload.stream
                while chunk := stream.read(_CHUNK):
                    file_hash.update(chunk)
                stream.seek(0)  # the view reads it again
                digest.part(file_hash.digest())
    else:
        digest.part(request.get_data(cache=True))
    return digest.hexdigest()


def _collection_of_request() -> str | None:
    """The collection a request names (path, form or JSON), so an erasure in it can
    drop the saved answer (services/idempotency.py, IdempotencyEraser)."""
    value = (request.view_args or {}).get("collection_id")
    if value is None and request.mimetype == "multipart/form-data":
        value = request.form.get("collection_id")
    elif value is None:
        body = json_body()
        value = body.get("collection_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) and len(value) <= 128 else None


def _replay(stored: Replay) -> Response:
    response = Response(stored.body, status=stored.status)
    for name, value in stored.headers:
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


def idempotent(view: F) -> F:
    """Honour `Idempotency-Key` on this view (see the module docstring and
    services/idempotency.py). Put it between `@blp.route` and smorest's decorators."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = _header_key()
        actor = current_actor()
        if key is None or actor.key_id is None:
            # No key id: auth.py refuses such callers on these routes before the view.
            return view(*args, **kwargs)
        outcome = use_cases().claim_idempotency(IdempotentRequest(
            key_id=actor.key_id, key=key, fingerprint=request_fingerprint(actor.key_id),
            collection_id=_collection_of_request()))
        if isinstance(outcome, Replay):
            # Nothing is written for a replay, not even an audit event: it decides and
            # changes nothing, and the first request's events already tell what was
            # decided (docs/api.md).
            log.info("idempotent_replay", status=outcome.status)
            return _replay(outcome)
        return _run_claimed(outcome, view, args, kwargs)

    setattr(wrapper, IDEMPOTENT_ATTR, True)
    return cast(F, wrapper)


def _run_claimed(held: Claim, view: Callable[..., Any], args: Any, kwargs: Any) -> Response:
    claim = ActiveClaim(held.key_id, held.key, held.claim_token)
    try:
        with active_claim(claim):
            response = make_response(view(*args, **kwargs))
    except BaseException as exc:
        # A refusal (4xx) is judged again on retry, so its claim goes; so does the claim
        # of a failure that wrote nothing. A failure after the write committed keeps the
        # row `committed`: a retry must not write twice.
        refused = isinstance(exc, FaceApiError) and _is_refusal(exc)
        if refused or not claim.committed:
            _release(held)
        raise
    if claim.committed and 200 <= response.status_code < 300 and response.is_json:
        saved = use_cases().save_idempotent_response(
            held, status=response.status_code, body=response.get_data(as_text=True),
            headers=tuple((name, response.headers[name]) for name in KEPT_HEADERS
                          if name in response.headers),
            collection_id=_collection_of_answer(response))
        if not saved:
            log.warning("idempotent_answer_not_saved", reason="claim taken over")
    elif not claim.committed:
        _release(held)
    return response


def _is_refusal(exc: FaceApiError) -> bool:
    return 400 <= STATUS_BY_CODE.get(exc.code, 400) < 500


def _release(held: Claim) -> None:
    try:
        use_cases().release_idempotency(held)
    except Exception as exc:  # the request's own error is the one to report
        # The row stays `pending` and is taken over after its lease.
        log.warning("idempotency_release_failed", error_type=type(exc).__name__)


def _collection_of_answer(response: Response) -> str | None:
    body = response.get_json(silent=True)
    value = body.get("collection_id") if isinstance(body, dict) else None
    if value is None and isinstance(body, dict) and isinstance(body.get("decision"), dict):
        value = body["decision"].get("collection_id")
    return value if isinstance(value, str) and len(value) <= 128 else None
