"""The durable scheduler on real databases and a real SMTP server, with a controlled clock:
sequences in order, consent, unsubscribe, sales-ready exits, SMTP outages, bounces, crashes,
quiet hours, the frequency cap, the send-rate limit and double opt-in."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parseaddr

from services.nurture import store, tokens
from services.nurture.commands import ConfirmConsent, RecordClick, RedriveSend, Unsubscribe
from services.nurture.engagement import CONFIRMED
from tests.integration.nurture.support import (
    PUBLIC,
    SECRET,
    T0,
    Clock,
    MailServer,
    bus_for,
    config_of,
    deliver_scored,
    html_of,
    nurture_section,
    nurture_uows,
    outbox_events,
    runs_of,
    scheduler_for,
    scored,
    sends_of,
    text_of,
    token_of,
    tracked_links,
)


async def test_a_cold_lead_receives_its_sequence_in_order_with_headers_links_and_unsubscribe(
    backend, settings_factory
):
    smtp = MailServer()
    config = config_of(nurture_section(smtp.port))
    lead = scored(first_name="Ada")
    email = lead.contact.email
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, lead, T0)
            assert await scheduler.run_once() == 1  # step 1: no delay
            clock.advance(minutes=59)
            assert await scheduler.run_once() == 0  # step 2 is due an hour after step 1
            clock.advance(minutes=2)
            assert await scheduler.run_once() == 1
            clock.advance(hours=23)
            assert await scheduler.run_once() == 0
            clock.advance(hours=1, minutes=1)
            assert await scheduler.run_once() == 1
            clock.advance(days=30)
            assert await scheduler.run_once() == 0
            sends = await sends_of(uows, lead.lead_id)
            (run,) = await runs_of(uows, lead.lead_id)
    finally:
        smtp.stop()

    mails = smtp.to(email)
    assert [m["Subject"] for m in mails] == ["Your guide, Ada", "Step two", "Step three"]
    assert [s.step for s in sends] == [1, 2, 3]
    assert {s.status for s in sends} == {store.SENT}
    assert run.status == store.COMPLETED and run.sequence_id == "welcome"
    ids = [m["Message-ID"] for m in mails]
    assert len(set(ids)) == 3 and all(i.endswith("@example.com>") for i in ids)
    assert [s.message_id for s in sends] == ids
    for mail, send in zip(mails, sends, strict=True):
        assert parseaddr(str(mail["From"]))[1] == "hello@example.com"
        assert parseaddr(str(mail["To"]))[1] == email
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = str(mail["List-Unsubscribe"])
        assert unsubscribe.startswith(f"<{PUBLIC}/v1/unsubscribe/") and unsubscribe.endswith(">")
        payload = tokens.verify(SECRET, tokens.UNSUBSCRIBE, token_of(unsubscribe[1:-1]))
        assert payload == {"d": lead.lead_id, "s": send.send_id}
        assert unsubscribe[1:-1] in html_of(mail) and unsubscribe[1:-1] in text_of(mail)
        assert mail.get_content_type() == "multipart/alternative"
        (pixel,) = tracked_links(mail, "open")
        assert tokens.verify(SECRET, tokens.OPEN, token_of(pixel)) == {"s": send.send_id}
    # Every content link is tracked, points back at its own send and link, and nothing else.
    first = mails[0]
    clicks = [tokens.verify(SECRET, tokens.CLICK, token_of(u)) for u in tracked_links(first)]
    assert {c["l"] for c in clicks} == {"guide", "article"}
    assert {c["s"] for c in clicks} == {sends[0].send_id}
    assert "content.example.com" not in html_of(first)
    assert sends[0].links == {
        "guide": "https://content.example.com/guide.pdf",
        "article": "https://content.example.com/blog/speed?a=1&b=2",
    }
    assert "Ada" in text_of(first) and "1 Test Street" in text_of(first)


async def test_a_lead_without_consent_is_never_emailed(backend, settings_factory):
    smtp = MailServer()
    config = config_of(nurture_section(smtp.port))
    no_consent = scored(consent=False)
    unconfirmed = scored(double_opt_in=True)
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, no_consent, T0)
            await deliver_scored(uows, config, unconfirmed, T0)
            for _ in range(3):
                await scheduler.run_once()
                clock.advance(days=2)
            # A rescore without consent changes nothing either.
            await deliver_scored(
                uows, config, scored(lead_id=no_consent.lead_id, consent=False), T0
            )
            await scheduler.run_once()
            no_consent_runs = await runs_of(uows, no_consent.lead_id)
            unconfirmed_sends = await sends_of(uows, unconfirmed.lead_id)
    finally:
        smtp.stop()
    assert smtp.to(no_consent.contact.email) == []
    assert no_consent_runs == []
    # Double opt-in without the click: only the confirmation email, no sequence email.
    assert [s.kind for s in unconfirmed_sends] == [store.CONFIRM]
    (confirmation,) = smtp.to(unconfirmed.contact.email)
    assert "confirm" in str(confirmation["Subject"]).lower()
    assert confirmation["List-Unsubscribe"] is None


async def test_an_unsubscribed_lead_gets_nothing_more_even_after_reentry(backend, settings_factory):
    smtp = MailServer()
    config = config_of(nurture_section(smtp.port))
    lead = scored()
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, lead, T0)
            await scheduler.run_once()
            bus = bus_for(uows, config, clock)
            assert await bus.handle(Unsubscribe(lead.lead_id, "one_click"))
            # a second click changes nothing
            assert not await bus.handle(Unsubscribe(lead.lead_id, "page"))
            clock.advance(days=10)
            # The sequence allows re-entry after an hour; the lead comes back with consent.
            await deliver_scored(uows, config, scored(lead_id=lead.lead_id), clock())
            # Even as a new lead id with the same address (say, after an erasure).
            again = scored(email=lead.contact.email.upper())
            await deliver_scored(uows, config, again, clock())
            for _ in range(3):
                clock.advance(days=2)
                await scheduler.run_once()
            sends = await sends_of(uows, lead.lead_id)
            runs = await runs_of(uows, lead.lead_id)
            events = await outbox_events(uows, lead.lead_id)
            other_runs = await runs_of(uows, again.lead_id)
    finally:
        smtp.stop()
    assert len(smtp.to(lead.contact.email)) == 1
    assert [s.status for s in sends] == [store.SENT, store.CANCELLED]
    assert [(r.status, r.exit_reason) for r in runs] == [(store.EXITED, "unsubscribed")]
    assert other_runs == []
    unsubscribed = [e for e in events if e["type"] == "leadflow.lead.unsubscribed.v1"]
    assert len(unsubscribed) == 1 and unsubscribed[0]["method"] == "one_click"


async def test_sales_ready_cancels_pending_steps_at_once(backend, settings_factory):
    smtp = MailServer()
    config = config_of(nurture_section(smtp.port))
    lead = scored()
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, lead, T0)
            await scheduler.run_once()
            first = (await sends_of(uows, lead.lead_id))[0]
            target = await bus_for(uows, config, clock).handle(RecordClick(first.send_id, "guide"))
            assert target == "https://content.example.com/guide.pdf"
            await deliver_scored(
                uows, config, scored(lead_id=lead.lead_id, sales_ready=True), clock()
            )
            sends = await sends_of(uows, lead.lead_id)
            (run,) = await runs_of(uows, lead.lead_id)
            clock.advance(days=5)
            assert await scheduler.run_once() == 0
            events = await outbox_events(uows, lead.lead_id)
    finally:
        smtp.stop()
    assert [s.status for s in sends] == [store.SENT, store.CANCELLED]
    assert sends[1].last_error == "cancelled: sales_ready"
    assert (run.status, run.exit_reason) == (store.EXITED, "sales_ready")
    assert len(smtp.to(lead.contact.email)) == 1
    (click,) = [e for e in events if e["type"] == "leadflow.lead.engaged.v1"]
    assert (click["kind"], click["link_id"], click["sequence_id"], click["step"]) == (
        "click",
        "guide",
        "welcome",
        1,
    )


async def test_an_smtp_outage_delays_mail_and_loses_none(backend, settings_factory):
    smtp = MailServer()
    config = config_of(nurture_section(smtp.port))
    leads = [scored() for _ in range(3)]
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            for lead in leads:
                await deliver_scored(uows, config, lead, T0)
            smtp.stop()  # connections refused
            await scheduler.run_once()
            clock.advance(minutes=2)
            smtp.start()
            smtp.tempfail = 4  # then "451 try again later" for a while
            for _ in range(12):
                await scheduler.run_once()
                clock.advance(minutes=5)
            sends = [s for lead in leads for s in await sends_of(uows, lead.lead_id)]
    finally:
        smtp.stop()
    firsts = [s for s in sends if s.step == 1]
    assert {s.status for s in firsts} == {store.SENT}
    assert all(s.attempts >= 2 for s in firsts)  # the refused attempts were counted
    assert smtp.refused == 4
    for lead in leads:
        assert [m["Subject"] for m in smtp.to(lead.contact.email)] == ["Your guide, Ada"]


async def test_retries_run_out_into_a_recorded_failure_that_can_be_redriven(
    backend, settings_factory
):
    smtp = MailServer()
    section = nurture_section(smtp.port)
    section["delivery"] = {"max_attempts": 2, "backoff_seconds": 60}
    config = config_of(section)
    lead = scored()
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, lead, T0)
            smtp.tempfail = 2
            await scheduler.run_once()
            clock.advance(minutes=5)
            await scheduler.run_once()
            (failed,) = await sends_of(uows, lead.lead_id)
            (halted,) = await runs_of(uows, lead.lead_id)
            clock.advance(days=3)
            assert await scheduler.run_once() == 0  # not skipped to step 2 either
            await bus_for(uows, config, clock).handle(RedriveSend(failed.send_id))
            await scheduler.run_once()
            sends = await sends_of(uows, lead.lead_id)
            (resumed,) = await runs_of(uows, lead.lead_id)
    finally:
        smtp.stop()
    assert failed.status == store.FAILED and "gave up after 2 attempts" in failed.last_error
    assert "451" in failed.last_error
    assert halted.status == store.FAILED_RUN
    assert [s.status for s in sends] == [store.SENT, store.SCHEDULED]
    assert resumed.status == store.ACTIVE
    assert len(smtp.to(lead.contact.email)) == 1


async def test_a_hard_bounce_suppresses_the_address_and_ends_the_sequence(
    backend, settings_factory
):
    smtp = MailServer()
    config = config_of(nurture_section(smtp.port))
    lead = scored()
    smtp.bounce.add(lead.contact.email)
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, lead, T0)
            await scheduler.run_once()
            clock.advance(days=3)
            await scheduler.run_once()
            (send,) = await sends_of(uows, lead.lead_id)
            (run,) = await runs_of(uows, lead.lead_id)
            events = await outbox_events(uows, lead.lead_id)
    finally:
        smtp.stop()
    assert send.status == store.FAILED and send.last_error.startswith("bounced: SMTP 550")
    assert lead.contact.email not in send.last_error  # relays quote it; we do not keep it
    assert (run.status, run.exit_reason) == (store.EXITED, "bounced")
    assert [(e["type"], e.get("method")) for e in events] == [
        ("leadflow.lead.unsubscribed.v1", "bounce")
    ]
    assert smtp.messages == []


async def test_a_crash_mid_send_is_recorded_as_failed_and_never_sent_twice(
    backend, settings_factory
):
    smtp = MailServer()
    config = config_of(nurture_section(smtp.port))
    lead = scored()
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            crashed = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, lead, T0)
            # The process claims and hands the message over, then dies before recording it.
            claimed = await crashed.claim(clock())
            await crashed.mailer.send_all([c.outgoing for c in claimed])
            survivor = scheduler_for(uows, config, clock)
            clock.advance(seconds=30)
            assert await survivor.run_once() == 0  # still leased to the dead process
            clock.advance(minutes=10)  # the lease ran out
            assert await survivor.run_once() == 0
            (send,) = await sends_of(uows, lead.lead_id)
            (run,) = await runs_of(uows, lead.lead_id)
    finally:
        smtp.stop()
    assert len(smtp.to(lead.contact.email)) == 1
    assert send.status == store.FAILED and send.last_error.startswith("interrupted")
    assert run.status == store.FAILED_RUN


async def test_quiet_hours_in_the_leads_zone_and_the_frequency_cap_hold_mail_back(
    backend, settings_factory
):
    from datetime import UTC, datetime

    smtp = MailServer()
    section = nurture_section(smtp.port)
    section["quiet_hours"] = {"start": "21:00", "end": "08:00", "default_timezone": "UTC"}
    section["frequency_cap"] = {"max_emails": 1, "period": "1d"}
    section["sequences"]["welcome"]["steps"][1]["delay"] = "1h"
    config = config_of(section)
    late = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)  # 22:30 in London, 17:30 in New York
    london, new_york = scored(country="GB"), scored(country="US")
    clock = Clock(late)
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, london, late)
            await deliver_scored(uows, config, new_york, late)
            await scheduler.run_once()
            sent_at_once = [len(smtp.to(x.contact.email)) for x in (london, new_york)]
            (held,) = await sends_of(uows, london.lead_id)
            clock.now = datetime(2026, 11, 26, 8, 0, 30, tzinfo=UTC)
            await scheduler.run_once()
            london_sends = await sends_of(uows, london.lead_id)
            # Step 2 is due an hour later, but the cap allows one email a day.
            clock.advance(hours=2)
            await scheduler.run_once()
            capped = (await sends_of(uows, london.lead_id))[1]
            clock.now = datetime(2026, 11, 27, 8, 1, tzinfo=UTC)
            await scheduler.run_once()
    finally:
        smtp.stop()
    assert sent_at_once == [0, 1]
    assert held.next_attempt_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert london_sends[0].status == store.SENT
    assert capped.status == store.SCHEDULED
    assert capped.next_attempt_at == datetime(2026, 11, 27, 8, 0, 30, tzinfo=UTC)
    assert len(smtp.to(london.contact.email)) == 2


async def test_the_send_rate_limit_is_shared_by_replicas(backend, settings_factory):
    smtp = MailServer()
    section = nurture_section(smtp.port)
    section["smtp"]["rate_limit"] = {"messages": 2, "per_seconds": 10}
    config = config_of(section)
    leads = [scored() for _ in range(5)]
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            replicas = [scheduler_for(uows, config, clock) for _ in range(2)]
            for lead in leads:
                await deliver_scored(uows, config, lead, T0)
            first_window = [await r.run_once() for r in replicas]
            # Held back by the limit: the scheduler knows when the window has room again.
            assert replicas[1]._throttled_until == T0 + timedelta(seconds=10)
            clock.advance(seconds=11)
            second_window = [await r.run_once() for r in replicas]
            clock.advance(seconds=11)
            third_window = [await r.run_once() for r in replicas]
    finally:
        smtp.stop()
    assert first_window == [2, 0] and second_window == [2, 0] and third_window == [1, 0]
    assert len(smtp.messages) == 5


async def test_double_opt_in_counts_consent_only_after_the_click(backend, settings_factory):
    smtp = MailServer()
    section = nurture_section(smtp.port)
    config = config_of(section)
    lead = scored(double_opt_in=True)
    clock = Clock()
    try:
        async with nurture_uows(settings_factory(backend)) as uows:
            scheduler = scheduler_for(uows, config, clock)
            await deliver_scored(uows, config, lead, T0)
            # A rescore (say, after a page visit) does not send a second confirmation.
            await deliver_scored(
                uows,
                config,
                scored(lead_id=lead.lead_id, double_opt_in=True, cause_type="x.rescore"),
                T0,
            )
            await scheduler.run_once()
            (confirmation,) = smtp.to(lead.contact.email)
            (url,) = [u for u in text_of(confirmation).split() if "/v1/confirm/" in u]
            payload = tokens.verify(
                SECRET, tokens.CONFIRM, token_of(url), max_age_seconds=3600, now=clock()
            )
            clock.advance(minutes=3)
            outcome = await bus_for(uows, config, clock).handle(
                ConfirmConsent(payload["d"], "203.0.113.7")
            )
            await scheduler.run_once()
            async with uows() as uow:
                row = await store.get_lead(uow.session, lead.lead_id)
            events = await outbox_events(uows, lead.lead_id)
            (run,) = await runs_of(uows, lead.lead_id)
    finally:
        smtp.stop()
    assert outcome == CONFIRMED
    assert (row.consent, row.consent_source, row.consent_ip) == (
        store.CONSENT_GRANTED,
        "double_opt_in",
        "203.0.113.7",
    )
    assert row.consent_at == clock.now
    assert [(e["type"], e.get("kind")) for e in events] == [("leadflow.lead.engaged.v1", "confirm")]
    assert run.status == store.ACTIVE
    assert [m["Subject"] for m in smtp.to(lead.contact.email)][1:] == ["Your guide, Ada"]
