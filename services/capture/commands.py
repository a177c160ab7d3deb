"""Capture's messages: what every door (form post, webhook, retrieval round, admin
route, API, CLI) turns its input into before it hands it to the bus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.messages import Message


class CaptureLead(Message):
    """Store one submission and announce it (or hold it back as suspected spam)."""

    source: str
    data: Mapping[str, Any]
    form_id: str | None = None
    dedupe_key: str | None = None
    client_ip: str | None = None
    is_test: bool = False
    cost: Decimal | None = None
    attribution: Mapping[str, str] = field(default_factory=dict)
    quarantine: str | None = None  # a spam signal found before the handler (honeypot...)
    spam_checks: bool = False  # landing-page forms: also check the normalized address
    from_platform: bool = False  # ad platforms: no required list, invalid → quarantine
    platform: Mapping[str, str] = field(default_factory=dict)  # platform ids worth keeping


class CaptureLeads(Message):
    """Store submissions together (one of them, or a group of concurrent ones)."""

    commands: tuple[CaptureLead, ...]


@dataclass(frozen=True)
class Captured:
    """What the caller learns: the lead, the submission and what happened."""

    lead_id: str | None
    submission_id: str
    status: str  # accepted | duplicate | quarantined | released
    is_new_lead: bool = False
    source: str = ""
    channel: str = ""
    reason: str | None = None


class NotReleasable(Exception):
    """The submission is unknown or not held in quarantine."""

    def __init__(self, submission_id: str, status: str | None) -> None:
        super().__init__(f"submission {submission_id} is {status or 'unknown'}")
        self.status = status


class SubmissionCommand(Message):
    """A command about one stored submission."""

    submission_id: str


class ReleaseSubmission(SubmissionCommand):
    """Let a quarantined submission through: the normal capture path, on the same row."""


class RejectSubmission(SubmissionCommand):
    """Drop a quarantined submission for good: spam keeps no personal data."""


class EraseLead(Message):
    """Forget a person, found by email, phone or lead id."""

    email: str | None = None
    phone: str | None = None
    lead_id: str | None = None


class CreateApiKey(Message):
    """Issue an API key for a lead vendor or server-to-server source."""

    name: str
    source: str
    cost_per_lead: Decimal | None = None
    scopes: tuple[str, ...] = ("leads:write",)


class PlatformCommand(Message):
    """A command about an ad platform's leads (the platform: meta, linkedin...)."""

    platform: str


class QueueRetrievals(PlatformCommand):
    """Meta or LinkedIn notified these lead ids: a retrieval job for each one not seen yet."""

    notifications: Mapping[str, Mapping[str, Any]]  # platform lead id → notification


class ForgetPlatformLead(PlatformCommand):
    """The platform reports the person deleted this lead: stop fetching, scrub its answers."""

    external_id: str


class RetrievalCommand(Message):
    """A command about one retrieval job."""

    retrieval_id: str


class ClaimRetrieval(RetrievalCommand):
    """Take a due retrieval job for one attempt (only if nobody took it since it was read)."""

    attempts: int
    lease_until: datetime


class CaptureRetrievedLead(RetrievalCommand):
    """The platform answered: capture the lead and close its retrieval job together."""

    command: CaptureLead


class SkipRetrievedLead(RetrievalCommand):
    """The platform answered with a test lead that is not accepted: close the job."""


class RetryRetrieval(RetrievalCommand):
    """An attempt failed: try again at `next_at`."""

    next_at: datetime
    error: str
