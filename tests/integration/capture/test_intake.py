"""Batched intake: concurrent submissions written as a group answer exactly as one at a time."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa

from services.capture import store
from services.capture.commands import CaptureLead
from services.capture.messagebus import CaptureBus
from shared.events import LeadCaptured, decode
from tests.conftest import consume_all


async def test_a_concurrent_group_keeps_one_lead_per_person_and_each_answer_its_own(
    backend, broker, settings_factory, running_service, monkeypatch
):
    group_sizes: list[int] = []
    write_group = CaptureBus.capture_batch

    async def recording(self, group):
        group_sizes.append(len(group))
        return await write_group(self, group)

    monkeypatch.setattr(CaptureBus, "capture_batch", recording)
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    tag = uuid.uuid4().hex[:6]
    emails = [f"group-{tag}-{i}@example.com" for i in range(40)]
    async with running_service("capture", settings) as capture:
        client = capture.client

        def post(email: str, key: str | None = None, **extra: str):
            headers = {"Idempotency-Key": key} if key else {}
            body = {"work_email": email, "name": "Group Person", **extra}
            return client.post("/v1/forms/demo-request", json=body, headers=headers)

        # One burst: 40 people, each of the first ten twice (a second touch), one retry
        # with the same Idempotency-Key, and one invalid address among them.
        requests = [post(email) for email in emails]
        requests += [post(email, utm_source="newsletter") for email in emails[:10]]
        requests += [post(emails[20], key=f"k-{tag}"), post(emails[20], key=f"k-{tag}")]
        requests.append(post("not-an-email"))
        responses = await asyncio.gather(*requests)
        assert max(group_sizes) > 1  # the burst was written in groups

        statuses = [r.status_code for r in responses]
        assert statuses[:-1] == [202] * (len(responses) - 1), [r.text for r in responses]
        assert responses[-1].status_code == 422
        assert responses[-1].json()["error"]["field"] == "work_email"
        by_email: dict[str, set[str]] = {}
        for email, response in zip(
            emails + emails[:10] + [emails[20], emails[20]], responses, strict=False
        ):
            by_email.setdefault(email, set()).add(response.json()["lead_id"])
        assert all(len(ids) == 1 for ids in by_email.values()), by_email
        keyed = [r.json() for r in responses[50:52]]
        assert keyed[0]["submission_id"] == keyed[1]["submission_id"]
        assert sorted(r["status"] for r in keyed) == ["accepted", "duplicate"]

        async with capture.app.state.runtime.db.session() as session:
            leads = (await session.execute(sa.select(store.leads))).all()
            touches = {row.email: row.touches for row in leads}
        assert len(leads) == 40
        assert [touches[email] for email in emails[:10]] == [2] * 10
        assert touches[emails[20]] == 2  # first post + the keyed one (its retry is a duplicate)
        assert touches[emails[30]] == 1

    records = await consume_all(broker.bootstrap, "leads.captured", 51)
    events = [decode(r.value, r.headers).data for r in records]
    assert len(events) == 51  # 40 first touches, 10 second touches, 1 keyed touch
    assert sum(1 for e in events if isinstance(e, LeadCaptured) and e.is_new_lead) == 40


async def test_rows_written_by_a_group_read_back_as_rows_written_one_at_a_time(
    backend, broker, settings_factory, running_service
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    tag = uuid.uuid4().hex[:6]

    def command(email: str, quarantine: str | None = None) -> CaptureLead:
        data = {"work_email": email, "name": "Row Person", "utm_source": "google"}
        return CaptureLead(
            quarantine=quarantine,
            source="form",
            data=data,
            form_id="demo-request",
            dedupe_key=f"demo-request:{email}",
            client_ip="203.0.113.9",
            spam_checks=True,
        )

    async with running_service("capture", settings) as capture_service:
        state = capture_service.app.state
        one_email, group_email = f"one-{tag}@example.com", f"group-{tag}@example.com"
        # The one-at-a-time path (the group's fallback), then a group: an accepted
        # submission, a quarantined one and a second touch of the first person.
        await state.bus.capture(command(one_email))
        results = await asyncio.gather(
            state.intake.submit(command(group_email)),
            state.intake.submit(command(f"held-{tag}@example.com", quarantine="honeypot")),
            state.intake.submit(
                CaptureLead(source="form", data={"work_email": one_email}, form_id="demo-request")
            ),
        )
        assert [r.status for r in results] == ["accepted", "quarantined", "accepted"]

        async with state.runtime.db.session() as session:
            subs = {
                (row.email, row.dedupe_key is not None): row
                for row in (await session.execute(sa.select(store.submissions))).all()
                if row.email and tag in row.email
            }
            leads = {
                row.email: row
                for row in (await session.execute(sa.select(store.leads))).all()
                if row.email and tag in row.email
            }
            consents = {
                row.submission_id: row
                for row in (await session.execute(sa.select(store.consents))).all()
            }

    def shape(row: sa.Row) -> dict[str, object]:
        skip = {"submission_id", "lead_id", "consent_id", "email", "dedupe_key", "consent"}
        values = {k: v for k, v in row._mapping.items() if k not in skip}
        return {
            k: (type(v), v if k not in ("received_at", "recorded_at") else None)
            for k, v in values.items()
        }

    first, grouped = subs[one_email, True], subs[group_email, True]
    assert subs[one_email, False].status == "accepted"
    assert shape(first) == shape(grouped)
    assert shape(consents[first.submission_id]) == shape(consents[grouped.submission_id])
    assert {k: v for k, v in first.consent.items() if k != "at"} == {
        k: v for k, v in grouped.consent.items() if k != "at"
    }
    assert grouped.received_at.tzinfo is not None and grouped.platform is None
    held = subs[f"held-{tag}@example.com", True]
    assert held.status == "quarantined" and held.raw["data"]["name"] == "Row Person"
    assert held.lead_id is None and held.quarantine_reason
    assert leads[one_email].touches == 2 and leads[group_email].touches == 1
    assert leads[group_email].first_touch == leads[one_email].first_touch
    assert leads[group_email].created_at.tzinfo is not None
