"""Group commit: many small write requests share one transaction and one fsync.

HTTP intake writes a few rows per request; committing each alone makes the
disk's fsync rate the ceiling. The committer runs the work queued while the
previous commit was in flight as one transaction, each piece in its own
savepoint (one failure does not sink the others), and answers every caller
only after that commit — so a 2xx still means "on disk". There is no
artificial wait: a lone request is committed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.db.engine import is_transient_db_error
from shared.db.uow import UnitOfWork

T = TypeVar("T")
Work = Callable[[UnitOfWork], Awaitable[Any]]

log = logging.getLogger(__name__)


class GroupCommitter:
    """Serializes writes through one task that commits them in groups."""

    def __init__(self, uow_factory: Callable[[], UnitOfWork], max_batch: int = 200) -> None:
        self.uow_factory = uow_factory
        self.max_batch = max_batch
        self._queue: deque[tuple[Work, asyncio.Future[Any]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="group-committer")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        while self._queue:
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def run(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run `work` in the next group transaction; returns after that transaction commits."""
        self.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))
                ]
                await self._commit_group(batch)

    async def _commit_group(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            async with self.uow_factory() as uow:
                for work, future in batch:
                    if future.cancelled():
                        continue
                    try:
                        async with uow.savepoint():
                            result = await work(uow)
                    except Exception as exc:
                        if is_transient_db_error(exc):
                            raise
                        outcomes.append((future, None, exc))
                    else:
                        outcomes.append((future, result, None))
                await uow.commit()
        except Exception as exc:
            # The group did not commit: nobody's work is stored, everybody hears why.
            log.warning("group commit of %d failed: %s", len(batch), type(exc).__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
