"""Two nurture schedulers on one PostgreSQL database never send the same email twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from services.nurture import store
from shared.db.engine import Database
from shared.db.uow import UnitOfWork
from tests.integration.nurture.support import (
    T0,
    Clock,
    MailServer,
    config_of,
    deliver_scored,
    nurture_section,
    nurture_uows,
    scheduler_for,
    scored,
    sends_of,
)

pytestmark = pytest.mark.postgres


async def test_two_replicas_on_postgresql_never_double_send(settings_factory):
    from tests.conftest import PG_AVAILABLE

    if not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    smtp = MailServer(delay=0.002)
    section = nurture_section(smtp.port)
    section["delivery"] = {"batch_size": 4}
    steps = section["sequences"]["welcome"]["steps"]
    steps[1]["delay"] = 0  # step 2 is due as soon as step 1 is recorded
    section["sequences"]["welcome"]["steps"] = steps[:2]
    config = config_of(section)
    leads = [scored() for _ in range(30)]
    settings = settings_factory("postgres")
    clock = Clock()
    try:
        async with nurture_uows(settings) as uows:
            for lead in leads:
                await deliver_scored(uows, config, lead, T0)
            # A second process: its own engine and connection pool on the same schema.
            other = Database(
                settings.database_url_for("nurture"),
                service="nurture",
                schema=settings.schema_for("nurture"),
            )
            try:
                replicas = [
                    scheduler_for(uows, config, clock),
                    scheduler_for(
                        lambda: UnitOfWork(other, store.outbox, store.inbox, "leadflow/nurture"),
                        config,
                        clock,
                    ),
                ]
                taken = [0, 0]

                async def drain(index: int) -> None:
                    idle = 0
                    while idle < 3:
                        handled = await replicas[index].run_once()
                        taken[index] += handled
                        idle = 0 if handled else idle + 1
                        await asyncio.sleep(0)

                await asyncio.gather(drain(0), drain(1))
            finally:
                await other.dispose()
            sends = [s for lead in leads for s in await sends_of(uows, lead.lead_id)]
    finally:
        smtp.stop()
    assert len(sends) == 60 and {s.status for s in sends} == {store.SENT}
    per_message = Counter(str(m["Message-ID"]) for m in smtp.messages)
    assert len(per_message) == 60 and set(per_message.values()) == {1}
    assert sum(taken) == 60 and min(taken) > 0  # both replicas worked, neither twice
    for lead in leads:
        subjects = [m["Subject"] for m in smtp.to(lead.contact.email)]
        assert subjects == ["Your guide, Ada", "Step two"]
