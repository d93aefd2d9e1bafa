"""API key administration (admin role): create, list, get, revoke.

A scoped admin sees and manages only keys inside its own scope; any other key answers
like a missing one (faceapi.services.keys.manages)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from werkzeug.routing import BaseConverter

from faceapi.domain import access
from faceapi.domain.access import ApiKey
from faceapi.entrypoints.web.api.deps import container, current_actor, use_cases
from faceapi.services import keys as key_service

blp = Blueprint("keys", __name__, url_prefix="/v1/keys",
                description="API keys (admin): created keys are shown once, then only their id")


class KeyCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    role = fields.String(required=True, validate=validate.OneOf(access.ROLES))
    owner = fields.String(required=True, validate=validate.Length(min=1, max=128),
                          metadata={"description": "the person or system the key belongs "
                                                   "to, e.g. alice@example.org or "
                                                   "system:billing-app; stored lower case. "
                                                   "The two-person rule counts owners"})
    collections = fields.List(fields.String(validate=validate.Length(min=1, max=128)),
                              load_default=None, allow_none=True,
                              validate=validate.Length(max=1000),
                              metadata={"description": "collections the key may use; "
                                                       "absent or null: all"})
    policies = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                           load_default=None, allow_none=True,
                           validate=validate.Length(max=100),
                           metadata={"description": "policies the key may use; absent or "
                                                    "null: all"})
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True,
                                      default_timezone=UTC,
                                      metadata={"description": "ISO 8601; absent: never"})


class KeyListArgsSchema(Schema):
    include_revoked = fields.Boolean(load_default=True)


class KeySchema(Schema):
    id = fields.String(metadata={"description": "the key's public prefix: fa_<id>_..."})
    name = fields.String()
    owner = fields.String()
    role = fields.String()
    status = fields.String(metadata={"description": "active | revoked | expired"})
    collections = fields.List(fields.String(), allow_none=True)
    policies = fields.List(fields.String(), allow_none=True)
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)
    created_by = fields.String(allow_none=True)


class CreatedKeySchema(KeySchema):
    key = fields.String(metadata={"description": "the API key itself; shown only in this "
                                                 "response, store it now"})
    aws_access_key_id = fields.String(metadata={
        "description": "for the Rekognition-compatible endpoint (AWS SDKs): the key's id"})
    aws_secret_access_key = fields.String(metadata={
        "description": "for the Rekognition-compatible endpoint: the SigV4 secret access "
                       "key that signs requests; shown only in this response"})


class KeyListSchema(Schema):
    keys = fields.List(fields.Nested(KeySchema))


def _view(key: ApiKey) -> dict[str, Any]:
    # Never the hash: it is not secret enough to publish (it would let anyone confirm
    # a leaked key offline) and nobody needs it.
    return {"id": key.id, "name": key.name, "owner": key.owner, "role": key.role,
            "status": key.status(container().clock.now()),
            "collections": sorted(key.collections) if key.collections is not None else None,
            "policies": sorted(key.policies) if key.policies is not None else None,
            "created_at": key.created_at, "expires_at": key.expires_at,
            "revoked_at": key.revoked_at, "last_used_at": key.last_used_at,
            "created_by": key.created_by}


@blp.route("", methods=["POST"])
@blp.arguments(KeyCreateSchema)
@blp.response(201, CreatedKeySchema)
def create_key(args: dict[str, Any]) -> Any:
    """Create an API key; the response holds the key, which is never shown again."""
    new = key_service.NewKey(
        name=args["name"], role=args["role"], owner=args["owner"],
        collections=frozenset(args["collections"]) if args["collections"] is not None else None,
        policies=frozenset(args["policies"]) if args["policies"] is not None else None,
        expires_at=args["expires_at"])
    created = use_cases().create_key(new, actor=current_actor())
    return {**_view(created.key), "key": created.secret,
            "aws_access_key_id": created.key.id,
            "aws_secret_access_key": created.sigv4_secret}


@blp.route("", methods=["GET"])
@blp.arguments(KeyListArgsSchema, location="query")
@blp.response(200, KeyListSchema)
def list_keys(args: dict[str, Any]) -> Any:
    """List the API keys inside the caller's scope (ids, names, owners, roles, scopes,
    times; never the keys)."""
    keys = use_cases().list_keys(actor=current_actor(),
                                 include_revoked=args["include_revoked"])
    return {"keys": [_view(k) for k in keys]}


@blp.route("/me", methods=["GET"])
@blp.response(200, KeySchema)
def get_own_key() -> Any:
    """The calling key: id, name, role, scope and expiry (any role; never the key)."""
    actor = current_actor()
    return _view(use_cases().get_key(actor.key_id or "", actor=actor))


class KeyIdConverter(BaseConverter):
    """A key id in a path: anything but `me`, which names the caller's own key (no key
    id is ever `me`), so that DELETE /v1/keys/me is a 405 whose Allow header names only
    what /me allows. Any other malformed id still reaches the views, after the key check
    (an unauthenticated probe gets 401, not a routing 404)."""

    regex = r"(?!me(?:/|$))[^/]+"


blp.record_once(lambda state: state.app.url_map.converters.setdefault("key_id",
                                                                      KeyIdConverter))
_KEY_ID = "/<key_id:key_id>"


@blp.route(_KEY_ID, methods=["GET"])
@blp.response(200, KeySchema)
def get_key(key_id: str) -> Any:
    """One API key by its id (404 for a key outside the caller's scope)."""
    return _view(use_cases().get_key(key_id, actor=current_actor()))


@blp.route(_KEY_ID, methods=["DELETE"])
@blp.response(200, KeySchema)
def revoke_key(key_id: str) -> Any:
    """Revoke an API key inside the caller's scope; it stops working at once on every
    worker. The last active unscoped admin key cannot be revoked (409)."""
    return _view(use_cases().revoke_key(key_id, actor=current_actor()))
