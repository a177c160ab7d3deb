"""Batched intake: concurrent form and API submissions share one transaction.

Every accepted submission is a handful of rows (lead, submission, consent,
outbox event). Written one request at a time, each row is a round trip to the
database and each request a commit, and with SQLite's single writer the
requests queue behind each other. The intake instead takes every submission
waiting while the previous group was being written, reads what the group needs
with one query per table, decides each submission in memory in arrival order
(`handle_capture_lead`, the same code as the one-at-a-time path) and writes the
group with one multi-row statement per table and one commit. Callers hear back
only after that commit, so a 2xx still means "on disk".

A group that fails as a whole (a concurrent replica inserted the same person
first, an unexpected error in one submission) is retried one submission at a
time, so one bad submission never sinks the others and every caller gets its
own answer. When fewer than a handful of submissions are waiting, the intake
gathers for a few milliseconds (`gather_seconds`, 5 ms) before writing: at a steady
campaign rate (a submission every few ms) each request would otherwise be its own
group, and a group's statements and commit cost more CPU than its submissions do.
A lone submission waits those 5 ms, far below anything a visitor notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.capture.domain import InvalidLead, NormalizedLead
from services.capture.handlers import (
    Captured,
    CaptureLead,
    capture,
    dedupe_key_of,
    handle_capture_lead,
    prepare,
    record_outcome,
)
from services.capture.settings import CaptureConfig
from services.capture.writes import GroupWrites
from shared.db import UnitOfWork
from shared.db.engine import is_transient_db_error

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    command: CaptureLead
    future: asyncio.Future[Captured]


class Intake:
    """Writes concurrent submissions in groups; see the module docstring."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        config: CaptureConfig,
        max_group: int = 256,
        gather_seconds: float = 0.005,
        gather_below: int = 4,
    ) -> None:
        self.uow_factory = uow_factory
        self.config = config
        self.max_group = max_group
        self.gather_seconds = gather_seconds
        self.gather_below = gather_below
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def capture(self, command: CaptureLead) -> Captured:
        """Store one submission; returns once its group has committed."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="capture-intake")
        future: asyncio.Future[Captured] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(command, future))
        self._wake.set()
        return await future

    async def stop(self) -> None:
        """Finish the queued submissions, then stop."""
        while self._queue:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if len(self._queue) < self.gather_below and self.gather_seconds:
                    await asyncio.sleep(self.gather_seconds)
                count = min(self.max_group, len(self._queue))
                group = [self._queue.popleft() for _ in range(count)]
                await self._write(group)

    async def _write(self, group: list[_Pending]) -> None:
        group = [item for item in group if not item.future.done()]
        # A lone submission takes the group road too: its prebuilt statements cost less
        # than the one-at-a-time path's, which stays the fallback.
        if group:
            try:
                results = await self._write_group(group)
            except Exception as exc:
                if is_transient_db_error(exc):
                    # The database is away: every caller hears so now (503), none waits twice.
                    for item in group:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    return
                log.info("capture group of %d retried one by one: %s", len(group), type(exc))
            else:
                for item, result in zip(group, results, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(result, InvalidLead):
                        item.future.set_exception(result)
                    else:
                        record_outcome(result)
                        item.future.set_result(result)
                return
        for item in group:
            try:
                result = await capture(item.command, self.uow_factory, self.config)
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                if not item.future.done():
                    item.future.set_result(result)

    async def _write_group(self, group: list[_Pending]) -> list[Captured | InvalidLead]:
        keys: list[str] = []
        emails: list[str] = []
        phones: list[str] = []
        prepared = [prepare(item.command, self.config) for item in group]
        for item, normalized in zip(group, prepared, strict=True):
            key = dedupe_key_of(item.command)
            if key:
                keys.append(key)
            if isinstance(normalized, NormalizedLead):
                emails += [normalized.contact.email] if normalized.contact.email else []
                phones += [normalized.contact.phone] if normalized.contact.phone else []
        async with self.uow_factory() as uow:
            writes = GroupWrites(uow.session, uow.dialect)
            await writes.preload(keys, emails, phones)
            results: list[Captured | InvalidLead] = []
            for item, normalized in zip(group, prepared, strict=True):
                try:
                    results.append(
                        await handle_capture_lead(
                            item.command, uow, self.config, writes=writes, prepared=normalized
                        )
                    )
                except InvalidLead as exc:  # refused before anything was written
                    results.append(exc)
            await writes.flush()
            await uow.commit()
        return results
