"""The delivery worker: claims due deliveries, sends them, records how each ended.

One round:
1. in a short transaction, due rows are claimed (`FOR UPDATE SKIP LOCKED` on
   PostgreSQL, so replicas never take the same row) and leased for a while;
   per-destination rate limits decide how many requests may go out now;
2. outside any transaction (SQLite's write lock is never held while a CRM
   thinks), the destinations are called;
3. in a second transaction each row is marked delivered, rescheduled (exponential
   backoff with jitter, never sooner than Retry-After) or failed — a failure
   publishes `lead.delivery_failed` through the outbox.

A crash between 2 and 3 leaves the row leased; when the lease runs out it is
claimed again (claims > 1). Destinations are idempotent on such a re-claim:
CRMs upsert on email, the file destination looks for the delivery id, webhooks
carry it as Idempotency-Key.

The worker is woken right after a routing transaction commits (under load, rounds
start at most every ROUND_INTERVAL, so leads routed close together share one);
polling is only the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from services.router import domain, store
from services.router.destinations import Destination, Item, Outcome
from services.router.settings import RoutingConfig
from shared import metrics
from shared.db.engine import is_transient_db_error
from shared.db.uow import UnitOfWork
from shared.events import LeadDeliveryFailed

log = logging.getLogger(__name__)

EVENTS = {
    "assigned": "lead.routed",
    "reassigned": "lead.reassigned",
    "escalation": "lead.sla_breached",
}
CONCURRENCY = 8
ROUND_INTERVAL = 0.025  # seconds


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def build_document(
    delivery: Any,
    assignment: Any,
    lead: Any,
    config: RoutingConfig,
    ack_url: str | None,
) -> dict[str, Any]:
    """What a destination receives about one routed lead (mappings read from it)."""
    contact = dict(lead.contact or {}) if lead is not None else {}
    full_name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    rep_config = config.reps.get(assignment.rep_id) if assignment.rep_id else None
    rep = (
        {
            "id": assignment.rep_id,
            "name": rep_config.name,
            "email": rep_config.email,
            "owner_ids": dict(rep_config.owner_ids),
        }
        if rep_config is not None
        else None
    )
    reason = assignment.reason or {}
    return {
        "event": EVENTS.get(delivery.purpose, "lead.routed"),
        "lead_id": delivery.lead_id,
        "delivery_id": delivery.delivery_id,
        "assignment_id": assignment.assignment_id,
        "rule_id": assignment.rule_id,
        "rep_id": assignment.rep_id,
        "queue": assignment.queue,
        "rep": rep,
        "lead": {
            "email": contact.get("email"),
            "phone": contact.get("phone"),
            "first_name": contact.get("first_name"),
            "last_name": contact.get("last_name"),
            "full_name": full_name or None,
            "company": contact.get("company"),
            "job_title": contact.get("job_title"),
            "country": contact.get("country"),
            "channel": lead.channel if lead is not None else None,
            "form_id": lead.form_id if lead is not None else None,
            "form_type": lead.form_type if lead is not None else None,
            "score": lead.score if lead is not None else None,
            "grade": lead.grade if lead is not None else None,
            "fields": dict(lead.fields or {}) if lead is not None else {},
            "captured_at": _iso(assignment.captured_at),
        },
        "assignment": {
            "id": assignment.assignment_id,
            "rule_id": assignment.rule_id,
            "explanation": reason.get("explanation"),
            "reassigned": bool(assignment.reassigned_from),
            "sla_minutes": domain.sla_minutes(config, assignment.rule_id),
            "sla_due_at": _iso(assignment.sla_due_at),
        },
        "breached_rep": assignment.rep_id if delivery.purpose == "escalation" else None,
        "ack_url": ack_url if assignment.rep_id else None,
        "routed_at": _iso(assignment.created_at),
    }


class DeliveryWorker:
    """Runs delivery rounds; `wake()` starts one at once."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        config: RoutingConfig,
        destinations: dict[str, Destination],
        ack_url: Callable[[str], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uow_factory = uow_factory
        self.config = config
        self.destinations = destinations
        self.ack_url = ack_url
        self.clock = clock
        self._wake = asyncio.Event()
        self._last_gauges = 0.0
        self._last_round = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set."""
        stopper = asyncio.create_task(self._wake_on(stop))
        backoff = 0.2
        try:
            while not stop.is_set():
                # Under load, leads routed close together share a round (one claim, one
                # record): rounds start at most every ROUND_INTERVAL; when idle a wake
                # starts one at once.
                pause = self._last_round + ROUND_INTERVAL - time.monotonic()
                if pause > 0:
                    await self._sleep(pause, stop)
                    if stop.is_set():
                        break
                self._last_round = time.monotonic()
                self._wake.clear()
                try:
                    processed = await self.run_once()
                    backoff = 0.2
                except Exception as exc:
                    if not is_transient_db_error(exc):
                        log.exception("delivery round failed")
                    else:
                        log.warning("database unavailable (%s); retrying", type(exc).__name__)
                    await self._sleep(backoff, stop)
                    backoff = min(backoff * 2, 10.0)
                    continue
                await self._refresh_gauges()
                if processed >= self.config.delivery.batch_size or self._wake.is_set():
                    continue  # more may be due at once, or leads were routed meanwhile
                wait = await self._idle_seconds()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            stopper.cancel()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _idle_seconds(self) -> float:
        poll = self.config.delivery.poll_seconds
        try:
            async with self.uow_factory() as uow:
                due = await store.next_due_at(uow.session)
        except Exception:
            return poll
        if due is None:
            return poll
        return min(poll, max((due - self.clock()).total_seconds(), 0.01))

    async def run_once(self) -> int:
        """One round: claim, deliver, record. Returns how many deliveries it handled."""
        now = self.clock()
        claimed = await self._claim(now)
        if not claimed:
            return 0
        results = await self._deliver(claimed)
        await self._record_until_stored(claimed, results, now)
        return sum(len(items) for items in claimed.values())

    async def _record_until_stored(
        self, claimed: dict[str, list[Item]], results: dict[str, Outcome], claimed_at: datetime
    ) -> None:
        # The destinations have answered: losing those answers to a database outage would
        # mean sending everything again once the lease runs out. Keep trying while it holds.
        total = sum(len(items) for items in claimed.values())
        give_up = claimed_at + timedelta(seconds=self._lease_seconds(total))
        delay = 0.2
        while True:
            try:
                await self._record(claimed, results)
                return
            except Exception as exc:
                if (
                    not is_transient_db_error(exc)
                    or self.clock() + timedelta(seconds=delay) > give_up
                ):
                    raise
                log.warning(
                    "recording deliveries failed (%s); retrying in %.1fs", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # 1. claim ---------------------------------------------------------------------------

    async def _claim(self, now: datetime) -> dict[str, list[Item]]:
        limit = self.config.delivery.batch_size
        async with self.uow_factory() as uow:
            session = uow.session
            skip = set(await store.paused_destinations(session, now))
            allowance: dict[str, int] = {}
            for name, destination in self.destinations.items():
                limit_config = destination.config.rate_limit
                if limit_config is None or name in skip:
                    continue
                row = await store.destination_row(session, uow.dialect, name, now)
                recent = _recent(row.sent, now, limit_config.per_seconds)
                allowance[name] = limit_config.requests - len(recent)
                if allowance[name] <= 0:
                    skip.add(name)
            # Rows of a destination no longer configured (or disabled) wait; they are not lost.
            rows = await store.claim_due(
                session,
                uow.dialect,
                now,
                lambda n: now + timedelta(seconds=self._lease_seconds(n)),
                limit,
                only_destinations=[name for name in self.destinations if name not in skip],
            )
            by_destination: dict[str, list[Any]] = defaultdict(list)
            for row in rows:
                by_destination[row.destination].append(row)
            claimed: dict[str, list[Any]] = {}
            for name, group in by_destination.items():
                destination = self.destinations[name]
                if name in allowance:
                    requests = allowance[name]
                    keep = group[: requests * destination.max_batch]
                    await store.update_deliveries(
                        session,
                        uow.dialect,
                        [
                            (extra.delivery_id, {"claimed_until": None, "claims": extra.claims})
                            for extra in group[len(keep) :]
                        ],
                    )
                    group = keep
                    sent_row = await store.destination_row(session, uow.dialect, name, now)
                    used = math.ceil(len(group) / destination.max_batch)
                    stamps = (
                        _recent(sent_row.sent, now, destination.config.rate_limit.per_seconds)
                        + [now.timestamp()] * used
                    )
                    await store.save_destination_state(session, name, sent=stamps, updated_at=now)
                claimed[name] = group
            items = {
                name: [
                    self._item(
                        row,
                        _joined(row, store.ASSIGNMENT_PREFIX, store.CLAIMED_ASSIGNMENT_COLUMNS),
                        _joined(row, store.LEAD_PREFIX, store.CLAIMED_LEAD_COLUMNS),
                    )
                    for row in group
                ]
                for name, group in claimed.items()
            }
            await uow.commit()
        return {name: group for name, group in items.items() if group}

    def _lease_seconds(self, claimed: int) -> float:
        timeout = self.config.delivery.timeout_seconds
        rounds = math.ceil(max(claimed, 1) / CONCURRENCY)
        return 4 * timeout * rounds + 30

    def _item(self, row: Any, assignment: Any, lead: Any) -> Item:
        ack = self.ack_url(row.assignment_id) if assignment is not None else None
        document = (
            build_document(row, assignment, lead, self.config, ack)
            if assignment is not None
            else {"lead_id": row.lead_id, "delivery_id": row.delivery_id}
        )
        return Item(
            delivery_id=row.delivery_id,
            lead_id=row.lead_id,
            purpose=row.purpose,
            claims=row.claims + 1,
            document=document,
            progress=dict(row.progress or {}),
        )

    # 2. deliver -------------------------------------------------------------------------

    async def _deliver(self, claimed: dict[str, list[Item]]) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}

        async def one_destination(name: str, items: list[Item]) -> None:
            destination = self.destinations[name]
            size = destination.max_batch
            chunks = [items[i : i + size] for i in range(0, len(items), size)]
            limiter = asyncio.Semaphore(destination.concurrency)

            async def one_chunk(chunk: list[Item]) -> None:
                async with limiter:
                    if destination.pause is not None:
                        # An earlier answer asked us to wait: the rest waits too, no attempt used.
                        for item in chunk:
                            results[item.delivery_id] = Outcome(
                                "retry",
                                "the destination asked to wait (rate limit)",
                                retry_after=destination.pause.seconds,
                                counts_as_attempt=False,
                            )
                        return
                    started = time.perf_counter()
                    try:
                        outcomes = await asyncio.wait_for(
                            destination.deliver_batch(chunk),
                            self.config.delivery.timeout_seconds * 4,
                        )
                    except Exception as exc:
                        if not isinstance(exc, TimeoutError):
                            log.exception("destination failed", extra={"destination": name})
                        outcomes = [
                            Outcome("retry", f"{type(exc).__name__}: {exc}"[:300]) for _ in chunk
                        ]
                    metrics.delivery_duration_seconds.labels(name).observe(
                        time.perf_counter() - started
                    )
                    for item, outcome in zip(chunk, outcomes, strict=True):
                        results[item.delivery_id] = outcome

            await asyncio.gather(*(one_chunk(chunk) for chunk in chunks))

        await asyncio.gather(*(one_destination(n, items) for n, items in claimed.items()))
        return results

    # 3. record --------------------------------------------------------------------------

    async def _record(self, claimed: dict[str, list[Item]], results: dict[str, Outcome]) -> None:
        now = self.clock()
        delivery = self.config.delivery
        async with self.uow_factory() as uow:
            session = uow.session
            for name in claimed:
                destination = self.destinations[name]
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
                session, (item.delivery_id for items in claimed.values() for item in items)
            )
            changes: list[tuple[str, dict[str, Any]]] = []
            counts: dict[tuple[str, str], int] = defaultdict(int)
            delivered: list[Any] = []
            for items in claimed.values():
                for item in items:
                    row = rows.get(item.delivery_id)
                    if row is None or row.status != store.PENDING:
                        continue  # cancelled meanwhile (erasure)
                    outcome = results[item.delivery_id]
                    status, values = self._record_one(uow, row, outcome, now, delivery)
                    changes.append((row.delivery_id, values))
                    counts[row.destination, status] += 1
                    if status == "delivered":
                        delivered.append(row)
            await store.update_deliveries(session, uow.dialect, changes)
            await self._mark_delivered(uow, delivered, now)
            await uow.commit()
        for (name, status), count in counts.items():
            metrics.deliveries_total.labels(name, status).inc(count)

    def _record_one(
        self, uow: UnitOfWork, row: Any, outcome: Outcome, now: datetime, delivery: Any
    ) -> tuple[str, dict[str, Any]]:
        """How one delivery ended: the metric status and the columns to store."""
        progress = outcome.progress if outcome.progress is not None else (row.progress or {})
        if outcome.status == "delivered":
            return "delivered", {
                "status": store.DELIVERED,
                "delivered_at": now,
                "attempts": row.attempts + 1,
                "claimed_until": None,
                "external_id": outcome.external_id,
                "last_status": outcome.http_status,
                "progress": progress,
            }
        attempts = row.attempts + (1 if outcome.counts_as_attempt else 0)
        too_old = now - row.created_at > timedelta(minutes=delivery.max_age_minutes)
        if outcome.status == "retry" and attempts < delivery.max_attempts and not too_old:
            wait = domain.backoff_delay(
                max(attempts, 1), delivery.backoff_seconds, delivery.backoff_max_seconds
            )
            wait = max(wait, outcome.retry_after or 0.0)
            log.info(
                "delivery will be retried in %.1fs: %s",
                wait,
                outcome.error,
                extra={"lead_id": row.lead_id, "destination": row.destination},
            )
            return "retried", {
                "attempts": attempts,
                "next_attempt_at": now + timedelta(seconds=wait),
                "claimed_until": None,
                "last_error": outcome.error,
                "last_status": outcome.http_status,
                "progress": progress,
            }
        error = outcome.error or "failed"
        if outcome.status == "retry":
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
            "delivery failed: %s",
            error,
            extra={"lead_id": row.lead_id, "destination": row.destination},
        )
        return "failed", {
            "status": store.FAILED,
            "attempts": max(attempts, 1),
            "failed_at": now,
            "claimed_until": None,
            "last_error": error,
            "last_status": outcome.http_status,
            "progress": progress,
        }

    async def _mark_delivered(self, uow: UnitOfWork, rows: list[Any], now: datetime) -> None:
        """Assignments whose every (non-escalation) delivery is now delivered get `delivered_at`."""
        ids = list(dict.fromkeys(r.assignment_id for r in rows if r.purpose != "escalation"))
        if not ids:
            return
        fresh = await store.mark_delivered(uow.session, ids, now)
        for assignment in fresh:
            if not assignment.reassigned_from:
                metrics.speed_to_lead_seconds.labels("delivered").observe(
                    max((now - assignment.captured_at).total_seconds(), 0.0)
                )

    async def _refresh_gauges(self) -> None:
        if time.monotonic() - self._last_gauges < 5:
            return
        self._last_gauges = time.monotonic()
        try:
            async with self.uow_factory() as uow:
                depth = await store.queue_depth(uow.session)
        except Exception:
            log.debug("queue depth refresh failed", exc_info=True)
            return
        for name in set(depth) | set(self.destinations):
            metrics.delivery_queue_depth.labels(name).set(depth.get(name, 0))


def _joined(row: Any, prefix: str, columns: tuple[str, ...]) -> SimpleNamespace | None:
    """The assignment or lead a claimed row carries (None when it is gone)."""
    values = row._mapping
    if values[prefix + columns[0]] is None:
        return None
    return SimpleNamespace(**{name: values[prefix + name] for name in columns})


def _recent(sent: Any, now: datetime, window: float) -> list[float]:
    cutoff = now.timestamp() - window
    return [float(t) for t in (sent or []) if float(t) > cutoff]


class SlaWorker:
    """Looks for unacknowledged assignments past their SLA every `sla.check_seconds`."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        config: RoutingConfig,
        on_breach: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uow_factory = uow_factory
        self.config = config
        self.on_breach = on_breach
        self.clock = clock

    async def check(self, now: datetime | None = None) -> list[str]:
        """One check at `now`: reassign and escalate what breached; returns their ids."""
        from services.router.handlers import check_sla

        async with self.uow_factory() as uow:
            breached = await check_sla(uow, self.config, now or self.clock())
        if breached:
            self.on_breach()
        return breached

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except Exception as exc:
                if not is_transient_db_error(exc):
                    log.exception("SLA check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.sla.check_seconds)
