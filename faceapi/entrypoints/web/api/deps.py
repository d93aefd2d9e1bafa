"""The app's container and use cases, and the request helpers shared by the blueprints."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from flask import current_app, g, request
from marshmallow import Schema
from werkzeug.exceptions import BadRequest

from faceapi.adapters.images import decode_base64_image
from faceapi.bootstrap import Container, UseCases
from faceapi.domain import access
from faceapi.domain.audit import ANONYMOUS, Actor
from faceapi.domain.engine_values import S3Object
from faceapi.domain.errors import ImageTooLarge, MissingImage
from faceapi.entrypoints.web.api.errors import ValidationFailed

EXTENSION_KEY = "faceapi"


def container() -> Container:
    """The app's adapters, built once by create_app through the composition root."""
    value: Container = current_app.extensions[EXTENSION_KEY]
    return value


def use_cases() -> UseCases:
    """The use cases with the app's adapters bound (faceapi/bootstrap.py)."""
    return container().use_cases


def current_actor() -> Actor:
    """The caller authenticated by api/auth.py: a `faceapi.domain.access.Actor` (key id,
    role, scope). On public endpoints there is none and this is the anonymous actor,
    which every scope check refuses."""
    actor = getattr(g, "actor", None)
    return actor if isinstance(actor, Actor) else ANONYMOUS


def request_id() -> str:
    return str(getattr(g, "request_id", ""))


# No request of ours nests anywhere near this deep; Python's json parsers recurse per
# level and raise RecursionError (a 500) somewhere near a thousand levels.
MAX_JSON_DEPTH = 64
_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_CHUNK = 1 << 20
_FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, without parsing it (a
    bracket inside a string does not count). Only C-speed passes (bytes.replace,
    translate, numpy over fixed-size chunks), so a 15 MB body costs milliseconds and
    a few MB of memory."""
    opens = body.count(b"[") + body.count(b"{")
    if opens <= MAX_JSON_DEPTH:
        return opens
    # Escapes first, left to right as JSON reads them: an escaped backslash, then an
    # escaped quote; what remains of quotes delimits strings.
    structure = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    deepest = depth = 0
    in_string = 0
    for start in range(0, len(structure), _CHUNK):
        codes = np.frombuffer(structure, dtype=np.uint8, count=min(_CHUNK, len(structure) - start),
                              offset=start)
        quotes = (codes == ord('"')).view(np.uint8)
        inside = np.bitwise_xor.accumulate(quotes) ^ in_string
        in_string = int(inside[-1])
        outside = inside == 0
        steps = (((codes == ord("[")) | (codes == ord("{"))) & outside).astype(np.int32) - \
            (((codes == ord("]")) | (codes == ord("}"))) & outside)
        levels = np.cumsum(steps, dtype=np.int32) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
    return deepest


def refuse_deep_json() -> None:
    """A before_request guard for every route and parser (ours, webargs', Flask's, the
    emulator's): a body nested deeper than MAX_JSON_DEPTH is a 400 before anything
    parses it. Form posts are not JSON; every other body may be parsed as JSON
    somewhere (the emulator parses whatever it is sent). The console reads nothing but
    forms and checks them itself (console/views.py), after its own refusals."""
    if _console_checks_itself():
        return
    refuse_nul_characters()
    if request.mimetype in _FORM_TYPES or (not request.content_length and \
            not request.headers.get("Transfer-Encoding")):
        return
    body = request.get_data(cache=True)
    # A NUL byte first: UTF-8 JSON never holds one raw (RFC 8259 wants UTF-8 and no raw
    # control characters), while JSON in UTF-16 or UTF-32, which Flask's and the
    # emulator's parsers would decode, holds one beside every ASCII character and would
    # slip past the byte scans below (a NextToken "\u0000" in UTF-16 was a 500).
    if b"\x00" in body:
        raise BadRequest(NUL_BYTE_REFUSED)
    if body and json_depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    # A NUL inside a JSON string is the escape \u0000 (an escaped backslash before "u0000"
    # is not one, hence the first replace).
    # (The replace copies the body, so only when the plain search found one.)
    if body and b"\\u0000" in body and b"\\u0000" in body.replace(b"\\\\", b""):
        raise BadRequest(NUL_REFUSED)
    if body and lone_surrogate(body):
        raise BadRequest(SURROGATE_REFUSED)


# A UTF-16 surrogate escape in a JSON string: a high one and the low one after it make
# one character (an emoji: "\ud83d\ude00"); either alone is no character at all.
_SURROGATE_ESCAPE_RE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(body: bytes) -> bool:
    r"""Whether a JSON text escapes a lone surrogate ("\ud800" not followed by a low
    one, or a low one alone). Python's parsers accept it into a str that cannot be
    encoded as UTF-8, so the first database write or query holding it raised
    UnicodeEncodeError: a 500 on SQLite and PostgreSQL alike. C-speed searches; the
    copy and the regex only run when a surrogate escape is there at all."""
    if b"\\ud" not in body and b"\\uD" not in body:
        return False
    text = body.replace(b"\\\\", b"")  # an escaped backslash before "ud800" is text
    return any(len(match.group()) == 6 for match in _SURROGATE_ESCAPE_RE.finditer(text))


NUL_REFUSED = "text holding a NUL character (U+0000) is not accepted"
NUL_BYTE_REFUSED = "the body holds a NUL byte: send JSON as UTF-8 text, without U+0000"
SURROGATE_REFUSED = ("text holding a lone UTF-16 surrogate escape (\\ud800-\\udfff without "
                     "its pair) is not accepted")


def _console_checks_itself() -> bool:
    """Console pages (sign-in and sign-out included, its static files not) run the
    console's guard, which refuses a NUL itself after its CSRF, session and role checks,
    so that those refusals stay audited (console/views.py)."""
    rule = access.rule_for(request.endpoint)
    return isinstance(rule, access.ConsolePage) or (
        rule is access.Access.CONSOLE and request.endpoint != "console.static")


def holds_nul() -> bool:
    """Whether the request's path, query (names and values) or form (urlencoded or
    multipart text fields, names and values) holds a NUL. Reading the form parses it,
    once: werkzeug keeps the parsed fields and files for the view."""
    if "\x00" in request.path or b"%00" in request.query_string or \
            any("\x00" in name or any("\x00" in value for value in values)
                for name, values in request.args.lists()):
        return True
    if request.mimetype not in _FORM_TYPES:
        return False
    return any("\x00" in name or any("\x00" in value for value in values)
               for name, values in request.form.lists())


def refuse_nul_characters() -> None:
    """No id, name, description, reason or reference needs a NUL, and PostgreSQL takes
    none in text (psycopg raises DataError, stored or as a query parameter: a 500): a
    path, query or form field holding one is a 400 before any view runs, so no view,
    and no wrapper around one (api/idempotency.py records a multipart form's
    collection_id before the view loads the body), ever passes one on. JSON bodies: the
    byte scans of refuse_deep_json."""
    if holds_nul():
        raise BadRequest(NUL_REFUSED)


def json_body(*, force: bool = False) -> Any:
    """The request's JSON body, or None when there is none or it is not JSON. Nesting
    too deep for the parser (RecursionError, which werkzeug's `silent` does not catch)
    counts as not JSON, so it is a 400 like any other unreadable body, never a 500."""
    try:
        return request.get_json(force=force, silent=True)
    except RecursionError:
        return None


def load_body(schema: Schema, image_fields: tuple[str, ...]) -> dict[str, Any]:
    """Load a request body sent as JSON or as multipart/form-data.

    In JSON an image is `{"bytes": "<base64>"}`; in multipart it is a file part of the
    same name. Either way the schema receives `{"bytes": <raw bytes>}` for each image,
    and the byte limit is enforced before base64 is decoded.
    """
    limit = container().settings.max_image_bytes
    raw: dict[str, Any]
    if request.mimetype == "multipart/form-data":
        # No text field holds a NUL here: refuse_nul_characters ran before the view.
        raw = {key: request.form.get(key) for key in request.form}
        for key in request.form:
            values = request.form.getlist(key)
            if len(values) > 1:
                raw[key] = values
        for name in image_fields:
            upload = request.files.get(name)
            if upload is not None:
                data = upload.stream.read(limit + 1)
                raw[name] = {"bytes": data}
    else:
        payload = json_body()
        if payload is None:
            if request.get_data(cache=True):
                raise ValidationFailed("the body must be JSON or multipart/form-data")
            payload = {}
        if not isinstance(payload, dict):
            raise ValidationFailed("the JSON body must be an object")
        raw = dict(payload)
        for name in image_fields:
            if name in raw:
                raw[name] = _decode_json_image(name, raw[name], limit)
    for name in image_fields:
        image = raw.get(name)
        if isinstance(image, dict) and isinstance(image.get("bytes"), bytes) and \
                len(image["bytes"]) > limit:
            raise ImageTooLarge(f"{name} is larger than {limit} bytes",
                                details={"field": name, "limit": limit})
    loaded: dict[str, Any] = schema.load(raw)
    return loaded


def _decode_json_image(name: str, value: Any, limit: int) -> Any:
    if not isinstance(value, dict):
        raise ValidationFailed(f"{name} must be an object like {{\"bytes\": \"<base64>\"}}",
                               details={"fields": {name: ["must be an object"]}})
    encoded = value.get("bytes")
    if encoded is None:
        return value
    if not isinstance(encoded, str):
        raise ValidationFailed(f"{name}.bytes must be a base64 string",
                               details={"fields": {name: {"bytes": ["must be a base64 string"]}}})
    try:
        data = decode_base64_image(name, encoded, limit)
    except ValueError as exc:
        raise ValidationFailed(f"{name}.bytes is not valid base64",
                               details={"fields": {name: {"bytes": ["not valid base64"]}}}) from exc
    return {**value, "bytes": data}


def require_image_source(loaded: dict[str, Any], name: str) -> bytes | S3Object:
    """The image's bytes, or its S3 object (`{"S3Object": {"Bucket", "Name"}}`); which
    engines accept S3 is the intake's business (faceapi/adapters/images.py)."""
    image = loaded.get(name) or {}
    ref = image.get("s3_object")
    if ref is None:
        return require_image(loaded, name)
    if image.get("bytes") is not None:
        raise ValidationFailed(f"{name}: send bytes or S3Object, not both",
                               details={"fields": {name: ["bytes or S3Object, not both"]}})
    return S3Object(bucket=ref["bucket"], name=ref["name"], version=ref.get("version"))


def require_image(loaded: dict[str, Any], name: str) -> bytes:
    image = loaded.get(name)
    if not image or image.get("bytes") is None:
        raise MissingImage(f"{name} is required: send it as a file part or as "
                           f"{{\"{name}\": {{\"bytes\": \"<base64>\"}}}}",
                           details={"field": name})
    data: bytes = image["bytes"]
    return data
