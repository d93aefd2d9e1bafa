"""SigV4 at the edge: read the request exactly as it arrived for faceapi.services.sigv4.

Only the Rekognition-compatible endpoint (`rekognition.dispatch`) accepts SigV4; every
/v1 route takes `Authorization: Bearer` only (faceapi/entrypoints/web/api/auth.py refuses a SigV4
header there), so a Bearer key never travels where a signature is expected, nor the
other way round.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import request

from faceapi.domain import access
from faceapi.entrypoints.web.api.deps import use_cases
from faceapi.services.sigv4 import SignedRequest

ENDPOINT = "rekognition.dispatch"


def _raw_path() -> str:
    # The path as sent, still percent-encoded: werkzeug's server and gunicorn keep it in
    # RAW_URI / REQUEST_URI; `request.path` is already decoded.
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return raw.split("?", 1)[0]
    return quote(request.path)


def signed_request() -> SignedRequest:
    """This request as SigV4 sees it. Reading the body is bounded by
    MAX_CONTENT_LENGTH (a larger one is a 413 before anything is read)."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        lower = name.lower()
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    return SignedRequest(method=request.method, path=_raw_path(),
                         query=request.query_string.decode("latin-1"),
                         headers=headers, body=request.get_data(cache=True))


def authenticate_request() -> access.Actor:
    """The caller of this emulator request, by its signature; SignatureRefused
    (an AuthenticationFailed) otherwise."""
    return use_cases().authenticate_signed(signed_request())
