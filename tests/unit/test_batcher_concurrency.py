"""Batcher(concurrency=n): up to n batches in hand at once, each answered on its own,
every queued message finished by `stop`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shared.db.batching import Batcher


class SlowWriter:
    """A `handle_all` that takes a while per batch and records how many overlap."""

    def __init__(self) -> None:
        self.in_hand = 0
        self.most_in_hand = 0
        self.batches: list[list[int]] = []

    async def handle_all(self, messages: Sequence[int]) -> list[int]:
        self.in_hand += 1
        self.most_in_hand = max(self.most_in_hand, self.in_hand)
        await asyncio.sleep(0.02)
        self.batches.append(list(messages))
        self.in_hand -= 1
        return [m * 10 for m in messages]


async def _submit_in_waves(batcher: Batcher[int, int], waves: int, size: int) -> list[int]:
    calls = []
    for wave in range(waves):
        calls += [asyncio.create_task(batcher.submit(wave * size + i)) for i in range(size)]
        await asyncio.sleep(0.005)
    return list(await asyncio.gather(*calls))


async def test_batches_overlap_up_to_the_concurrency_and_each_caller_gets_its_answer():
    writer = SlowWriter()
    batcher = Batcher(writer.handle_all, concurrency=2, gather_seconds=0, name="test")
    answers = await _submit_in_waves(batcher, waves=6, size=3)
    await batcher.stop()
    assert answers == [m * 10 for m in range(18)]
    assert writer.most_in_hand == 2
    assert sorted(m for batch in writer.batches for m in batch) == list(range(18))


async def test_one_batch_at_a_time_by_default():
    writer = SlowWriter()
    batcher = Batcher(writer.handle_all, gather_seconds=0, name="test")
    answers = await _submit_in_waves(batcher, waves=4, size=3)
    await batcher.stop()
    assert answers == [m * 10 for m in range(12)]
    assert writer.most_in_hand == 1


async def test_stop_waits_for_the_batches_in_hand():
    writer = SlowWriter()
    batcher = Batcher(writer.handle_all, concurrency=2, gather_seconds=0, name="test")
    calls = [asyncio.create_task(batcher.submit(i)) for i in range(4)]
    await asyncio.sleep(0.001)
    await batcher.stop()
    assert all(call.done() for call in calls)
    assert [call.result() for call in calls] == [0, 10, 20, 30]
