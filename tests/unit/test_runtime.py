"""The shared road: the message bus commits once per call, the worker loop wakes,
backs off and stops, and `on_commit` runs once per key after a commit only."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.clock import FixedClock
from shared.db import Database, UnitOfWork, add_plumbing_tables, make_metadata
from shared.messagebus import MessageBus, UnknownMessage
from shared.runtime.worker import PollingWorker

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)
notes = sa.Table("notes", metadata, sa.Column("text", sa.String(64), primary_key=True))


@dataclass(frozen=True)
class AddNote:
    text: str


async def add_note(message: AddNote, uow: UnitOfWork) -> str:
    if message.text == "bad":
        raise ValueError("bad note")
    await uow.session.execute(notes.insert().values(text=message.text))
    uow.on_commit(lambda: committed.append(message.text), once_key="note")
    return message.text.upper()


committed: list[str] = []


@pytest.fixture
async def bus(tmp_path: Path) -> MessageBus:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/bus.db", service="probe")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    committed.clear()
    return MessageBus(lambda: UnitOfWork(db, outbox, inbox, "leadflow/probe"), {AddNote: add_note})


async def stored(bus: MessageBus) -> list[str]:
    async with bus.uow_factory() as uow:
        return list((await uow.session.execute(sa.select(notes.c.text))).scalars())


async def test_handle_commits_once_and_returns_the_result(bus: MessageBus) -> None:
    assert await bus.handle(AddNote("a")) == "A"
    assert await stored(bus) == ["a"]
    assert committed == ["a"]


async def test_a_batch_is_all_or_nothing_and_on_commit_runs_once_per_key(bus: MessageBus) -> None:
    with pytest.raises(ValueError):
        await bus.handle_all([AddNote("x"), AddNote("bad")])
    assert await stored(bus) == []
    assert committed == []
    assert await bus.handle_all([AddNote("x"), AddNote("y")]) == ["X", "Y"]
    assert sorted(await stored(bus)) == ["x", "y"]
    assert committed == ["x"]


async def test_an_unknown_message_is_a_wiring_error(bus: MessageBus) -> None:
    with pytest.raises(UnknownMessage):
        await bus.handle(object())


class Counting(PollingWorker):
    name = "counting"
    backoff_start = 0.01

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.rounds = 0
        self.fail_first = fail_first

    async def round(self) -> float:
        self.rounds += 1
        if self.rounds <= self.fail_first:
            raise RuntimeError("not yet")
        return 60.0


async def test_the_worker_sleeps_until_woken_and_stops() -> None:
    worker = Counting()
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.05)
    assert worker.rounds == 1
    worker.wake()
    await asyncio.sleep(0.05)
    assert worker.rounds == 2
    stop.set()
    await asyncio.wait_for(task, 1)


async def test_the_worker_backs_off_after_a_failed_round() -> None:
    worker = Counting(fail_first=2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    for _ in range(100):
        if worker.rounds >= 3:
            break
        await asyncio.sleep(0.01)
    assert worker.rounds == 3
    stop.set()
    await asyncio.wait_for(task, 1)


def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock() == datetime(2026, 1, 1, tzinfo=UTC)
    assert clock.advance(90).minute == 1
