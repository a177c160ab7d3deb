"""One wakeable polling worker: the loop behind every background job.

The outbox relay, CRM delivery, the nurture scheduler, scoring's decay sweep, the
speed-to-lead checks and the Meta/LinkedIn lead retrieval all have the same shape:
run a round; if it found work, run the next one at once; else sleep until the next
thing is due or someone calls `wake()`; on an error, log it and back off
(0.2 s doubling to 10 s) without dying; stop when the service stops, after the round
in hand.

A job subclasses `PollingWorker` and implements `round()`, which returns how long to
wait before the next round (0: at once). `min_interval` caps how often rounds start
under load, so bursts of wake-ups coalesce into one round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from shared.db.engine import is_transient_db_error

log = logging.getLogger(__name__)


class PollingWorker:
    """A loop of `round()`s, woken early by `wake()`, stopped by the service's stop event."""

    #: Shown in logs.
    name = "worker"
    #: First delay after a failed round; doubles up to `backoff_max`.
    backoff_start = 0.2
    backoff_max = 10.0
    #: At most one round per this many seconds, however often `wake()` is called.
    min_interval = 0.0

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        #: After a failed round: how long the worker waits before the next (for logs).
        self.retry_in = self.backoff_start

    def wake(self) -> None:
        """Run the next round now (or as soon as `min_interval` allows)."""
        self._wake.set()

    async def round(self) -> float:
        """Do one round of work; return the seconds to wait before the next (0: at once)."""
        raise NotImplementedError

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
