"""Nurture's rules as pure functions: who enters which sequence, when a mail may go out."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.nurture.config import FrequencyCap, NurtureConfig, QuietHours
from services.nurture.sequence_config import SequenceConfig
from services.nurture.timezones import COUNTRY_TIMEZONES
from shared.views import fields_of


def email_hash(email: str) -> str:
    """The suppression-list key of an address: SHA-256 of the trimmed, lower-cased address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


@dataclass(frozen=True)
class LeadFacts:
    """What entry and exit rules look at."""

    lead_id: str
    email: str | None
    grade: str | None
    channel: str | None
    form_id: str | None
    form_type: str | None
    country: str | None
    consent_granted: bool
    sales_ready: bool = False
    disqualified: bool = False
    is_test: bool = False
    unsubscribed: bool = False
    bounced: bool = False
    converted: bool = False
    erased: bool = False
    suppressed: bool = False


OPEN = ("active", "failed")  # runs that may still send


@dataclass(frozen=True)
class PastRun:
    """A previous enrollment of the lead."""

    sequence_id: str
    status: str  # active | completed | exited | failed
    exit_reason: str | None
    ended_at: datetime | None


def may_receive_marketing(lead: LeadFacts) -> bool:
    """Consent given (and confirmed), an address, and nothing that stops all email."""
    return (
        bool(lead.email)
        and lead.consent_granted
        and not (lead.unsubscribed or lead.bounced or lead.erased or lead.suppressed)
    )


def entry_matches(sequence: SequenceConfig, lead: LeadFacts) -> bool:
    """The lead meets every entry condition given."""
    entry = sequence.entry
    if lead.grade not in entry.grades:
        return False
    if entry.channels is not None and lead.channel not in entry.channels:
        return False
    if entry.forms is not None and lead.form_id not in entry.forms:
        return False
    if entry.form_types is not None and lead.form_type not in entry.form_types:
        return False
    return entry.countries is None or (lead.country or "").upper() in entry.countries


def standing_exit(sequence: SequenceConfig, lead: LeadFacts) -> str | None:
    """An exit condition the lead meets right now (so it may not enter), or None."""
    if lead.sales_ready and sequence.exits_on("sales_ready"):
        return "sales_ready"
    if lead.converted and sequence.exits_on("converted"):
        return "converted"
    if lead.disqualified and sequence.exits_on("disqualified"):
        return "disqualified"
    return None


def reentry_allowed(sequence: SequenceConfig, previous: Sequence[PastRun], now: datetime) -> bool:
    """May the lead go through `sequence` again, given its earlier runs of it?"""
    if not previous:
        return True
    policy = sequence.reentry
    if policy.policy == "never":
        return False
    last = max(previous, key=lambda r: r.ended_at or now)
    if any(r.status in OPEN for r in previous) or last.ended_at is None:
        return False
    if policy.policy == "after_completion" and last.status != "completed":
        return False
    return now - last.ended_at >= policy.cooldown


def choose_sequence(
    config: NurtureConfig, lead: LeadFacts, history: Sequence[PastRun], now: datetime
) -> str | None:
    """The first enabled sequence the lead may enter now, or None.

    A lead is in at most one sequence at a time; nobody enters without consent.
    """
    if not may_receive_marketing(lead):
        return None
    if lead.is_test and not config.nurture_test_leads:
        return None
    if any(run.status in OPEN for run in history):
        return None  # a halted (failed) run resumes when re-driven: it still counts
    for sequence_id, sequence in config.sequences.items():
        if not sequence.enabled or not entry_matches(sequence, lead):
            continue
        if standing_exit(sequence, lead) is not None:
            continue
        runs = [r for r in history if r.sequence_id == sequence_id]
        if reentry_allowed(sequence, runs, now):
            return sequence_id
    return None


# Quiet hours -------------------------------------------------------------------------


def timezone_of(country: str | None, quiet: QuietHours) -> ZoneInfo:
    """The lead's time zone: from its country when known, else the default."""
    code = (country or "").strip().upper()
    name = quiet.countries.get(code) or COUNTRY_TIMEZONES.get(code) or quiet.default_timezone
    return ZoneInfo(name)


def _in_window(moment: time, start: time, end: time) -> bool:
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end  # the window spans midnight


def quiet_until(now: datetime, country: str | None, quiet: QuietHours | None) -> datetime | None:
    """When quiet hours end for this lead, if it is quiet time for them now; else None."""
    if quiet is None:
        return None
    zone = timezone_of(country, quiet)
    local = now.astimezone(zone)
    if not _in_window(local.time().replace(tzinfo=None), quiet.start, quiet.end):
        return None
    end = datetime.combine(local.date(), quiet.end, tzinfo=zone)
    if end <= local:
        end += timedelta(days=1)
    # Wall-clock arithmetic across a DST change can land a little off; never go backwards.
    return max(end.astimezone(now.tzinfo), now + timedelta(seconds=1))


# Frequency cap -----------------------------------------------------------------------


def frequency_wait(
    now: datetime, recent: Sequence[datetime], cap: FrequencyCap | None
) -> datetime | None:
    """When the lead may get another sequence email, if the cap holds it back now."""
    if cap is None:
        return None
    window_start = now - cap.period
    in_window = sorted(t for t in recent if t > window_start)
    if len(in_window) < cap.max_emails:
        return None
    # The oldest ones must leave the window before one more fits.
    release = in_window[len(in_window) - cap.max_emails] + cap.period
    return max(release, now + timedelta(seconds=1))


# Retries -----------------------------------------------------------------------------


def backoff_delay(
    attempt: int, base: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with ±20 % jitter: base, 2·base, 4·base ... up to `maximum`."""
    delay = min(base * (2 ** max(attempt - 1, 0)), maximum)
    jitter = (rng or random).uniform(0.8, 1.2)
    return float(max(min(delay * jitter, maximum), 0.0))


# Views -------------------------------------------------------------------------------


def lead_facts(row: Any, suppressed: bool = False) -> LeadFacts:
    """Rule input from a stored lead row."""
    contact = row.contact or {}
    return LeadFacts(
        **fields_of(row, "lead_id", "email", "grade", "channel", "form_id", "form_type"),
        country=contact.get("country"),
        consent_granted=row.consent == "granted",
        sales_ready=bool(row.sales_ready),
        disqualified=bool(row.disqualified),
        is_test=bool(row.is_test),
        unsubscribed=row.unsubscribed_at is not None,
        bounced=row.bounced_at is not None,
        converted=row.converted_at is not None,
        erased=row.erased_at is not None,
        suppressed=suppressed,
    )


def past_run(row: Any) -> PastRun:
    return PastRun(**fields_of(row, "sequence_id", "status", "exit_reason", "ended_at"))


# The scheduler's decision for one due email -------------------------------------------


@dataclass(frozen=True)
class Decision:
    """send now; cancel (no longer wanted); suppress (must not be sent); wait (until)."""

    action: str
    reason: str | None = None
    until: datetime | None = None
    exit: str | None = None  # how the run ends, when this ends it ("completed": normally)


SEND = Decision("send")


def decide(
    config: NurtureConfig,
    *,
    kind: str,
    sequence_id: str | None,
    step: int | None,
    lead: LeadFacts | None,
    enrollment_status: str | None,
    recent_sends: Sequence[datetime],
    now: datetime,
) -> Decision:
    """What to do with a due email, given the lead as it is now."""
    if lead is None or lead.erased:
        return Decision("cancel", "the lead was erased", exit="erased")
    if kind == "confirm":
        if lead.consent_granted:
            return Decision("cancel", "consent already confirmed")
        if not lead.email or lead.unsubscribed or lead.bounced or lead.suppressed:
            return Decision("suppress", "the address is on the suppression list")
        return SEND
    if enrollment_status != "active":
        return Decision("cancel", f"the enrollment is {enrollment_status or 'gone'}")
    sequence = config.sequences.get(sequence_id or "")
    if sequence is None:
        return Decision("cancel", "the sequence is no longer configured", exit="sequence_removed")
    if step is None or step > len(sequence.steps):
        return Decision("cancel", "the step is no longer configured", exit="completed")
    if not may_receive_marketing(lead):
        if not lead.email:
            return Decision("suppress", "no email address", exit="no_address")
        if not lead.consent_granted:
            return Decision("suppress", "no marketing consent", exit="no_consent")
        return Decision("suppress", "unsubscribed or suppressed", exit="unsubscribed")
    quiet = quiet_until(now, lead.country, config.quiet_hours)
    if quiet is not None:
        return Decision("wait", "quiet hours", quiet)
    capped = frequency_wait(now, recent_sends, config.frequency_cap)
    if capped is not None:
        return Decision("wait", "frequency cap", capped)
    return SEND
