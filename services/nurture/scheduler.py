"""The scheduler: due emails are rows; it claims them, sends them, records how each ended.

No cron and no in-memory timers: every email waiting to go out is a row of
`sends` with the time it may leave. One round is two messages to the bus around
the relay:

1. `ClaimDueSends`, a short transaction (claiming.py): interrupted sends are
   recorded as failed; due rows are locked, checked against the lead as it is now,
   rendered and **claimed** (`sending`, with a lease), up to the shared send-rate
   allowance;
2. outside any transaction, the messages go to the SMTP relay;
3. `RecordSendResults`, a second transaction (send_results.py): each is marked
   sent (and the next step queued), rescheduled with backoff, bounced or failed.

At most once: a claimed row is never claimed again. If the process dies after
the relay accepted a message and before step 3 commits (a window of one SMTP
round trip), the row stays `sending` until its lease runs out and is then
recorded as failed, not resent; `leadflow nurture sends redrive` sends it again
if it did not arrive. A graceful stop finishes the batch in hand first (the runtime
waits up to 10 s for it). Between rounds the scheduler sleeps until the next send
is due (at most `delivery.poll_seconds`); new work wakes it at once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.nurture import messagebus, queries
from services.nurture.claiming import Claimed, lease
from services.nurture.commands import ClaimDueSends, RecordSendResults
from services.nurture.config import NurtureConfig
from services.nurture.mailer import Mailer, SendResult
from services.nurture.rendering import Templates, Tracking
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.runtime.worker import PollingWorker, retry_while_transient

log = logging.getLogger(__name__)

GAUGE_SECONDS = 5.0


@dataclass(eq=False)
class Scheduler(PollingWorker):
    """Runs send rounds; `wake()` starts one at once."""

    name = "nurture scheduler"

    uow_factory: Callable[[], UnitOfWork]
    config: NurtureConfig
    templates: Templates
    tracking: Tracking
    mailer: Mailer
    clock: Clock = utc_now

    def __post_init__(self) -> None:
        super().__post_init__()
        self.bus = messagebus.bus(
            self.uow_factory,
            self.config,
            self.templates,
            self.tracking,
            wake=self.wake,
            clock=self.clock,
        )
        self._last_gauge = 0.0
        # Set when the send-rate limit held due emails back: no need to look before then.
        self._throttled_until: datetime | None = None

    async def round(self) -> float:
        """Send what is due; when nothing was, wait until the next send is due."""
        if await self.run_once():
            return 0
        await self._refresh_gauge()
        return await self._idle_seconds()

    async def run_once(self) -> int:
        """One round: claim, send, record. Returns how many emails it took."""
        claimed = await self.claim(self.clock())
        if not claimed:
            return 0
        results = await self.mailer.send_all([c.outgoing for c in claimed])
        await self._record_until_stored(claimed, results)
        return len(claimed)

    async def claim(self, now: datetime) -> list[Claimed]:
        """Sweep interrupted sends, then take what may go out now."""
        claim = await self.bus.handle(ClaimDueSends(now))
        if claim.due:
            self._throttled_until = claim.throttled_until
        return claim.claimed  # type: ignore[no-any-return]

    async def record(self, claimed: list[Claimed], results: dict[str, SendResult]) -> None:
        """Store how each claimed email ended."""
        await self.bus.handle(RecordSendResults(claimed, results))

    async def _record_until_stored(
        self, claimed: list[Claimed], results: dict[str, SendResult]
    ) -> None:
        # The relay has answered: losing those answers to a database blip would turn sent
        # emails into "interrupted" ones. Keep trying while the lease holds (the worker's
        # own backoff would start a new round and drop them).
        give_up = time.monotonic() + lease(self.config, len(claimed)).total_seconds() - 30
        await retry_while_transient(
            lambda: self.record(claimed, results),
            lambda: give_up - time.monotonic(),
            "recording sends",
            log,
        )

    async def _idle_seconds(self) -> float:
        poll = self.config.delivery.poll_seconds
        wait = await self.seconds_until_due(lambda: queries.next_due_at(self.bus.uow_factory), poll)
        if self._throttled_until is not None:
            now = self.clock()
            wait = max(wait, min((self._throttled_until - now).total_seconds(), poll))
        return wait

    async def _refresh_gauge(self) -> None:
        if time.monotonic() - self._last_gauge < GAUGE_SECONDS:
            return
        self._last_gauge = time.monotonic()
        with contextlib.suppress(Exception):
            metrics.nurture_sends_due.set(
                await queries.count_due(self.bus.uow_factory, self.clock())
            )
