"""One lead per person when a submission's email and phone name two different leads."""

from __future__ import annotations

import asyncio
import random
import uuid
from decimal import Decimal

import sqlalchemy as sa

from services.capture import store
from services.capture.commands import CaptureLead, CreateApiKey
from services.capture.messagebus import CaptureBus
from shared.db.batching import Batcher
from tests.integration.capture.support import write_config


def _phone() -> str:
    return f"+1415555{random.randint(0, 9999):04d}"


def _email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}@example.com"


async def _leads(runtime) -> dict[str, dict]:
    async with runtime.uow() as uow:
        rows = (await uow.session.execute(sa.select(store.leads))).all()
    return {row.lead_id: dict(row._mapping) for row in rows}


async def test_email_wins_over_a_phone_another_lead_holds(
    backend, broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(
        backend, kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path)
    )
    email, other_email, switchboard = _email("desk"), _email("reception"), _phone()
    async with running_service("capture", settings) as capture:
        key = await capture.app.state.bus.handle(
            CreateApiKey(name="test", source="partner-a", cost_per_lead=Decimal("1"))
        )
        headers = {"Authorization": f"Bearer {key}"}

        async def post(**lead: str):
            return await capture.client.post("/v1/leads", json=lead, headers=headers)

        by_email = (await post(email=email)).json()["lead_id"]
        by_phone = (await post(email=other_email, phone=switchboard)).json()["lead_id"]
        both = await post(email=email, phone=switchboard, first_name="Sam")
        assert both.status_code == 202, both.text
        assert both.json()["lead_id"] == by_email
        assert both.json()["status"] == "accepted"

        leads = await _leads(capture.runtime)
        assert len(leads) == 2
        assert (leads[by_email]["touches"], leads[by_email]["phone"]) == (2, None)
        assert leads[by_email]["contact"]["first_name"] == "Sam"
        assert leads[by_email]["contact"]["phone"] is None
        assert (leads[by_phone]["touches"], leads[by_phone]["phone"]) == (1, switchboard)
        async with capture.runtime.uow() as uow:
            submission = (
                await uow.session.execute(
                    sa.select(store.submissions).where(
                        store.submissions.c.submission_id == both.json()["submission_id"]
                    )
                )
            ).one()
        assert (submission.lead_id, submission.phone) == (by_email, switchboard)


async def test_email_wins_inside_one_group_of_concurrent_submissions(
    backend, broker, settings_factory, running_service, tmp_path, monkeypatch
):
    one_at_a_time: list[CaptureLead] = []
    capture_one = CaptureBus.capture

    async def recording(self, command):
        one_at_a_time.append(command)
        return await capture_one(self, command)

    monkeypatch.setattr(CaptureBus, "capture", recording)
    group_sizes: list[int] = []
    write_group = CaptureBus.capture_batch

    async def recording_group(self, group):
        group_sizes.append(len(group))
        return await write_group(self, group)

    monkeypatch.setattr(CaptureBus, "capture_batch", recording_group)
    settings = settings_factory(
        backend, kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path)
    )
    known_email, known_phone = _email("known"), _phone()
    new_email, new_phone = _email("new"), _phone()
    async with running_service("capture", settings) as capture:
        intake: Batcher = capture.app.state.intake

        def lead(**data: str) -> CaptureLead:
            return CaptureLead(source="api", data=data)

        # Two people already known: one by email only, one by phone.
        await intake.submit(lead(email=known_email))
        await intake.submit(lead(phone=known_phone))
        one_at_a_time.clear()
        # One group: two new people, then each email with the other person's phone.
        results = await asyncio.gather(
            intake.submit(lead(email=new_email)),
            intake.submit(lead(phone=new_phone)),
            intake.submit(lead(email=new_email, phone=new_phone)),
            intake.submit(lead(email=known_email, phone=known_phone)),
        )
        assert 4 in group_sizes
        assert one_at_a_time == []  # the group was written as a group, not retried one by one
        assert [r.status for r in results] == ["accepted"] * 4
        assert [r.is_new_lead for r in results] == [True, True, False, False]
        assert results[2].lead_id == results[0].lead_id

        leads = await _leads(capture.runtime)
        by_email = {row["email"]: row for row in leads.values() if row["email"]}
        by_phone = {row["phone"]: row for row in leads.values() if row["phone"]}
        assert len(leads) == 4
        assert (by_email[new_email]["touches"], by_email[new_email]["phone"]) == (2, None)
        assert (by_email[known_email]["touches"], by_email[known_email]["phone"]) == (2, None)
        assert results[3].lead_id == by_email[known_email]["lead_id"]
        assert by_phone[new_phone]["lead_id"] == results[1].lead_id
        assert by_phone[known_phone]["touches"] == 1
