"""Use case: review callbacks (issue 17, item 1; docs/webhooks.md).

- `register_webhook` / `get_webhook` / `delete_webhook`: a key manages its own webhook
  (the calling key only: the signing secret is shown once, to the key that verifies
  with it). Every registration, refusal and removal is audited.
- `enqueue_final`: called where a reviewed decision becomes final (services/review.py
  `_close`: a reviewer's last vote, the sweep's expiry, an erasure), inside that unit
  of work: the outbox row commits with the decision or not at all.
- `deliver_due`: the worker (`faceapi webhooks deliver`). Claim a row with a lease
  (committed before sending, so two workers never send it at once), render the body as
  `GET /v1/decisions/{id}` shows it to the requester key at that moment, sign, send,
  record the outcome with its audit event. A worker killed mid-send leaves the lease to
  run out; the next run sends the same delivery id again (at least once).

Only decisions that went to review are called back: every other decision is final in
the answer to the request that made it, so there is nothing to wait for.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import structlog

from faceapi.domain.access import ApiKey, can_read_decision
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.decisions import Decision, requester_view
from faceapi.domain.errors import FaceApiError
from faceapi.domain.webhooks import (
    DELIVERY_ID_HEADER,
    EVENT_DECISION_FINAL,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    AddressRules,
    Delivery,
    DeliveryStatus,
    Webhook,
    WebhookNotFound,
    WebhookUrlRefused,
    backoff,
    check_url,
    signature_header,
)
from faceapi.services.ports import SendResult, UnitOfWork, UnitOfWorkFactory, WebhookSender

log = structlog.get_logger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
DELIVERY_BATCH = 50


class NoKey(FaceApiError):
    code = "forbidden"


@dataclass(frozen=True)
class RegisteredWebhook:
    webhook: Webhook
    secret: str  # shown once, in the registration's answer


@dataclass(frozen=True)
class DeliverySettings:
    max_attempts: int
    backoff_seconds: int
    # Longer than any one attempt can take (the sender's total deadline, DNS), so a
    # lease runs out only when its worker died (config.py checks it).
    lease_seconds: int

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0


def _key_id(actor: Actor) -> str:
    if actor.key_id is None:
        raise NoKey("a webhook belongs to an API key")
    return actor.key_id


def register_webhook(url: str, *, actor: Actor, uow: UnitOfWork, clock: Clock,
                     rules: AddressRules, request_id: str | None = None
                     ) -> RegisteredWebhook:
    """Set (or replace) the calling key's webhook with a new signing secret. A refused
    address is audited (`webhook.register`, outcome `refused`) and stores nothing else."""
    key_id = _key_id(actor)
    now = clock.now()
    with uow:
        try:
            parts = check_url(url, rules)
        except WebhookUrlRefused as exc:
            host = _host_of(url)
            uow.audit.append(AuditEvent(
                action=Action.WEBHOOK_REGISTER, outcome="refused", actor=actor,
                resource=f"keys/{key_id}/webhook", request_id=request_id,
                reason=str(exc.details.get("reason", "refused")),
                details={"host": host} if host else {}))
            uow.commit()
            raise
        webhook = Webhook(key_id=key_id, url=url, created_at=now, created_by=key_id)
        secret = SECRET_PREFIX + secrets.token_hex(32)
        replaced = uow.webhooks.get(key_id) is not None
        uow.webhooks.put(webhook, secret)
        uow.audit.append(AuditEvent(
            action=Action.WEBHOOK_REGISTER, outcome="replaced" if replaced else "registered",
            actor=actor, resource=f"keys/{key_id}/webhook", request_id=request_id,
            details={"host": (parts.hostname or "")[:253], "scheme": parts.scheme}))
        uow.commit()
    return RegisteredWebhook(webhook, secret)


def _host_of(url: object) -> str:
    # What a refused URL's audit event may name: a short host, never the path or query
    # (which can carry tokens).
    if not isinstance(url, str):
        return ""
    try:
        host = urlsplit(url[:2048]).hostname or ""
    except ValueError:
        return ""
    return "".join(c for c in host if c.isalnum() or c in ".-:[]")[:128]


def get_webhook(*, actor: Actor, uow: UnitOfWork) -> Webhook:
    key_id = _key_id(actor)
    with uow:
        webhook = uow.webhooks.get(key_id)
    if webhook is None:
        raise WebhookNotFound("this key has no webhook")
    return webhook


def delete_webhook(*, actor: Actor, uow: UnitOfWork, request_id: str | None = None) -> None:
    """Remove the calling key's webhook; deliveries still queued are cancelled when
    their turn comes."""
    key_id = _key_id(actor)
    with uow:
        if not uow.webhooks.delete(key_id):
            raise WebhookNotFound("this key has no webhook")
        uow.audit.append(AuditEvent(
            action=Action.WEBHOOK_DELETE, outcome="deleted", actor=actor,
            resource=f"keys/{key_id}/webhook", request_id=request_id))
        uow.commit()


def list_deliveries(*, actor: Actor, uow: UnitOfWork, limit: int = 50,
                    before: str | None = None,
                    status: DeliveryStatus | None = None) -> list[Delivery]:
    """The calling key's deliveries, newest first: another key's are never listed."""
    key_id = _key_id(actor)
    with uow:
        return uow.webhooks.deliveries(key_id, limit=limit, before=before, status=status)


def enqueue_final(uow: UnitOfWork, decision: Decision, now: datetime) -> Delivery | None:
    """Inside the unit of work that made `decision` final: queue its callback when the
    requester key has a webhook (audited as `webhook.delivery`, outcome `queued`)."""
    key_id = decision.requester_key_id
    if not decision.final or key_id is None or uow.webhooks.get(key_id) is None:
        return None
    delivery = Delivery(id=str(uuid.uuid4()), key_id=key_id, decision_id=decision.id,
                        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now,
                        created_at=now)
    if not uow.webhooks.enqueue(delivery):
        return None
    uow.audit.append(_delivery_event(delivery, "queued"))
    return delivery


def _delivery_event(delivery: Delivery, outcome: str, *, reason: str | None = None
                    ) -> AuditEvent:
    return AuditEvent(
        action=Action.WEBHOOK_DELIVERY, outcome=outcome,
        actor=Actor.system("webhook-deliver"), resource=f"keys/{delivery.key_id}/webhook",
        reason=reason, scores={"attempts": delivery.attempts,
                               "status_code": delivery.last_status_code},
        details={"delivery_id": delivery.id, "decision_id": delivery.decision_id})


@dataclass(frozen=True)
class _Prepared:
    delivery: Delivery
    url: str
    body: bytes
    headers: dict[str, str]


def _cancel(uow: UnitOfWork, delivery: Delivery, why: str, report: DeliveryReport) -> None:
    done = replace(delivery, status=DeliveryStatus.CANCELLED, last_error=why)
    uow.webhooks.finish(done)
    uow.audit.append(_delivery_event(done, "cancelled", reason=why))
    report.cancelled += 1


def _prepare(uow: UnitOfWork, delivery: Delivery, key: ApiKey | None, now: datetime,
             render: Callable[[Decision], bytes]) -> _Prepared | str:
    """The request to send, or why the delivery is cancelled instead."""
    if key is None or key.status(now) != "active":
        return "key_inactive"
    webhook = uow.webhooks.get(delivery.key_id)
    secret = uow.webhooks.secret(delivery.key_id)
    if webhook is None or secret is None:
        return "no_webhook"
    decision = uow.decisions.get(delivery.decision_id)
    if decision is None:
        return "decision_gone"  # deleted by retention before it could be sent
    # The read rules of GET /v1/decisions/{id} for this key: a pending decision is never
    # sent, and the body is the requester's view, as of now (an erasure since the
    # decision became final shows here as it does there).
    if not decision.final:
        return "not_final"
    if not can_read_decision(key.actor(), decision.requester_key_id,
                             decision.collection_id, decision.policy_name):
        return "not_visible"
    body = render(requester_view(decision))
    timestamp = int(now.timestamp())
    headers = {"Content-Type": "application/json", EVENT_HEADER: EVENT_DECISION_FINAL,
               DELIVERY_ID_HEADER: delivery.id,
               SIGNATURE_HEADER: signature_header(secret, timestamp, body),
               "User-Agent": "faceapi-webhooks/1"}
    return _Prepared(delivery, webhook.url, body, headers)


def deliver_due(*, uow_factory: UnitOfWorkFactory, sender: WebhookSender, clock: Clock,
                render: Callable[[Decision], bytes], settings: DeliverySettings,
                limit: int = DELIVERY_BATCH) -> DeliveryReport:
    """Send every due delivery once (up to `limit`): claim, send, record."""
    report = DeliveryReport()
    with uow_factory() as uow:
        due = uow.webhooks.due(clock.now(), limit)
    for candidate in due:
        now = clock.now()
        uow = uow_factory()
        with uow:
            if not uow.webhooks.claim(candidate.id, now, now + settings.lease):
                continue  # another worker has it
            claimed = uow.webhooks.get_delivery(candidate.id)
            assert claimed is not None
            prepared = _prepare(uow, claimed, uow.api_keys.get(claimed.key_id), now, render)
            if isinstance(prepared, str):
                _cancel(uow, claimed, prepared, report)
            uow.commit()  # the lease is held from here on, whatever happens to us
        if isinstance(prepared, str):
            continue
        try:
            result = sender.send(prepared.url, prepared.body, prepared.headers)
        except Exception:  # a sender bug must not wedge the outbox
            # Recorded as a failed attempt (retried, then given up) rather than left
            # leased and re-sent by every run until someone notices.
            log.exception("webhook_send_crashed", delivery_id=prepared.delivery.id)
            result = SendResult(None, "internal_error")
        _record(uow_factory(), prepared.delivery, result, now=clock.now(),
                settings=settings, report=report)
    return report


def _record(uow: UnitOfWork, delivery: Delivery, result: SendResult, *, now: datetime,
            settings: DeliverySettings, report: DeliveryReport) -> None:
    tried = replace(delivery, last_status_code=result.status_code,
                    last_error=None if result.ok else (result.error or "http_status"))
    if result.ok:
        done, outcome = replace(tried, status=DeliveryStatus.DELIVERED, delivered_at=now), \
            "delivered"
    elif delivery.attempts >= settings.max_attempts:
        done, outcome = replace(tried, status=DeliveryStatus.FAILED), "failed"
    else:
        done, outcome = replace(tried, next_attempt_at=now + backoff(
            delivery.attempts, base_seconds=settings.backoff_seconds)), "retrying"
    with uow:
        if not uow.webhooks.finish(done):
            # Our lease ran out (a resolver slower than the lease allows) and another
            # worker holds the delivery now: its outcome is the one recorded.
            log.warning("webhook_lease_lost", delivery_id=done.id, outcome=outcome)
            return
        uow.audit.append(_delivery_event(done, outcome, reason=done.last_error))
        uow.commit()
    setattr(report, outcome, getattr(report, outcome) + 1)
    log.info("webhook_delivery", delivery_id=done.id, outcome=outcome,
             status_code=result.status_code, error=result.error, attempts=done.attempts)
