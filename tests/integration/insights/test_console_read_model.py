"""The console's read model: profiles and timelines written in bulk, searched by keyset.

The same events fed in one batch, one by one and through the consumer's savepoint
path leave the same profile and timeline rows; erasure leaves a tombstone and no
personal data; the leads search filters by prefix, channel, grade and date, and
pages newest or oldest first without skipping or repeating a lead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.insights import consumers, store
from services.insights.console import store as console_store
from services.insights.console.timeline import recording
from shared.db import Database, UnitOfWork
from shared.events import (
    Attribution,
    Contact,
    Envelope,
    Event,
    LeadCaptured,
    LeadDeliveryFailed,
    LeadErased,
    LeadRouted,
    LeadScored,
    ScoreReason,
)
from shared.events.topics import TOPICS
from shared.kafka.consumer import EventConsumer
from tests.conftest import migrate_service
from tests.integration.insights.campaign import CONFIG_YAML
from tests.integration.insights.test_batch_folding import poison, records_of

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def _env(data: Event) -> Envelope[Event]:
    return Envelope(data=data, source="leadflow/test")


def capture(lead_id: str, n: int, channel: str, email: str, first: str, company: str) -> Any:
    return _env(
        LeadCaptured(
            lead_id=lead_id,
            submission_id=str(uuid.uuid4()),
            is_new_lead=True,
            touch_number=1,
            source="form",
            form_id="demo-request",
            channel=channel,
            attribution=Attribution(
                channel=channel,
                source="form",
                utm_source="google",
                landing_page="https://example.com/demo?email=x@y.z",
            ),
            first_touch=Attribution(channel=channel, source="form"),
            contact=Contact(email=email, first_name=first, last_name="Tester", company=company),
            marketing_consent=True,
            captured_at=T0 + timedelta(minutes=n),
        )
    )


def score(lead_id: str, grade: str, points: float, minutes: int) -> Any:
    return _env(
        LeadScored(
            lead_id=lead_id,
            score=points,
            fit=points,
            engagement=0,
            grade=grade,  # type: ignore[arg-type]
            sales_ready=grade == "hot",
            became_sales_ready=grade == "hot",
            model_version="m1",
            reasons=[ScoreReason(rule_id="title_director", kind="fit", points=points)],
            cause_event_id="x",
            cause_type=LeadCaptured.TYPE,
            channel="google_ads",
            contact=Contact(email="ignored@example.com"),
            captured_at=T0,
            scored_at=T0 + timedelta(minutes=minutes),
        )
    )


def story(run: str) -> tuple[list[Envelope[Event]], dict[str, str]]:
    ids = {name: f"{run}-{name}" for name in ("ada", "bob", "cy")}
    events = [
        capture(ids["ada"], 1, "google_ads", "Ada@Example.com", "Ada", "Analytical"),
        score(ids["ada"], "hot", 80, 5),
        score(ids["ada"], "warm", 40, 2),  # older: must not win
        _env(
            LeadRouted(
                lead_id=ids["ada"],
                assignment_id="a1",
                rep_id="rep-alice",
                rule_id="emea",
                destinations=["file"],
                channel="google_ads",
                captured_at=T0,
                routed_at=T0 + timedelta(minutes=6),
            )
        ),
        _env(
            LeadDeliveryFailed(
                lead_id=ids["ada"],
                destination="hubspot",
                error="HTTP 400",
                attempts=5,
                failed_at=T0 + timedelta(minutes=7),
            )
        ),
        capture(ids["bob"], 2, "facebook_ads", "bob@corp.test", "Bob", "Corp"),
        score(ids["bob"], "cold", 5, 3),
        capture(ids["cy"], 3, "google_ads", "cy@corp.test", "Cy", "Analytical"),
        _env(LeadErased(lead_id=ids["bob"], erased_at=T0 + timedelta(minutes=9))),
    ]
    return events, ids


@pytest.fixture
async def replica_factory(
    settings_factory: Any, backend: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Any]]:
    config = tmp_path / "leadflow.yaml"
    config.write_text(CONFIG_YAML)
    opened: list[Database] = []

    async def open_replica() -> tuple[Database, EventConsumer]:
        settings = settings_factory(backend, config=config)
        await migrate_service(settings, "insights")
        db = Database(
            settings.database_url_for("insights"),
            service="insights",
            schema=settings.schema_for("insights"),
        )
        opened.append(db)
        consumer = EventConsumer(
            service="insights",
            group_id=settings.group_id("insights"),
            topics=TOPICS,
            handlers=recording(consumers.HANDLERS),
            uow_factory=lambda: UnitOfWork(db, store.outbox, store.inbox, "leadflow/test"),
            settings=settings,
            retry_delay=0,
            before_batch=consumers.load_leads,
        )
        return db, consumer

    try:
        yield open_replica
    finally:
        for db in opened:
            await db.dispose()


async def snapshot(db: Database) -> dict[str, Any]:
    async with UnitOfWork(db, store.outbox, store.inbox, "t") as uow:
        p = console_store.profiles
        profile_columns = [c for c in p.columns if c.name != "updated_at"]
        t = console_store.timeline
        return {
            "profiles": (
                await uow.session.execute(sa.select(*profile_columns).order_by(p.c.lead_id))
            ).all(),
            "timeline": (
                await uow.session.execute(sa.select(t).order_by(t.c.lead_id, t.c.event_id))
            ).all(),
        }


async def test_batches_one_by_one_and_savepoints_leave_the_same_console_rows(
    replica_factory: Any,
) -> None:
    events, ids = story(uuid.uuid4().hex[:8])
    records = records_of(events)
    whole_db, whole = await replica_factory()
    await whole.process(records)
    expected = await snapshot(whole_db)

    single_db, single = await replica_factory()
    for r in records:
        await single.process([r])
    assert await snapshot(single_db) == expected

    saved_db, saved = await replica_factory()
    await saved.process([poison(len(records)), *records])
    assert await snapshot(saved_db) == expected

    await whole.process(records)  # redelivered: nothing changes
    assert await snapshot(whole_db) == expected

    profiles = {row.lead_id: row for row in expected["profiles"]}
    ada, bob, cy = profiles[ids["ada"]], profiles[ids["bob"]], profiles[ids["cy"]]
    assert (ada.email, ada.email_lc, ada.name_lc) == (
        "Ada@Example.com",
        "ada@example.com",
        "ada tester",
    )
    assert (ada.grade, ada.score, ada.channel) == ("hot", 80, "google_ads")
    assert cy.company == "Analytical" and cy.grade is None
    # Erased: a tombstone with ids, channel and times only.
    assert bob.erased_at is not None and bob.channel == "facebook_ads"
    assert all(getattr(bob, c) is None for c in console_store.CONTACT_COLUMNS)
    kinds: dict[str, list[str]] = {}
    for row in expected["timeline"]:
        kinds.setdefault(row.lead_id, []).append(row.kind)
    assert kinds[ids["bob"]] == ["erased"]
    assert sorted(kinds[ids["ada"]]) == [
        "captured",
        "delivery_failed",
        "routed",
        "scored",
        "scored",
    ]
    text = repr(expected["timeline"])
    assert "Ada@Example.com" not in text and "ignored@example.com" not in text
    assert "email=x@y.z" not in text  # landing page kept without its query


async def test_search_filters_and_keyset_pages(replica_factory: Any) -> None:
    db, consumer = await replica_factory()
    run = uuid.uuid4().hex[:8]
    events = [
        capture(
            f"{run}-{i:03}",
            i,
            "google_ads" if i % 2 else "radio",
            f"p{i:03}@{run}.test",
            f"Person{i:03}",
            f"Co{i % 3}",
        )
        for i in range(23)
    ]
    await consumer.process(records_of(events))

    async def search(**kwargs: Any) -> list[str]:
        async with UnitOfWork(db, store.outbox, store.inbox, "t") as uow:
            rows = await console_store.search_leads(uow.session, console_store.LeadSearch(**kwargs))
        return [r.lead_id for r in rows]

    everyone = [f"{run}-{i:03}" for i in range(23)]
    assert await search(q=f"P005@{run}") == [f"{run}-005"]
    assert await search(q="person01", newest_first=False) == everyone[10:20]
    assert len(await search(channel="radio")) == 12
    assert await search(q=f"{run}-007") == [f"{run}-007"]
    # Pages of 5, newest first then oldest first: every lead once, in order.
    for newest in (True, False):
        seen: list[str] = []
        after = None
        while True:
            async with UnitOfWork(db, store.outbox, store.inbox, "t") as uow:
                rows = await console_store.search_leads(
                    uow.session,
                    console_store.LeadSearch(newest_first=newest, after=after, limit=5),
                )
            page = rows[:5]
            seen += [r.lead_id for r in page if r.lead_id.startswith(run)]
            if len(rows) <= 5:
                break
            after = (page[-1].captured_at, page[-1].lead_id)
        assert seen == (everyone[::-1] if newest else everyone)
    window = await search(since=T0 + timedelta(minutes=20), until=T0 + timedelta(minutes=22))
    assert window == [f"{run}-021", f"{run}-020"]
