"""One wakeable polling worker: the loop behind every background job.

The outbox relay, CRM delivery, the nurture scheduler, scoring's decay sweep, the
speed-to-lead checks and the Meta/LinkedIn lead retrieval all have the same shape:
run a round; if it found work, run the next one at once; else sleep until the next
thing is due or someone calls `wake()`; on an error, log it and back off
(0.2 s doubling to 10 s) without dying; stop when the service stops, after the round
in hand.

A job subclasses `PollingWorker` (often as a dataclass of its dependencies) and
implements `round()`, which returns how long to wait before the next round (0: at once).
`min_interval` caps how often rounds start under load, so bursts of wake-ups coalesce
into one round.

`retry_while_transient` keeps storing what a round learned outside the database
(a relay's or a CRM's answers) through a database blip, until a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from shared.clock import Clock, utc_now
from shared.db.engine import is_transient_db_error

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Delays between attempts of `retry_while_transient`: doubling from the first to the last.
RETRY_FIRST, RETRY_MOST = 0.2, 5.0


async def retry_while_transient(
    attempt: Callable[[], Awaitable[T]],
    seconds_left: Callable[[], float],
    what: str,
    logger: logging.Logger = log,
) -> T:
    """`attempt()` again while it fails with a transient database error and the next try
    (0.2 s doubling to 5 s from now) is still within `seconds_left()`; any other error,
    or one past the deadline, is raised. `what` names the work in the warnings."""
    delay = RETRY_FIRST
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not is_transient_db_error(exc) or delay > seconds_left():
                raise
            logger.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MOST)


class PollingWorker:
    """A loop of `round()`s, woken early by `wake()`, stopped by the service's stop event."""

    #: Shown in logs.
    name = "worker"
    #: First delay after a failed round; doubles up to `backoff_max`.
    backoff_start = 0.2
    backoff_max = 10.0
    #: At most one round per this many seconds, however often `wake()` is called.
    min_interval = 0.0

    #: The time, for the job's rounds.
    clock: Clock

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        PollingWorker.__post_init__(self)

    def __post_init__(self) -> None:
        """The loop's own state. A job that declares its dependencies as a
        `@dataclass(eq=False)` (with a `clock: Clock = utc_now` field) gets it here,
        after the dataclass's `__init__`; its own `__post_init__` calls this one first."""
        self._wake = asyncio.Event()
        #: After a failed round: how long the worker waits before the next (for logs).
        self.retry_in = self.backoff_start

    def wake(self) -> None:
        """Run the next round now (or as soon as `min_interval` allows)."""
        self._wake.set()

    async def round(self) -> float:
        """Do one round of work; return the seconds to wait before the next (0: at once)."""
        raise NotImplementedError

    async def seconds_until_due(
        self, next_due: Callable[[], Awaitable[datetime | None]], poll: float
    ) -> float:
        """How long an idle worker waits: until the next due row (`next_due()`, at least
        10 ms), at most `poll`; `poll` when nothing is due or the lookup fails."""
        try:
            due = await next_due()
        except Exception:
            return poll
        if due is None:
            return poll
        return min(poll, max((due - self.clock()).total_seconds(), 0.01))

    def round_failed(self, exc: Exception) -> None:
        """Log a failed round: a database or broker that is away is a warning, not a trace."""
        if is_transient_db_error(exc):
            log.warning("%s: database unavailable (%s); retrying", self.name, type(exc).__name__)
        else:
            log.exception("%s: round failed", self.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Run rounds until `stop` is set; the round in hand is finished first."""
        stopper = asyncio.create_task(self._wake_on(stop))
        backoff = self.backoff_start
        try:
            while not stop.is_set():
                self._wake.clear()
                started = time.monotonic()
                try:
                    wait = await self.round()
                    backoff = self.backoff_start
                except Exception as exc:
                    self.retry_in = backoff
                    self.round_failed(exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    backoff = min(backoff * 2, self.backoff_max)
                    continue
                await self._pause(wait, started, stop)
        finally:
            stopper.cancel()

    async def _pause(self, wait: float, started: float, stop: asyncio.Event) -> None:
        floor = self.min_interval - (time.monotonic() - started)
        if floor > 0:
            # Under load: coalesce wake-ups; only a stop ends the pause early.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), floor)
            wait -= floor
        if wait <= 0 or self._wake.is_set():
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()
