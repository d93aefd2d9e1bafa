"""/openapi.json tells the truth (issue 17, item 6): what a client generated from it, or
`schemathesis run --checks all`, may rely on.

Call `document_truth` last in create_app, after auth.document_security. It edits the
registered paths and components in place:

- every error response (4xx, 5xx and `default`) is our envelope, `{"error": {"code",
  "message", "request_id", "details"}}` (api/errors.py `ErrorSchema`), never
  flask-smorest's default error body; 423, 429 and 503 say `Retry-After`;
- the statuses every operation can give are listed: 404 for a path with ids, 400/413/422
  for a body, 422 for query arguments, 413/415/422/502/503 for an image, 503 when the
  store is down (`store_unavailable`), and the Idempotency-Key answers where the key is
  honoured (api/idempotency.py);
- image bodies say what the server requires: each image field is required, as a file
  part (multipart, with the other plain fields beside it) or as `{"bytes": "<base64>"}`
  (JSON); an `S3Object` only where the engine reads S3;
- a `policy` (or `policies`) field lists the policies in force that it accepts;
- the audit cursor is described as the opaque token it is; `/docs` is HTML.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from flask import Flask

from faceapi.domain.policies import PolicySet
from faceapi.entrypoints.web.api.idempotency import HEADER, IDEMPOTENT_ATTR, REPLAYED_HEADER

# Collection and subject ids (domain/collections.py ID_RE), in ECMA-262 form.
ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"
_ID_PARAMETERS = frozenset({"collection_id", "subject_id"})
ERROR_REF = {"$ref": "#/components/schemas/Error"}
_CONVERTER_RE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer", "minimum": 0}}}
_GENERIC: dict[str, str] = {
    "400": "the request is not readable (`bad_request`)",
    "404": "not found, or outside the key's scope (`not_found`, `review_not_found`, "
           "`decision_not_found`)",
    "413": "the body or an image is too large (`request_too_large`, `image_too_large`, "
           "`image_too_many_pixels`)",
    "415": "the image is not JPEG or PNG (`unsupported_image_format`)",
    "422": "the request is not valid (`validation_error` with `details.fields`, or a "
           "rule's own code such as `unknown_policy`, `missing_image`, `invalid_image`, "
           "`invalid_parameter`)",
    "502": "the engine refused our credentials (`engine_access_denied`)",
    "503": "the store or the engine is unavailable (`store_unavailable`, "
           "`engine_unavailable`, `engine_throttled`); see Retry-After",
    "409": "conflict with the current state (`conflict`)",
}
_IDEMPOTENCY_ANSWERS: dict[str, str] = {
    "400": "`invalid_idempotency_key`: the header is not 1-255 printable ASCII "
           "characters without a comma",
    "409": "`idempotency_in_progress` (retry after Retry-After), or "
           "`idempotency_response_unavailable` (the first request was carried out; its "
           "answer was lost or erased)",
    "422": "`idempotency_key_reused`: the key was used for a different request",
}
# Which policies a `policy` field of a request component accepts, by component.
_POLICY_OPERATIONS: dict[str, tuple[str, ...]] = {
    "VerifyRequest": ("verify",),
    "PolicyCompareRequest": ("compare",),
    "SearchRequest": ("search",),
    "CreateCollectionRequest": ("verify", "search"),
    "CollectionPolicies": ("verify", "search"),
}


def document_truth(api: Any, app: Flask, *, policies: PolicySet, engine_reads_s3: bool) -> None:
    schemas: dict[str, Any] = api.spec.components.schemas
    _image_components(schemas, engine_reads_s3)
    _policy_enums(schemas, policies)
    _nullable_refs(schemas)
    _scope_names(schemas)
    paths: dict[str, dict[str, Any]] = api.spec._paths  # apispec keeps registered paths here
    idempotent = _idempotent_operations(app)
    for path, operations in paths.items():
        _path_ids(operations.get("parameters"))
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            _errors_are_the_envelope(operation["responses"])  # smorest's refs inlined
            _statuses(path, operation)
            _path_ids(operation.get("parameters"))
            if (method, path) in idempotent:
                _idempotency(operation)
            body = operation.get("requestBody")
            if isinstance(body, dict) and "x-image-fields" in body:
                _image_body(body, schemas)
            _errors_are_the_envelope(operation["responses"])
    _special_cases(paths)


def _idempotent_operations(app: Flask) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is not None and getattr(view, IDEMPOTENT_ATTR, False):
            path = _CONVERTER_RE.sub(r"{\1}", rule.rule)
            found.update((m.lower(), path) for m in rule.methods or ()
                         if m not in ("HEAD", "OPTIONS"))
    return found


def _add(responses: dict[str, Any], status: str, description: str, *,
         append: bool = False) -> None:
    existing = responses.get(status)
    if existing is None:
        responses[status] = {"description": description}
    elif append and isinstance(existing, dict) and "$ref" not in existing and \
            description not in existing.get("description", ""):
        existing["description"] = f"{existing.get('description', '')}; {description}".strip("; ")


def _path_ids(parameters: Any) -> None:
    for parameter in parameters if isinstance(parameters, list) else ():
        if parameter.get("in") == "path" and parameter.get("name") in _ID_PARAMETERS:
            parameter["schema"] = {**parameter.get("schema", {}), "pattern": ID_PATTERN}


def _statuses(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    public = operation.get("security") == []
    if "{" in path:
        _add(responses, "404", _GENERIC["404"])
    if "requestBody" in operation:
        for status in ("400", "413", "422"):
            _add(responses, status, _GENERIC[status])
    if any(p.get("in") == "query" for p in operation.get("parameters", ())):
        _add(responses, "422", _GENERIC["422"])
    body = operation.get("requestBody")
    if isinstance(body, dict) and "x-image-fields" in body:
        for status in ("415", "502", "503"):
            _add(responses, status, _GENERIC[status])
    if not public:
        _add(responses, "503", _GENERIC["503"])


def _idempotency(operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    if not any(p.get("name") == HEADER for p in parameters):
        parameters.append({
            "in": "header", "name": HEADER, "required": False,
            "description": "any unique string; the same key and request within 24 h get "
                           f"the first answer again (with `{REPLAYED_HEADER}: true`) and "
                           "change nothing (docs/api.md, Idempotent requests)",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                       "pattern": r"^[!-+\--~]([ -+\--~]*[!-+\--~])?$"}})
    for status, description in _IDEMPOTENCY_ANSWERS.items():
        _add(operation["responses"], status, description, append=True)


def _errors_are_the_envelope(responses: dict[str, Any]) -> None:
    for status, given in list(responses.items()):
        if status != "default" and not status.startswith(("4", "5")):
            continue
        response = given
        if isinstance(given, dict) and "$ref" in given:
            # flask-smorest's shared DEFAULT_ERROR / UNPROCESSABLE_ENTITY: inline ours.
            response = responses[status] = {"description": _GENERIC.get(
                status, "an error: see `error.code` (docs/api.md)")}
        if not isinstance(response, dict):
            continue
        content = response.setdefault("content", {})
        if not content or "application/json" in content:
            content["application/json"] = {"schema": ERROR_REF}
        if status in ("423", "429", "503"):
            response.setdefault("headers", {}).update(_RETRY_AFTER)


def _image_components(schemas: dict[str, Any], engine_reads_s3: bool) -> None:
    image_bytes = {"type": "string", "format": "byte",
                   "description": "the image, base64 (JPEG or PNG)"}
    schemas["ImageBytes"] = {
        "type": "object", "properties": {"bytes": image_bytes}, "required": ["bytes"],
        "additionalProperties": False,
        "description": "an image as `{\"bytes\": \"<base64>\"}`"}
    image = schemas.get("Image")
    if isinstance(image, dict):
        image["properties"]["bytes"] = image_bytes
        if engine_reads_s3:
            image["minProperties"] = image["maxProperties"] = 1
            image["description"] = "`bytes` or `S3Object`, not both"
        else:  # this engine cannot fetch from S3: only bytes are accepted here
            image["properties"].pop("S3Object", None)
            image["required"] = ["bytes"]


def _image_body(body: dict[str, Any], schemas: dict[str, Any]) -> None:
    fields: list[str] = body.pop("x-image-fields")
    s3 = bool(body.pop("x-s3", False))
    content = body["content"]
    ref = content["application/json"]["schema"].get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    component = schemas.get(name)
    if not isinstance(component, dict):
        return
    properties: dict[str, Any] = component.setdefault("properties", {})
    for field in fields:
        properties[field] = {"$ref": "#/components/schemas/"
                                     + ("Image" if s3 else "ImageBytes")}
    component["required"] = sorted({*component.get("required", ()), *fields})
    # The same request as a form: plain fields beside the file parts.
    form: dict[str, Any] = {}
    for key, prop in properties.items():
        if key in fields:
            form[key] = {"type": "string", "format": "binary"}
        elif _plain(prop):
            plain = {k: v for k, v in prop.items() if k not in ("nullable", "default")}
            if plain.get("type") == "array":
                # A form field sent once is a list of one; repeat it for more.
                plain = {"anyOf": [plain["items"], plain]}
            form[key] = plain
        elif isinstance(prop, dict) and "$ref" in str(prop):
            # A nested object travels as a part of JSON text (e.g. IndexFaces' consent).
            form[key] = {k: v for k, v in prop.items() if k not in ("nullable", "default")}
            content["multipart/form-data"].setdefault("encoding", {})[key] = {
                "contentType": "application/json"}
    content["multipart/form-data"]["schema"] = {
        "type": "object", "properties": form, "additionalProperties": False,
        "required": [k for k in component["required"] if k in form]}


def _plain(prop: Any) -> bool:
    if not isinstance(prop, dict) or "$ref" in prop or "anyOf" in prop or "allOf" in prop:
        return False
    kind = prop.get("type")
    if kind == "array":
        return _plain(prop.get("items")) and prop["items"].get("type") != "array"
    return kind in ("string", "integer", "number", "boolean")


def _names(policies: PolicySet, operations: Iterable[str]) -> list[str]:
    wanted = set(operations)
    return sorted(name for name, p in policies.items() if p.operation.value in wanted)


def _policy_enums(schemas: dict[str, Any], policies: PolicySet) -> None:
    for component, operations in _POLICY_OPERATIONS.items():
        properties = schemas.get(component, {}).get("properties", {})
        names = _names(policies, operations)
        if not names:
            continue
        if isinstance(properties.get("policy"), dict):
            properties["policy"]["enum"] = names
        policies_prop = properties.get("policies")
        if isinstance(policies_prop, dict) and isinstance(policies_prop.get("items"), dict):
            policies_prop["items"] = {**policies_prop["items"], "enum": names}


def _nullable_refs(schemas: dict[str, Any]) -> None:
    """apispec writes an optional nested object as `anyOf: [{$ref}, {type: object,
    nullable}]`, and that second branch admits *any* object; what the server takes is
    the referenced object or null."""
    for component in schemas.values():
        for name, prop in (component.get("properties") or {}).items():
            branches = prop.get("anyOf") if isinstance(prop, dict) else None
            if isinstance(branches, list) and len(branches) == 2 and "$ref" in branches[0] \
                    and branches[1] == {"type": "object", "nullable": True}:
                rest = {k: v for k, v in prop.items() if k != "anyOf"}
                component["properties"][name] = {**rest, "nullable": True,
                                                 "allOf": [branches[0]]}


# What domain/access.py `check_scope_names` accepts as a key's scope entry: surrounding
# whitespace (Python's str.isspace) is trimmed, an all-blank entry ignored, and a name
# holds no whitespace or comma.
_SPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
SCOPE_NAME_PATTERN = f"^[{_SPACE}]*(?:[^{_SPACE},]+[{_SPACE}]*)?$"


# services/keys.py: a key's name and owner, after trimming (the owner is then lower-cased).
KEY_NAME_PATTERN = f"^[{_SPACE}]*[A-Za-z0-9][A-Za-z0-9 ._:@-]{{0,127}}[{_SPACE}]*$"
KEY_OWNER_PATTERN = f"^[{_SPACE}]*[A-Za-z0-9][A-Za-z0-9 ._:@+_-]{{0,127}}[{_SPACE}]*$"


def _scope_names(schemas: dict[str, Any]) -> None:
    properties = schemas.get("KeyCreate", {}).get("properties", {})
    for field in ("collections", "policies"):
        prop = properties.get(field)
        if isinstance(prop, dict) and isinstance(prop.get("items"), dict):
            prop["items"] = {**prop["items"], "pattern": SCOPE_NAME_PATTERN}
    for field, pattern in (("name", KEY_NAME_PATTERN), ("owner", KEY_OWNER_PATTERN)):
        if isinstance(properties.get(field), dict):
            properties[field]["pattern"] = pattern
    # services/collections.py check_consent_reference: not blank.
    reference = schemas.get("ConsentInput", {}).get("properties", {}).get("reference")
    if isinstance(reference, dict):
        reference["pattern"] = f"[^{_SPACE}]"


def _special_cases(paths: dict[str, dict[str, Any]]) -> None:
    docs = paths.get("/docs", {}).get("get")
    if isinstance(docs, dict):
        docs["responses"]["200"] = {"description": "this API's reference as an HTML page",
                                    "content": {"text/html": {"schema": {"type": "string"}}}}
    events = paths.get("/v1/audit/events", {}).get("get")
    for parameter in (events or {}).get("parameters", ()):
        if parameter.get("name") == "cursor":
            parameter["description"] = (
                "opaque: the `next_cursor` of the previous page, with the same `order` "
                "(URL-safe base64, no padding; empty: the first page); anything else is 422 "
                "`invalid_parameter`")
            parameter["schema"] = {**copy.deepcopy(parameter.get("schema", {})),
                                   "pattern": "^[A-Za-z0-9_-]*$"}
