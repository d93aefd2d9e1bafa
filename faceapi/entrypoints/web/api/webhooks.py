"""Review callbacks: the calling key's webhook and its delivery log (docs/webhooks.md).

A key manages its own webhook only (`/v1/webhook` has no key id in it): the signing
secret is shown once, to the key that will verify with it, and another key can neither
read nor change it."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from faceapi.domain.webhooks import MAX_URL_LENGTH, Delivery, DeliveryStatus, Webhook
from faceapi.entrypoints.web.api.deps import current_actor, request_id, use_cases
from faceapi.entrypoints.web.api.schemas import StrictSchema

blp = Blueprint("webhooks", __name__, url_prefix="/v1/webhook",
                description="Review callbacks: a key's webhook, signed deliveries of its "
                            "reviewed decisions once final, and their log")


class WebhookPutSchema(StrictSchema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=MAX_URL_LENGTH),
                        metadata={"description": "https URL on a host allowed by "
                                                 "FACEAPI_WEBHOOK_ALLOWED_HOSTS"})


class WebhookSchema(Schema):
    key_id = fields.String()
    url = fields.String()
    created_at = fields.DateTime()


class RegisteredWebhookSchema(WebhookSchema):
    secret = fields.String(metadata={"description": "the HMAC-SHA256 signing secret; shown "
                                                    "only in this response, store it now"})


class DeliveryListArgsSchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    before = fields.String(load_default=None, validate=validate.Length(max=36),
                           metadata={"description": "the last delivery_id of the "
                                                    "previous page"})
    status = fields.String(load_default=None,
                           validate=validate.OneOf([s.value for s in DeliveryStatus]))


class DeliverySchema(Schema):
    delivery_id = fields.String(attribute="id")
    decision_id = fields.String()
    status = fields.Function(lambda d: d.status.value,
                             metadata={"description": "pending | delivered | failed | "
                                                      "cancelled"})
    attempts = fields.Integer()
    next_attempt_at = fields.Function(
        lambda d: d.next_attempt_at.isoformat() if d.status is DeliveryStatus.PENDING
        else None)
    created_at = fields.DateTime()
    last_attempt_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)


class DeliveryListSchema(Schema):
    deliveries = fields.List(fields.Nested(DeliverySchema))


def _view(webhook: Webhook) -> dict[str, Any]:
    return {"key_id": webhook.key_id, "url": webhook.url, "created_at": webhook.created_at}


@blp.route("", methods=["PUT"])
@blp.arguments(WebhookPutSchema)
@blp.response(200, RegisteredWebhookSchema)
@blp.alt_response(422, description="webhook_url_refused: not https, host not in "
                                   "FACEAPI_WEBHOOK_ALLOWED_HOSTS, or a non-public address "
                                   "(details.reason); audited")
def put_webhook(args: dict[str, Any]) -> Any:
    """Register (or replace) the calling key's webhook; a new signing secret is made and
    shown once. A URL outside the allowed hosts, not https, or naming a private,
    loopback or link-local address is refused (422 `webhook_url_refused`, audited)."""
    registered = use_cases().register_webhook(args["url"], actor=current_actor(),
                                              request_id=request_id())
    return {**_view(registered.webhook), "secret": registered.secret}


@blp.route("", methods=["GET"])
@blp.response(200, WebhookSchema)
@blp.alt_response(404, description="webhook_not_found: this key has no webhook")
def get_webhook() -> Any:
    """The calling key's webhook (never its secret); 404 `webhook_not_found` if none."""
    return _view(use_cases().get_webhook(actor=current_actor()))


@blp.route("", methods=["DELETE"])
@blp.response(204)
@blp.alt_response(404, description="webhook_not_found: this key has no webhook")
def delete_webhook() -> None:
    """Remove the calling key's webhook; queued deliveries are cancelled."""
    use_cases().delete_webhook(actor=current_actor(), request_id=request_id())


@blp.route("/deliveries", methods=["GET"])
@blp.arguments(DeliveryListArgsSchema, location="query")
@blp.response(200, DeliveryListSchema)
def list_webhook_deliveries(args: dict[str, Any]) -> Any:
    """The calling key's deliveries, newest first: one per reviewed decision of the key
    that became final while the webhook was registered."""
    status = DeliveryStatus(args["status"]) if args["status"] else None
    found: list[Delivery] = use_cases().list_webhook_deliveries(
        actor=current_actor(), limit=args["limit"], before=args["before"], status=status)
    return {"deliveries": found}
