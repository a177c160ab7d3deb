"""The unit of work's commit hooks, on both databases.

`before_commit` callbacks run inside the transaction (what they write commits with it),
`after_commit` callbacks run only once it has committed, and a savepoint that rolls
back takes the hooks registered inside it with it. A record queued as text makes the
outbox row its bytes would.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.integration.test_plumbing import Probe, effects, outbox


async def test_before_commit_writes_commit_with_the_transaction_and_after_commit_follows(
    probe: Probe,
) -> None:
    lead = uuid.uuid4().hex
    calls: list[str] = []

    async def write() -> None:
        calls.append("before")
        await uow.session.execute(sa.insert(effects).values(lead_id=lead))

    async with probe.uow() as uow:
        uow.before_commit(write)
        uow.after_commit(lambda: calls.append("after"))
        assert calls == []
        await uow.commit()
    assert calls == ["before", "after"]
    assert await probe.effect_leads() == [lead]


async def test_no_hook_runs_without_a_commit(probe: Probe) -> None:
    calls: list[str] = []

    async def write() -> None:
        calls.append("before")

    async with probe.uow() as uow:
        uow.before_commit(write)
        uow.after_commit(lambda: calls.append("after"))
    async with probe.uow() as uow:
        await uow.commit()
    assert calls == []


async def test_a_rolled_back_savepoint_drops_the_hooks_it_registered(probe: Probe) -> None:
    calls: list[str] = []

    async def kept() -> None:
        calls.append("kept")

    async def dropped() -> None:
        calls.append("dropped")

    async with probe.uow() as uow:
        uow.before_commit(kept)
        with pytest.raises(ValueError):
            async with uow.savepoint():
                uow.before_commit(dropped)
                uow.after_commit(lambda: calls.append("dropped after"))
                raise ValueError("this event fails")
        uow.after_commit(lambda: calls.append("kept after"))
        await uow.commit()
    assert calls == ["kept", "kept after"]


async def test_a_record_queued_as_text_is_the_row_its_bytes_would_make(probe: Probe) -> None:
    at = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    headers = [("ce_id", "é-1"), ("ce_type", "leadflow.lead.scored.v1")]
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    async with probe.uow() as uow:
        uow.publish_raw(
            "t", "k-é".encode(), b'{"a":1}', [(k, v.encode()) for k, v in headers], first
        )
        uow.publish_text("t", "k-é", b'{"a":1}', headers, second, at)
        await uow.commit()
    async with probe.db.session() as session:
        rows = {
            row.event_id: row
            for row in await session.execute(
                sa.select(outbox).where(outbox.c.event_id.in_([first, second]))
            )
        }
    raw, text = rows[first], rows[second]
    assert (text.topic, text.key, text.headers, text.value) == (
        raw.topic,
        raw.key,
        raw.headers,
        raw.value,
    )
    assert text.headers == [["ce_id", "é-1"], ["ce_type", "leadflow.lead.scored.v1"]]
    assert text.created_at == at
