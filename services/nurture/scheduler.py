"""The scheduler: due emails are rows; it claims them, sends them, records how each ended.

No cron and no in-memory timers: every email waiting to go out is a row of
`sends` with the time it may leave. One round:

1. in a short transaction: sends whose sender died mid-way (lease run out) are
   recorded as failed; due rows are locked (`FOR UPDATE SKIP LOCKED` on
   PostgreSQL, so replicas never take the same row; SQLite has one writer) and
   each is checked against the lead as it is now: erased, unsubscribed or
   without consent → not sent (recorded why); quiet hours or the frequency cap
   → moved to when it may go; else rendered and **claimed** (`sending`, with a
   lease) — up to the shared send-rate allowance;
2. outside any transaction, the messages go to the SMTP relay;
3. in a second transaction each is marked sent (and the next step queued),
   rescheduled with backoff, bounced or failed.

At most once: a claimed row is never claimed again. If the process dies after
the relay accepted a message and before step 3 commits (a window of one SMTP
round trip), the row stays `sending` until its lease runs out and is then
recorded as failed, not resent; `leadflow nurture sends redrive` sends it again
if it did not arrive. A graceful stop finishes the batch in hand first (the runtime
waits up to 10 s for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.nurture import domain, rendering, send_results, store
from services.nurture.config import NurtureConfig
from services.nurture.mailer import Mailer, Outgoing, Result
from services.nurture.rendering import Templates, Tracking
from shared import metrics
from shared.db.engine import is_transient_db_error
from shared.db.uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """A send this scheduler holds: the row as claimed and the message to hand over."""

    row: Any
    claims: int
    outgoing: Outgoing


class Scheduler:
    """Runs send rounds; `wake()` starts one at once."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        config: NurtureConfig,
        templates: Templates,
        tracking: Tracking,
        mailer: Mailer,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uow_factory = uow_factory
        self.config = config
        self.templates = templates
        self.tracking = tracking
        self.mailer = mailer
        self.clock = clock
        self._wake = asyncio.Event()
        self._last_gauge = 0.0
        # Set when the send-rate limit held due emails back: no need to look before then.
        self._throttled_until: datetime | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set; the batch in hand is finished and recorded first."""
        stopper = asyncio.create_task(self._wake_on(stop))
        backoff = 0.2
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    handled = await self.run_once()
                    backoff = 0.2
                except Exception as exc:
                    if is_transient_db_error(exc):
                        log.warning("database unavailable (%s); retrying", type(exc).__name__)
                    else:
                        log.exception("send round failed")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                if handled:
                    continue
                await self._refresh_gauge()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), await self._idle_seconds())
        finally:
            stopper.cancel()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _idle_seconds(self) -> float:
        poll = self.config.delivery.poll_seconds
        try:
            async with self.uow_factory() as uow:
                due = await store.next_due_at(uow.session)
        except Exception:
            return poll
        now = self.clock()
        wait = poll if due is None else min(poll, max((due - now).total_seconds(), 0.01))
        if self._throttled_until is not None:
            wait = max(wait, min((self._throttled_until - now).total_seconds(), poll))
        return wait

    async def _refresh_gauge(self) -> None:
        if time.monotonic() - self._last_gauge < 5:
            return
        self._last_gauge = time.monotonic()
        with contextlib.suppress(Exception):
            async with self.uow_factory() as uow:
                metrics.nurture_sends_due.set(await store.due_count(uow.session, self.clock()))

    async def run_once(self) -> int:
        """One round: claim, send, record. Returns how many emails it took."""
        claimed = await self.claim(self.clock())
        if not claimed:
            return 0
        results = await self.mailer.send_all([c.outgoing for c in claimed])
        await self._record_until_stored(claimed, results)
        return len(claimed)

    # 1. claim ---------------------------------------------------------------------------

    def _lease(self, count: int) -> timedelta:
        # Each message is a few SMTP round trips, each bounded by the timeout.
        return timedelta(seconds=60 + 4 * self.config.smtp.timeout_seconds * max(count, 1))

    async def claim(self, now: datetime) -> list[Claimed]:
        """Sweep interrupted sends, then take what may go out now."""
        config = self.config
        async with self.uow_factory() as uow:
            session = uow.session
            for row in await store.interrupted_sends(session, now, 100):
                await send_results.record_interrupted(uow, row, now)
            candidates = await store.claim_candidates(session, now, config.delivery.batch_size)
            if not candidates:
                await uow.commit()
                return []
            allowance, window = len(candidates), []
            rate = config.smtp.rate_limit
            if rate is not None:
                cutoff = now.timestamp() - rate.per_seconds
                window = [
                    t for t in await store.rate_window(session, uow.dialect, now) if t > cutoff
                ]
                allowance = max(rate.messages - len(window), 0)
            lead_ids = {row.lead_id for row in candidates}
            leads = {}
            for lead_id in lead_ids:
                lead = await store.get_lead(session, lead_id)
                if lead is not None:
                    leads[lead_id] = lead
            suppressed = await store.suppressed_hashes(
                session, [domain.email_hash(lead.email) for lead in leads.values() if lead.email]
            )
            cap = config.frequency_cap
            recent = (
                await store.recent_step_sends(session, lead_ids, now - cap.period)
                if cap is not None
                else {}
            )
            lease_until = now + self._lease(min(allowance, len(candidates)))
            claimed: list[Claimed] = []
            throttled = False
            for row in candidates:
                lead = leads.get(row.lead_id)
                facts = (
                    domain.lead_facts(
                        lead, bool(lead.email) and domain.email_hash(lead.email) in suppressed
                    )
                    if lead is not None
                    else None
                )
                run = (
                    await store.get_enrollment(session, row.enrollment_id)
                    if row.enrollment_id
                    else None
                )
                decision = domain.decide(
                    config,
                    kind=row.kind,
                    sequence_id=row.sequence_id,
                    step=row.step,
                    lead=facts,
                    enrollment_status=run.status if run is not None else None,
                    recent_sends=recent.get(row.lead_id, []),
                    now=now,
                )
                if decision.action == "wait":
                    assert decision.until is not None
                    await store.update_send(session, row.send_id, next_attempt_at=decision.until)
                    continue
                if decision.action != "send":
                    await send_results.record_not_sent(uow, config, row, decision, now)
                    continue
                if len(claimed) >= allowance:
                    throttled = True
                    continue  # the send-rate limit: it stays due for the next round
                assert lead is not None
                try:
                    outgoing, links, message_id = self._prepare(row, lead, now)
                except Exception as exc:
                    log.exception("email could not be built", extra={"lead_id": row.lead_id})
                    await send_results.record_failed(
                        uow, row, f"could not be built: {type(exc).__name__}: {exc}", now
                    )
                    continue
                if not await store.mark_sending(
                    session,
                    row.send_id,
                    row.claims,
                    lease_until,
                    message_id=message_id,
                    links=links,
                ):
                    continue
                if row.kind == store.STEP:
                    recent.setdefault(row.lead_id, []).append(now)
                claimed.append(Claimed(row, row.claims + 1, outgoing))
            self._throttled_until = None
            if rate is not None:
                window += [now.timestamp()] * len(claimed)
                if claimed:
                    await store.save_rate_window(session, window, now)
                if throttled and window:
                    self._throttled_until = datetime.fromtimestamp(
                        min(window) + rate.per_seconds, UTC
                    )
            await uow.commit()
        return claimed

    def _prepare(self, row: Any, lead: Any, now: datetime) -> tuple[Outgoing, dict[str, str], str]:
        context = rendering.lead_context(lead)
        if row.kind == store.CONFIRM:
            doi = self.config.double_opt_in
            rendered = self.templates.render_confirmation(
                context,
                confirm_url=self.tracking.confirm_url(lead.lead_id, row.send_id, now),
                valid_days=doi.token_valid.total_seconds() / 86400,
            )
        else:
            rendered = self.templates.render_step(
                row.sequence_id, row.step, context, send_id=row.send_id, tracking=self.tracking
            )
        message_id = row.message_id or rendering.message_id_for(self.config, row.send_id)
        message = rendering.build_message(
            self.config,
            rendered,
            to_email=lead.email,
            to_name=context["full_name"],
            message_id=message_id,
            now=now,
        )
        return Outgoing(row.send_id, message, lead.email), rendered.links, message_id

    # 3. record --------------------------------------------------------------------------

    async def _record_until_stored(
        self, claimed: list[Claimed], results: dict[str, Result]
    ) -> None:
        # The relay has answered: losing those answers to a database blip would turn sent
        # emails into "interrupted" ones. Keep trying while the lease holds.
        give_up = time.monotonic() + self._lease(len(claimed)).total_seconds() - 30
        delay = 0.2
        while True:
            try:
                await self.record(claimed, results)
                return
            except Exception as exc:
                if not is_transient_db_error(exc) or time.monotonic() + delay > give_up:
                    raise
                log.warning("recording sends failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def record(self, claimed: list[Claimed], results: dict[str, Result]) -> None:
        """Store how each claimed email ended."""
        now = self.clock()
        async with self.uow_factory() as uow:
            for item in claimed:
                row = await store.get_send(uow.session, item.row.send_id, for_update=True)
                if row is None or row.claims != item.claims:
                    continue
                if row.status not in (store.SENDING, store.FAILED):
                    continue
                result = results.get(row.send_id) or Result("retry", "not attempted")
                if result.status == "sent":
                    await send_results.record_sent(uow, self.config, row, now)
                elif result.status == "retry":
                    await send_results.record_retry(uow, self.config, row, result.error or "", now)
                elif result.status == "bounced":
                    await send_results.record_bounced(
                        uow, self.config, row, result.error or "", now
                    )
                else:
                    await send_results.record_failed(uow, row, result.error or "failed", now)
            await uow.commit()
