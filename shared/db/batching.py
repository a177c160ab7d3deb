"""Group commit: concurrent callers' messages share one unit of work and one commit.

A door that receives many small requests (form posts, API calls) hands each message
to a `Batcher` instead of running it alone. One flusher task takes the messages
waiting (up to `max_batch`) and runs them as ONE batch: `handle_all(messages)`, the
bus's one-unit-of-work, one-commit road. Every caller is answered with its own result
only after that commit, so an answer still means "on disk". When fewer than
`gather_below` messages are waiting the flusher first gathers until that many are, for
at most `gather_seconds`: at a steady rate each request would otherwise be its own
batch, and a batch's statements and commit cost more than its messages do. With
`concurrency` above one, that many batches may be in hand at once, each in its own
unit of work: while one waits for a database server's answers the next is prepared
and sent (the database's own locks and uniqueness order what the batches share).

`handle_all` may return an exception in a message's place: that message was refused
(before it wrote anything) while the others committed; its caller gets the exception
raised. A batch that fails as a whole is run again one message at a time (`handle`,
a batch of one), so one bad message fails only its own caller; when the database is
away (a transient error) every caller hears so at once and nothing is run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from shared.db.engine import is_transient_db_error

M = TypeVar("M")
R = TypeVar("R")

log = logging.getLogger(__name__)


class Batcher(Generic[M, R]):
    """Runs concurrently submitted messages in batches; see the module docstring."""

    def __init__(
        self,
        handle_all: Callable[[Sequence[M]], Awaitable[Sequence[R | BaseException]]],
        handle: Callable[[M], Awaitable[R]] | None = None,
        *,
        max_batch: int = 256,
        gather_seconds: float = 0.005,
        gather_below: int = 4,
        concurrency: int = 1,
        name: str = "batcher",
    ) -> None:
        self.handle_all = handle_all
        self.handle = handle
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self.gather_below = gather_below
        self.concurrency = concurrency
        self.name = name
        self._queue: deque[tuple[M, asyncio.Future[R]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, message: M) -> R:
        """Run `message` in the next batch; returns (or raises) once that batch committed."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((message, future))
        self._wake.set()
        return await future

    async def stop(self) -> None:
        """Finish the queued messages, then stop."""
        while self._queue:
            await asyncio.sleep(0.01)
        await asyncio.gather(*self._flushing, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                if len(queue) < self.gather_below and self.gather_seconds:
                    await self._gather()
                count = min(self.max_batch, len(queue))
                batch = [queue.popleft() for _ in range(count)]
                if self.concurrency == 1:
                    await self._flush(batch)
                    continue
                # Another batch may be written while this one waits for the database.
                await self._slots.acquire()
                task = asyncio.create_task(self._flush_in_slot(batch), name=self.name)
                self._flushing.add(task)
                task.add_done_callback(self._flushing.discard)

    async def _flush_in_slot(self, batch: list[tuple[M, asyncio.Future[R]]]) -> None:
        try:
            await self._flush(batch)
        finally:
            self._slots.release()

    async def _gather(self) -> None:
        """Wait until `gather_below` messages are waiting, or `gather_seconds` passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.gather_seconds
        while len(self._queue) < self.gather_below:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _flush(self, batch: list[tuple[M, asyncio.Future[R]]]) -> None:
        batch = [item for item in batch if not item[1].done()]
        if not batch:
            return
        try:
            results = await self.handle_all([message for message, _ in batch])
        except Exception as exc:
            if is_transient_db_error(exc):
                # The database is away: every caller hears so now, none waits twice.
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            log.info("%s: batch of %d run one by one: %s", self.name, len(batch), type(exc))
        else:
            for (_, future), result in zip(batch, results, strict=True):
                _answer(future, result)
            return
        for message, future in batch:
            try:
                result = await self._handle_one(message)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                _answer(future, result)

    async def _handle_one(self, message: M) -> R | BaseException:
        if self.handle is not None:
            return await self.handle(message)
        return (await self.handle_all([message]))[0]


def _answer(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
