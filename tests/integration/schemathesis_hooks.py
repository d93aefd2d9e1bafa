"""Schemathesis hooks for tests/integration/test_openapi_schemathesis.py (loaded by the
CLI through SCHEMATHESIS_HOOKS).

They supply what no JSON Schema can say about a valid request, and never turn an invalid
request valid:
- an image is bytes that decode to a picture with a face: every well-typed image value
  (a file part, or a base64 string in `{"bytes": ...}`) becomes the one PNG the test
  scripted on its fake engine (path in FACEAPI_SCHEMATHESIS_IMAGE); an ill-typed one
  (the mutation of a negative case) is sent as generated;
and only in requests generated as valid in every part (positive cases):
- the audit `cursor` is an opaque token from a previous page: a generated one is dropped;
- a new key's or a consent's `expires_at` must lie in the future: a generated one is
  moved a year ahead;
- IndexFaces into a collection that requires consent needs the consent: one is sent
  (a multipart request without its consent part records it first through
  POST .../subjects/{subject_id}/consent, with the run's key: FACEAPI_SCHEMATHESIS_URL
  and FACEAPI_SCHEMATHESIS_AUTH);
- a webhook URL must name a host the server allows (the test allows one): a generated
  URL becomes https://hooks.example.test/<n>;
- `all_faces` is for a policy that is neither consequential nor requires liveness (every
  face would be its own reviewed decision): under another policy it is sent as false;
- text never holds a NUL (U+0000: refused with 400 before any view, docs/api.md; JSON
  Schema has no way to say so short of a pattern on every string): NULs in generated
  path, query and body strings are dropped;
- an Idempotency-Key names one request: each generated request gets a fresh one.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.transport.serialization import Binary

IMAGE_FIELDS = ("image", "source", "target")
CONSENT = {"basis": "explicit_consent", "reference": "schemathesis"}


def _record_consent(collection_id: Any, subject_id: str) -> None:
    if not isinstance(collection_id, str):
        return
    url = (f"{os.environ['FACEAPI_SCHEMATHESIS_URL']}/v1/collections/"
           f"{quote(collection_id, safe='')}/subjects/{quote(subject_id, safe='')}/consent")
    # Whatever the answer (no such collection, an id the route refuses), the IndexFaces
    # request itself is what is checked.
    requests.post(url, json=CONSENT, timeout=10,
                  headers={"Authorization": os.environ["FACEAPI_SCHEMATHESIS_AUTH"]})


def _a_year_ahead() -> str:
    return (datetime.now(UTC) + timedelta(days=365)).isoformat()


def _future_consent_expiry(consent: Any) -> Any:
    """A consent (a JSON object, or its JSON text in a multipart part) whose generated
    `expires_at` is moved a year ahead."""
    if isinstance(consent, dict) and consent.get("expires_at") is not None:
        consent["expires_at"] = _a_year_ahead()
    elif isinstance(consent, str):
        try:
            parsed = json.loads(consent)
        except ValueError:
            return consent
        if isinstance(parsed, dict) and parsed.get("expires_at") is not None:
            parsed["expires_at"] = _a_year_ahead()
            return json.dumps(parsed)
    return consent


def _image() -> bytes:
    return Path(os.environ["FACEAPI_SCHEMATHESIS_IMAGE"]).read_bytes()


def _positive(case: Any) -> bool:
    """Generated as valid in every part (the coverage phase marks a case by its parts)."""
    meta = getattr(case, "_meta", None)
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE and all(
        component.mode == GenerationMode.POSITIVE for component in meta.components.values())


def _replace_images(body: dict[str, Any]) -> None:
    for name in IMAGE_FIELDS:
        value = body.get(name)
        if isinstance(value, Binary):
            body[name] = Binary(_image())
        elif isinstance(value, bytes):
            body[name] = _image()
        elif isinstance(value, dict) and isinstance(value.get("bytes"), str):
            value["bytes"] = base64.b64encode(_image()).decode("ascii")


def _drop_nul(container: Any) -> None:
    """Remove NULs from the strings of a dict or list, in place (schemathesis keeps
    references into the case's parts)."""
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in list(items):
        if isinstance(value, str) and "\x00" in value:
            container[key] = value.replace("\x00", "")
        elif isinstance(value, (dict, list)):
            _drop_nul(value)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    positive = _positive(case)
    body = case.body
    if isinstance(body, dict):
        _replace_images(body)
    if positive:
        for part in (case.path_parameters, case.query, body):
            if isinstance(part, dict):
                _drop_nul(part)
        if isinstance(case.query, dict):
            case.query.pop("cursor", None)
        if case.headers and "Idempotency-Key" in case.headers:
            # A key names one request: reused for another body it is (rightly) a 422.
            case.headers["Idempotency-Key"] = f"st-{uuid.uuid4()}"
        if isinstance(body, dict):
            multipart = (case.media_type or "").startswith("multipart/")
            if case.path == "/v1/keys" and body.get("expires_at") is not None:
                body["expires_at"] = _a_year_ahead()
            if case.path == "/v1/webhook" and case.method.upper() == "PUT" and \
                    isinstance(body.get("url"), str):
                body["url"] = f"https://hooks.example.test/{uuid.uuid4().hex}"
            if body.get("all_faces") is True and body.get("policy") != "photo_tagging":
                body["all_faces"] = False
            if case.path.endswith("/consent") and case.method.upper() == "POST":
                _future_consent_expiry(body)
            if "consent" in body:
                body["consent"] = _future_consent_expiry(body["consent"])
            if case.path.endswith("/faces") and case.method.upper() == "POST":
                if not multipart and body.get("consent") is None:
                    body["consent"] = CONSENT
                elif multipart and body.get("consent") is None and \
                        isinstance(body.get("subject_id"), str):
                    _record_consent(case.path_parameters.get("collection_id"),
                                    body["subject_id"])
    # Every edit above keeps the case exactly as valid or invalid as it was generated;
    # schemathesis would re-judge an edited body, and it judges any body holding binary
    # parts invalid (it cannot validate them), so the generation-time verdict is kept.
    case._sync_validated_hashes()
