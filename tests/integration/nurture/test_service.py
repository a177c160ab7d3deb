"""Nurture as a running service: the real broker, both databases, a real SMTP server, HTTP.

A scored cold lead is enrolled and mailed; its open and click come back as lead.engaged;
a sales-ready score stops its sequence; one-click unsubscribe and double opt-in work over
HTTP; a restart mid-sequence loses and duplicates nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.nurture import tokens
from services.nurture.rendering import Tracking
from shared.events import LeadEngaged, LeadUnsubscribed
from shared.events.topics import LEADS_ENGAGEMENT
from tests.conftest import eventually
from tests.integration.nurture.support import (
    PUBLIC,
    SECRET,
    MailServer,
    nurture_section,
    path_of,
    publish,
    scored,
    settled,
    text_of,
    token_of,
    topic_events,
    tracked_links,
    write_config,
)

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def service_settings(settings_factory, backend, broker, tmp_path, section):
    return settings_factory(
        backend,
        config=write_config(tmp_path, section),
        secret_key=SECRET,
        admin_token=ADMIN_TOKEN,
        kafka_bootstrap=broker.bootstrap,
    )


async def enrollments(service, lead_id):
    response = await service.client.get(f"/v1/leads/{lead_id}/enrollments")
    return response.json() if response.status_code == 200 else None


async def _once_sent(service, lead_id):
    runs = await enrollments(service, lead_id)
    if runs and all(step["status"] != "sending" for step in runs[0]["steps"]):
        return runs
    return None


async def test_a_scored_cold_lead_is_mailed_tracked_and_stopped_when_sales_ready(
    backend, broker, settings_factory, running_service, tmp_path
):
    smtp = MailServer()
    settings = service_settings(
        settings_factory, backend, broker, tmp_path, nurture_section(smtp.port)
    )
    lead = scored()
    email = lead.contact.email
    try:
        async with running_service("nurture", settings) as nurture:
            await settled(nurture)
            unknown = await nurture.client.get(f"/v1/leads/{lead.lead_id}/enrollments")
            assert unknown.status_code == 404
            assert unknown.json()["error"]["field"] == "lead_id"

            await publish(broker.bootstrap, [lead])
            mail = (await eventually(lambda: smtp.to(email), timeout=15))[0]
            # The server has the mail a moment before the step is recorded as sent.
            (run,) = await eventually(lambda: _once_sent(nurture, lead.lead_id))
            assert (run["sequence"], run["status"]) == ("welcome", "active")
            assert [s["status"] for s in run["steps"]] == ["sent", "scheduled", "upcoming"]
            assert run["steps"][0]["message_id"] == mail["Message-ID"]

            pixel = await nurture.client.get(path_of(tracked_links(mail, "open")[0]))
            assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
            guide = next(
                u
                for u in tracked_links(mail)
                if tokens.verify(SECRET, tokens.CLICK, token_of(u))["l"] == "guide"
            )
            click = await nurture.client.get(path_of(guide))
            assert click.status_code == 302
            assert click.headers["location"] == "https://content.example.com/guide.pdf"
            # No open redirect: a tampered token is refused; a genuine token for a link the
            # email did not contain leads nowhere.
            tampered = path_of(guide)[:-3] + "AAA"
            refused = await nurture.client.get(tampered)
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "bad_token"
            send_id = run["steps"][0]["send_id"]
            elsewhere = Tracking(PUBLIC, SECRET).click_url(send_id, "evil")
            assert (await nurture.client.get(path_of(elsewhere))).status_code == 404

            engaged = await topic_events(broker.bootstrap, LEADS_ENGAGEMENT, lead.lead_id, 2)
            assert sorted((e.kind, e.link_id) for e in engaged) == [
                ("click", "guide"),
                ("open", None),
            ]
            assert all(isinstance(e, LeadEngaged) and e.sequence_id == "welcome" for e in engaged)

            await publish(broker.bootstrap, [scored(lead_id=lead.lead_id, sales_ready=True)])

            async def stopped():
                (run,) = await enrollments(nurture, lead.lead_id)
                return run["status"] == "exited" and run

            run = await eventually(stopped, timeout=15)
            assert run["exit_reason"] == "sales_ready"
            assert [s["status"] for s in run["steps"]] == ["sent", "cancelled", "not_reached"]
    finally:
        smtp.stop()
    assert len(smtp.to(email)) == 1


async def test_one_click_unsubscribe_and_double_opt_in_over_http(
    backend, broker, settings_factory, running_service, tmp_path
):
    smtp = MailServer()
    settings = service_settings(
        settings_factory, backend, broker, tmp_path, nurture_section(smtp.port)
    )
    leaving, joining = scored(), scored(double_opt_in=True)
    try:
        async with running_service("nurture", settings) as nurture:
            await settled(nurture)
            await publish(broker.bootstrap, [leaving, joining])
            mail = (await eventually(lambda: smtp.to(leaving.contact.email), timeout=15))[0]
            unsubscribe = path_of(str(mail["List-Unsubscribe"])[1:-1])

            page = await nurture.client.get(unsubscribe, headers={"Accept": "text/html"})
            assert page.status_code == 200 and '<form method="post">' in page.text
            consent = (
                await nurture.client.get(f"/v1/leads/{leaving.lead_id}/consent", headers=ADMIN)
            ).json()
            assert consent["unsubscribed_at"] is None  # a GET (a link scanner) changes nothing
            anonymous = await nurture.client.get(f"/v1/leads/{leaving.lead_id}/consent")
            assert anonymous.status_code == 401  # the consent record holds an IP address

            one_click = await nurture.client.post(
                unsubscribe, data={"List-Unsubscribe": "One-Click"}
            )
            assert one_click.status_code == 200
            again = await nurture.client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
            assert again.status_code == 200
            consent = (
                await nurture.client.get(f"/v1/leads/{leaving.lead_id}/consent", headers=ADMIN)
            ).json()
            assert consent["unsubscribed_at"] is not None
            (run,) = await enrollments(nurture, leaving.lead_id)
            assert (run["status"], run["exit_reason"]) == ("exited", "unsubscribed")
            (gone,) = await topic_events(broker.bootstrap, LEADS_ENGAGEMENT, leaving.lead_id, 1)
            assert isinstance(gone, LeadUnsubscribed) and gone.method == "one_click"
            bad = await nurture.client.post(unsubscribe[:-2] + "xx")
            assert bad.status_code == 403

            confirmation = (await eventually(lambda: smtp.to(joining.contact.email), timeout=15))[0]
            assert await enrollments(nurture, joining.lead_id) == []
            (link,) = [w for w in text_of(confirmation).split() if "/v1/confirm/" in w]
            page = await nurture.client.get(path_of(link))
            assert page.status_code == 200 and "Yes, subscribe me" in page.text
            pending = (
                await nurture.client.get(f"/v1/leads/{joining.lead_id}/consent", headers=ADMIN)
            ).json()
            assert pending["consent"] == "pending"
            confirmed = await nurture.client.post(path_of(link))
            assert confirmed.status_code == 200
            granted = (
                await nurture.client.get(f"/v1/leads/{joining.lead_id}/consent", headers=ADMIN)
            ).json()
            assert granted["consent"] == "granted"
            assert granted["consent_source"] == "double_opt_in"
            assert granted["consent_ip"] == "127.0.0.1" and granted["consent_at"]
            (confirm,) = await topic_events(broker.bootstrap, LEADS_ENGAGEMENT, joining.lead_id, 1)
            assert isinstance(confirm, LeadEngaged) and confirm.kind == "confirm"
            welcome = await eventually(lambda: smtp.to(joining.contact.email)[1:], timeout=15)
            assert [m["Subject"] for m in welcome] == ["Your guide, Ada"]

            tracking = Tracking(PUBLIC, SECRET)
            stale = path_of(
                tracking.confirm_url(joining.lead_id, "x", datetime.now(UTC) - timedelta(days=8))
            )
            expired = await nurture.client.post(stale)
            assert expired.status_code == 410
            assert expired.json()["error"]["code"] == "expired_token"
            page = await nurture.client.get(stale, headers={"Accept": "text/html"})
            assert page.status_code == 410 and "expired" in page.text
            late = path_of(tracking.confirm_url(leaving.lead_id, "x", datetime.now(UTC)))
            refused = await nurture.client.post(late)
            assert refused.status_code == 409  # unsubscribed: a confirm link cannot undo it
    finally:
        smtp.stop()
    assert len(smtp.to(leaving.contact.email)) == 1


async def test_restarting_mid_sequence_loses_and_duplicates_nothing(
    backend, broker, settings_factory, running_service, tmp_path
):
    smtp = MailServer()
    section = nurture_section(smtp.port)
    for step in section["sequences"]["welcome"]["steps"][1:]:
        step["delay"] = "1s"
    settings = service_settings(settings_factory, backend, broker, tmp_path, section)
    lead = scored()
    email = lead.contact.email
    try:
        async with running_service("nurture", settings) as first:
            await settled(first)
            await publish(broker.bootstrap, [lead])
            await eventually(lambda: smtp.to(email), timeout=15)
        # Stopped after step 1; step 2 falls due while nurture is down.
        async with running_service("nurture", settings, migrate=False) as second:
            await settled(second)

            async def finished():
                runs = await enrollments(second, lead.lead_id)
                return runs and runs[0]["status"] == "completed" and runs

            runs = await eventually(finished, timeout=20)
            assert await second.app.state.scheduler.run_once() == 0
    finally:
        smtp.stop()
    assert len(runs) == 1  # the redelivered lead.scored did not enroll the lead twice
    assert [s["status"] for s in runs[0]["steps"]] == ["sent", "sent", "sent"]
    mails = smtp.to(email)
    assert [m["Subject"] for m in mails] == ["Your guide, Ada", "Step two", "Step three"]
    assert len({m["Message-ID"] for m in mails}) == 3
