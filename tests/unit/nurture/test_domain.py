"""Nurture's rules: who enters which sequence, re-entry, quiet hours, the frequency cap."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.nurture import domain
from services.nurture.domain import LeadFacts, PastRun
from services.nurture.settings import FrequencyCap, NurtureConfig, QuietHours

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
STEP = {"template": "guide", "subject": "x"}


def config(**sequences) -> NurtureConfig:
    return NurtureConfig.model_validate({"sequences": sequences})


def lead(**changes) -> LeadFacts:
    base = LeadFacts(
        lead_id="l1",
        email="ada@example.com",
        grade="cold",
        channel="google_ads",
        form_id="guide-download",
        form_type="download",
        country="GB",
        consent_granted=True,
    )
    return replace(base, **changes)


TWO = config(
    newsletter={"entry": {"forms": ["newsletter"]}, "steps": [STEP]},
    warm={"entry": {"grades": ["warm"], "channels": ["google_ads"]}, "steps": [STEP]},
    cold={"entry": {"grades": ["cold"], "countries": ["gb", "ie"]}, "steps": [STEP]},
)


def test_the_first_sequence_whose_entry_matches_enrolls():
    assert domain.choose_sequence(TWO, lead(), [], NOW) == "cold"
    assert domain.choose_sequence(TWO, lead(grade="warm"), [], NOW) == "warm"
    assert domain.choose_sequence(TWO, lead(form_id="newsletter"), [], NOW) == "newsletter"
    assert domain.choose_sequence(TWO, lead(grade="warm", channel="radio"), [], NOW) is None
    assert domain.choose_sequence(TWO, lead(country="US"), [], NOW) is None
    assert domain.choose_sequence(TWO, lead(grade="hot"), [], NOW) is None


@pytest.mark.parametrize(
    "change",
    [
        {"consent_granted": False},
        {"email": None},
        {"unsubscribed": True},
        {"bounced": True},
        {"suppressed": True},
        {"erased": True},
        {"sales_ready": True},
        {"converted": True},
        {"disqualified": True},
        {"is_test": True},
    ],
)
def test_nobody_enters_without_consent_or_while_an_exit_condition_holds(change):
    assert domain.choose_sequence(TWO, lead(**change), [], NOW) is None


def test_test_leads_enter_when_asked_and_disabled_sequences_take_nobody():
    with_tests = TWO.model_copy(update={"nurture_test_leads": True})
    assert domain.choose_sequence(with_tests, lead(is_test=True), [], NOW) == "cold"
    off = config(cold={"enabled": False, "steps": [STEP]}, other={"steps": [STEP]})
    assert domain.choose_sequence(off, lead(), [], NOW) == "other"


def test_one_sequence_at_a_time():
    active = [PastRun("warm", "active", None, None)]
    assert domain.choose_sequence(TWO, lead(), active, NOW) is None
    halted = [PastRun("warm", "failed", None, None)]  # waits for a re-drive: still open
    assert domain.choose_sequence(TWO, lead(), halted, NOW) is None


@pytest.mark.parametrize(
    ("policy", "status", "ended_ago", "allowed"),
    [
        ("never", "completed", timedelta(days=365), False),
        ("after_completion", "completed", timedelta(days=31), True),
        ("after_completion", "completed", timedelta(days=29), False),
        ("after_completion", "exited", timedelta(days=365), False),
        ("always", "exited", timedelta(days=31), True),
        ("always", "exited", timedelta(days=1), False),
    ],
)
def test_reentry_policy(policy, status, ended_ago, allowed):
    cfg = config(cold={"steps": [STEP], "reentry": {"policy": policy, "cooldown": "30d"}})
    history = [PastRun("cold", status, "sales_ready", NOW - ended_ago)]
    assert (domain.choose_sequence(cfg, lead(), history, NOW) == "cold") is allowed


QUIET = QuietHours(start="21:00", end="08:00", default_timezone="UTC")


@pytest.mark.parametrize(
    ("now", "country", "expected"),
    [
        # 22:30 UTC is 22:30 in London (winter): quiet until 08:00 London.
        (datetime(2026, 11, 25, 22, 30, tzinfo=UTC), "GB", datetime(2026, 11, 26, 8, tzinfo=UTC)),
        # ... and 17:30 in New York: not quiet.
        (datetime(2026, 11, 25, 22, 30, tzinfo=UTC), "US", None),
        # 03:00 UTC is 22:00 in New York: quiet until 08:00 New York = 13:00 UTC.
        (datetime(2026, 11, 25, 3, 0, tzinfo=UTC), "us", datetime(2026, 11, 25, 13, tzinfo=UTC)),
        # Unknown country: the default zone (UTC). 07:59 is still quiet.
        (datetime(2026, 11, 25, 7, 59, tzinfo=UTC), None, datetime(2026, 11, 25, 8, tzinfo=UTC)),
        (datetime(2026, 11, 25, 8, 0, tzinfo=UTC), "ZZ", None),
        # Tokyo is UTC+9: 12:00 UTC is 21:00 there.
        (datetime(2026, 11, 25, 12, 0, tzinfo=UTC), "JP", datetime(2026, 11, 25, 23, tzinfo=UTC)),
    ],
)
def test_quiet_hours_in_the_leads_time_zone(now, country, expected):
    assert domain.quiet_until(now, country, QUIET) == expected


def test_quiet_hours_follow_daylight_saving_and_country_overrides():
    # 2026-03-08: New York moves to UTC-4 at 02:00. 01:30 local (06:30 UTC) is quiet until
    # 08:00 EDT, which is 12:00 UTC.
    early = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)
    assert domain.quiet_until(early, "US", QUIET) == datetime(2026, 3, 8, 12, tzinfo=UTC)
    west = QuietHours(start="21:00", end="08:00", countries={"us": "America/Los_Angeles"})
    assert domain.quiet_until(early, "US", west) == datetime(2026, 3, 8, 15, tzinfo=UTC)
    lunch = QuietHours(start="12:00", end="13:00")  # a window that does not span midnight
    assert domain.quiet_until(NOW, None, lunch) == NOW.replace(hour=13)
    assert domain.quiet_until(NOW.replace(hour=13), None, lunch) is None
    assert domain.quiet_until(NOW, "GB", None) is None


def test_frequency_cap():
    cap = FrequencyCap(max_emails=2, period="1d")
    assert domain.frequency_wait(NOW, [], cap) is None
    assert domain.frequency_wait(NOW, [NOW - timedelta(hours=3)], cap) is None
    sent = [NOW - timedelta(hours=20), NOW - timedelta(hours=3), NOW - timedelta(days=2)]
    assert domain.frequency_wait(NOW, sent, cap) == NOW + timedelta(hours=4)
    assert domain.frequency_wait(NOW, sent, None) is None


def test_backoff_grows_to_its_ceiling_with_jitter():
    rng = random.Random(7)
    delays = [domain.backoff_delay(n, 30, 600, rng) for n in range(1, 8)]
    assert 24 <= delays[0] <= 36 and 48 <= delays[1] <= 72
    assert all(d <= 600 for d in delays) and delays[-1] >= 480


def test_the_scheduler_decision():
    cfg = TWO.model_copy(update={"quiet_hours": QUIET})
    common = {"kind": "step", "sequence_id": "cold", "step": 1, "recent_sends": [], "now": NOW}
    assert domain.decide(cfg, lead=lead(), enrollment_status="active", **common).action == "send"
    erased = domain.decide(cfg, lead=None, enrollment_status="active", **common)
    assert (erased.action, erased.exit) == ("cancel", "erased")
    exited = domain.decide(cfg, lead=lead(), enrollment_status="exited", **common)
    assert exited.action == "cancel" and exited.exit is None
    withdrawn = domain.decide(
        cfg, lead=lead(unsubscribed=True), enrollment_status="active", **common
    )
    assert (withdrawn.action, withdrawn.exit) == ("suppress", "unsubscribed")
    no_consent = domain.decide(
        cfg, lead=lead(consent_granted=False), enrollment_status="active", **common
    )
    assert (no_consent.action, no_consent.exit) == ("suppress", "no_consent")
    night = {**common, "now": datetime(2026, 11, 25, 23, tzinfo=UTC)}
    waiting = domain.decide(cfg, lead=lead(), enrollment_status="active", **night)
    assert (waiting.action, waiting.until) == ("wait", datetime(2026, 11, 26, 8, tzinfo=UTC))
    gone = domain.decide(
        cfg, lead=lead(), enrollment_status="active", **{**common, "sequence_id": "removed"}
    )
    assert (gone.action, gone.exit) == ("cancel", "sequence_removed")
    past_end = domain.decide(cfg, lead=lead(), enrollment_status="active", **{**common, "step": 9})
    assert (past_end.action, past_end.exit) == ("cancel", "completed")
    # The double opt-in email is transactional: quiet hours do not hold it back.
    confirm = {**night, "kind": "confirm", "sequence_id": None, "step": None}
    pending = lead(consent_granted=False)
    assert domain.decide(cfg, lead=pending, enrollment_status=None, **confirm).action == "send"
    assert domain.decide(cfg, lead=lead(), enrollment_status=None, **confirm).action == "cancel"


def test_the_suppression_key_ignores_case_and_spaces():
    assert domain.email_hash(" Ada@Example.COM ") == domain.email_hash("ada@example.com")
    assert len(domain.email_hash("ada@example.com")) == 64
