"""A delivery round's record: how each claimed delivery ended, written in one transaction.

Each row is marked delivered, rescheduled (exponential backoff with jitter, never
sooner than Retry-After) or failed — a failure publishes `lead.delivery_failed`
through the outbox. Rows are written with one statement per set of changed columns;
assignments whose every delivery is now delivered get `delivered_at`. A destination
that asked to wait is paused for everyone.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from services.router import domain, store
from services.router.commands import RecordDeliveryResults
from services.router.destinations import DeliveryResult, Destination
from services.router.settings import Delivery, RoutingConfig
from shared import metrics
from shared.db import UnitOfWork
from shared.events import LeadDeliveryFailed

log = logging.getLogger(__name__)


async def handle_record_delivery_results(
    command: RecordDeliveryResults,
    uow: UnitOfWork,
    *,
    config: RoutingConfig,
    destinations: dict[str, Destination],
) -> datetime | None:
    """Store how each claimed delivery ended (rows cancelled meanwhile are left alone);
    returns when the earliest pending delivery is now due (None: nothing pending), so the
    worker knows how long it may sleep without another transaction."""
    now, session = command.now, uow.session
    for name in command.claimed:
        destination = destinations[name]
        if destination.pause is not None:
            await store.destination_row(session, uow.dialect, name, now)
            await store.save_destination_state(
                session,
                name,
                paused_until=now + timedelta(seconds=destination.pause.seconds),
                updated_at=now,
            )
            destination.pause = None
    rows = await store.lock_deliveries(
        session, (item.delivery_id for items in command.claimed.values() for item in items)
    )
    changes: list[tuple[str, dict[str, Any]]] = []
    counts: Counter[tuple[str, str]] = Counter()
    delivered: list[Any] = []
    for items in command.claimed.values():
        for item in items:
            row = rows.get(item.delivery_id)
            if row is None or row.status != store.PENDING:
                continue  # cancelled meanwhile (erasure)
            result = command.results[item.delivery_id]
            status, values = _changes(uow, row, result, now, config.delivery)
            changes.append((row.delivery_id, values))
            counts[row.destination, status] += 1
            if status == "delivered":
                delivered.append(row)
    await store.update_deliveries(session, uow.dialect, changes)
    await _mark_delivered(uow, delivered, now)
    uow.after_commit(lambda: _count(counts))
    return await store.next_due_at(session)


def _count(counts: Counter[tuple[str, str]]) -> None:
    for (name, status), count in counts.items():
        metrics.deliveries_total.labels(name, status).inc(count)


def _changes(
    uow: UnitOfWork, row: Any, result: DeliveryResult, now: datetime, delivery: Delivery
) -> tuple[str, dict[str, Any]]:
    """How one delivery ended: the metric status and the columns to store."""
    progress = result.progress if result.progress is not None else (row.progress or {})
    ended = {
        "claimed_until": None,
        "last_status": result.http_status,
        "progress": progress,
    }
    if result.status == "delivered":
        return "delivered", {
            **ended,
            "status": store.DELIVERED,
            "delivered_at": now,
            "attempts": row.attempts + 1,
            "external_id": result.external_id,
        }
    attempts = row.attempts + (1 if result.counts_as_attempt else 0)
    too_old = now - row.created_at > timedelta(minutes=delivery.max_age_minutes)
    if result.status == "retry" and attempts < delivery.max_attempts and not too_old:
        wait = domain.backoff_delay(
            max(attempts, 1), delivery.backoff_seconds, delivery.backoff_max_seconds
        )
        wait = max(wait, result.retry_after or 0.0)
        log.info(
            "delivery will be retried in %.1fs: %s",
            wait,
            result.error,
            extra={"lead_id": row.lead_id, "destination": row.destination},
        )
        return "retried", {
            **ended,
            "attempts": attempts,
            "next_attempt_at": now + timedelta(seconds=wait),
            "last_error": result.error,
        }
    error = result.error or "failed"
    if result.status == "retry":
        error = f"gave up after {attempts} attempts: {error}"
    uow.publish(
        LeadDeliveryFailed(
            lead_id=row.lead_id,
            assignment_id=row.assignment_id,
            destination=row.destination,
            error=error[:500],
            attempts=max(attempts, 1),
            failed_at=now,
        )
    )
    log.warning(
        "delivery failed: %s", error, extra={"lead_id": row.lead_id, "destination": row.destination}
    )
    return "failed", {
        **ended,
        "status": store.FAILED,
        "attempts": max(attempts, 1),
        "failed_at": now,
        "last_error": error,
    }


async def _mark_delivered(uow: UnitOfWork, rows: list[Any], now: datetime) -> None:
    """Assignments whose every (non-escalation) delivery is now delivered get `delivered_at`."""
    ids = list(dict.fromkeys(r.assignment_id for r in rows if r.purpose != "escalation"))
    if not ids:
        return
    fresh = await store.mark_delivered(uow.session, ids, now)
    waits = [
        max((now - assignment.captured_at).total_seconds(), 0.0)
        for assignment in fresh
        if not assignment.reassigned_from
    ]

    def observe() -> None:
        for seconds in waits:
            metrics.speed_to_lead_seconds.labels("delivered").observe(seconds)

    uow.after_commit(observe)
