"""The webhooks table (a key's callback URL, its sealed signing secret) and the
webhook_deliveries outbox (docs/webhooks.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Row, and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from faceapi.adapters.secret_box import SecretBox, SecretBoxError
from faceapi.adapters.store.db import UNAUDITED
from faceapi.adapters.store.tables import webhook_deliveries, webhooks
from faceapi.domain.webhooks import Delivery, DeliveryStatus, Webhook

log = structlog.get_logger(__name__)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _context(key_id: str) -> str:
    # Bound as associated data: a sealed secret copied to another key's row does not open.
    return f"webhooks/{key_id}"


def _delivery(row: Row[Any]) -> Delivery:
    next_at, created = _utc(row.next_attempt_at), _utc(row.created_at)
    assert next_at is not None
    assert created is not None
    return Delivery(id=row.id, key_id=row.key_id, decision_id=row.decision_id,
                    status=DeliveryStatus(row.status), attempts=row.attempts,
                    next_attempt_at=next_at, created_at=created,
                    lease_until=_utc(row.lease_until),
                    last_attempt_at=_utc(row.last_attempt_at),
                    delivered_at=_utc(row.delivered_at),
                    last_status_code=row.last_status_code, last_error=row.last_error)


class SqlWebhooksRepo:
    """WebhooksRepo on the unit of work's connection (it never commits)."""

    def __init__(self, conn: Connection, secret_box: SecretBox | None = None) -> None:
        self._conn = conn
        self._box = secret_box

    def _require_box(self) -> SecretBox:
        if self._box is None:
            raise RuntimeError("this store has no secret box: webhook secrets are unavailable")
        return self._box

    def put(self, webhook: Webhook, secret: str) -> None:
        sealed = self._require_box().seal(secret, context=_context(webhook.key_id))
        self._conn.execute(delete(webhooks).where(webhooks.c.key_id == webhook.key_id))
        self._conn.execute(insert(webhooks).values(
            key_id=webhook.key_id, url=webhook.url, secret_sealed=sealed,
            created_at=webhook.created_at, created_by=webhook.created_by))

    def get(self, key_id: str) -> Webhook | None:
        row = self._conn.execute(select(webhooks).where(webhooks.c.key_id == key_id)).first()
        if row is None:
            return None
        created = _utc(row.created_at)
        assert created is not None
        return Webhook(key_id=row.key_id, url=row.url, created_at=created,
                       created_by=row.created_by)

    def secret(self, key_id: str) -> str | None:
        sealed = self._conn.execute(select(webhooks.c.secret_sealed)
                                    .where(webhooks.c.key_id == key_id)).scalar_one_or_none()
        if sealed is None:
            return None
        try:
            return self._require_box().open(sealed, context=_context(key_id))
        except SecretBoxError:
            log.error("webhook_secret_unreadable", key_id=key_id)
            return None

    def delete(self, key_id: str) -> bool:
        result = self._conn.execute(delete(webhooks).where(webhooks.c.key_id == key_id))
        return bool(result.rowcount)

    def enqueue(self, delivery: Delivery) -> bool:
        exists = self._conn.execute(select(webhook_deliveries.c.id).where(
            webhook_deliveries.c.decision_id == delivery.decision_id,
            webhook_deliveries.c.key_id == delivery.key_id)).first()
        if exists is not None:
            return False
        # A decision becomes final once, under its review's row lock (services/review.py
        # `_close`), so no two transactions race here; the unique index backs that up.
        self._conn.execute(insert(webhook_deliveries).values(
            id=delivery.id, key_id=delivery.key_id, decision_id=delivery.decision_id,
            status=delivery.status.value, attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at, created_at=delivery.created_at))
        return True

    def due(self, now: datetime, limit: int) -> list[Delivery]:
        rows = self._conn.execute(
            select(webhook_deliveries)
            .where(webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                   webhook_deliveries.c.next_attempt_at <= now,
                   or_(webhook_deliveries.c.lease_until.is_(None),
                       webhook_deliveries.c.lease_until <= now))
            .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id)
            .limit(limit))
        return [_delivery(r) for r in rows]

    def claim(self, delivery_id: str, now: datetime, lease_until: datetime) -> bool:
        # Compare-and-set on (pending, lease free): of two workers only one matches the
        # row. Bookkeeping, not a change an auditor needs: the attempt's outcome is the
        # audited event (services/webhooks.py).
        result = self._conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id,
                   webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                   webhook_deliveries.c.next_attempt_at <= now,
                   or_(webhook_deliveries.c.lease_until.is_(None),
                       webhook_deliveries.c.lease_until <= now))
            .values(lease_until=lease_until, attempts=webhook_deliveries.c.attempts + 1,
                    last_attempt_at=now)
            .execution_options(**{UNAUDITED: True}))
        return result.rowcount == 1

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = self._conn.execute(select(webhook_deliveries)
                                 .where(webhook_deliveries.c.id == delivery_id)).first()
        return None if row is None else _delivery(row)

    def finish(self, delivery: Delivery) -> bool:
        held = (webhook_deliveries.c.lease_until.is_(None) if delivery.lease_until is None
                else webhook_deliveries.c.lease_until == delivery.lease_until)
        result = self._conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery.id, held)
            .values(status=delivery.status.value, next_attempt_at=delivery.next_attempt_at,
                    lease_until=None, delivered_at=delivery.delivered_at,
                    last_status_code=delivery.last_status_code,
                    last_error=delivery.last_error))
        return result.rowcount == 1

    def deliveries(self, key_id: str, *, limit: int, before: str | None = None,
                   status: DeliveryStatus | None = None) -> list[Delivery]:
        stmt = select(webhook_deliveries).where(webhook_deliveries.c.key_id == key_id)
        if status is not None:
            stmt = stmt.where(webhook_deliveries.c.status == status.value)
        if before is not None:
            anchor = self._conn.execute(
                select(webhook_deliveries.c.created_at)
                .where(webhook_deliveries.c.id == before,
                       webhook_deliveries.c.key_id == key_id)).scalar_one_or_none()
            if anchor is None:
                return []
            stmt = stmt.where(or_(webhook_deliveries.c.created_at < anchor,
                                  and_(webhook_deliveries.c.created_at == anchor,
                                       webhook_deliveries.c.id < before)))
        stmt = stmt.order_by(webhook_deliveries.c.created_at.desc(),
                             webhook_deliveries.c.id.desc()).limit(limit)
        return [_delivery(r) for r in self._conn.execute(stmt)]

