"""The consumer handles a whole batch with garbage collection paused, and leaves the
collector as it found it afterwards: after a batch that committed, after one that failed
and went event by event (which runs with collection on), and when it was off already."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.db.uow import UnitOfWork
from shared.events import Envelope, LeadErased
from tests.integration.test_plumbing import Probe
from tests.records import record_of


@pytest.fixture
def collecting() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def _watched(probe: Probe) -> tuple[Any, list[bool]]:
    """The probe's consumer, its erasure handler noting whether collection was on."""
    seen: list[bool] = []
    consumer = probe.consumer()
    handle = consumer.handlers[LeadErased.TYPE]

    async def watching(envelope: Envelope[Any], uow: UnitOfWork) -> None:
        seen.append(gc.isenabled())
        await handle(envelope, uow)

    consumer.handlers[LeadErased.TYPE] = watching
    return consumer, seen


def _erasures(count: int) -> tuple[list[str], list[Any]]:
    leads = [uuid.uuid4().hex for _ in range(count)]
    at = datetime.now(UTC)
    records = [
        record_of(LeadErased(lead_id=lead, erased_at=at), offset)
        for offset, lead in enumerate(leads)
    ]
    return leads, records


async def test_a_batch_runs_without_collection_and_collection_resumes(
    probe: Probe, collecting: None
) -> None:
    consumer, seen = _watched(probe)
    leads, records = _erasures(3)
    await consumer.process(records)
    assert seen == [False, False, False]
    assert gc.isenabled()
    assert sorted(await probe.effect_leads()) == sorted(leads)


async def test_a_failed_batch_goes_event_by_event_with_collection_on(
    probe: Probe, collecting: None
) -> None:
    consumer, seen = _watched(probe)
    leads, records = _erasures(2)
    probe.fail_on.add(leads[0])
    await consumer.process(records)
    # The batch (paused) failed on its first event; event by event, collection is on.
    assert seen[0] is False and seen[1:] and all(seen[1:])
    assert gc.isenabled()
    assert await probe.effect_leads() == [leads[1]]


async def test_collection_that_was_off_stays_off(probe: Probe, collecting: None) -> None:
    _leads, records = _erasures(1)
    gc.disable()
    await probe.consumer().process(records)
    assert not gc.isenabled()
