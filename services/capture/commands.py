"""Capture's messages: what every door (form post, webhook, retrieval round, admin
route, API, CLI) turns its input into before it hands it to the bus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class CaptureLead:
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


@dataclass(frozen=True)
class CaptureLeads:
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


@dataclass(frozen=True)
class SubmissionCommand:
    """A command about one stored submission."""

    submission_id: str


@dataclass(frozen=True)
class ReleaseSubmission(SubmissionCommand):
    """Let a quarantined submission through: the normal capture path, on the same row."""


@dataclass(frozen=True)
class RejectSubmission(SubmissionCommand):
    """Drop a quarantined submission for good: spam keeps no personal data."""


@dataclass(frozen=True)
class EraseLead:
    """Forget a person, found by email, phone or lead id."""

    email: str | None = None
    phone: str | None = None
    lead_id: str | None = None


@dataclass(frozen=True)
class CreateApiKey:
    """Issue an API key for a lead vendor or server-to-server source."""

    name: str
    source: str
    cost_per_lead: Decimal | None = None
    scopes: tuple[str, ...] = ("leads:write",)


@dataclass(frozen=True)
class PlatformCommand:
    """A command about an ad platform's leads (the platform: meta, linkedin...)."""

    platform: str


@dataclass(frozen=True)
class QueueRetrievals(PlatformCommand):
    """Meta or LinkedIn notified these lead ids: a retrieval job for each one not seen yet."""

    notifications: Mapping[str, Mapping[str, Any]]  # platform lead id → notification


@dataclass(frozen=True)
class ForgetPlatformLead(PlatformCommand):
    """The platform reports the person deleted this lead: stop fetching, scrub its answers."""

    external_id: str


@dataclass(frozen=True)
class RetrievalCommand:
    """A command about one retrieval job."""

    retrieval_id: str


@dataclass(frozen=True)
class ClaimRetrieval(RetrievalCommand):
    """Take a due retrieval job for one attempt (only if nobody took it since it was read)."""

    attempts: int
    lease_until: datetime


@dataclass(frozen=True)
class CaptureRetrievedLead(RetrievalCommand):
    """The platform answered: capture the lead and close its retrieval job together."""

    command: CaptureLead


@dataclass(frozen=True)
class SkipRetrievedLead(RetrievalCommand):
    """The platform answered with a test lead that is not accepted: close the job."""


@dataclass(frozen=True)
class RetryRetrieval(RetrievalCommand):
    """An attempt failed: try again at `next_at`."""

    next_at: datetime
    error: str
