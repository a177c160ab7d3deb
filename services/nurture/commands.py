"""The messages nurture's doors hand to its bus: commands (change something) and queries.

HTTP routes, CLI commands and the scheduler's rounds each build one of these and
call the bus (messagebus.py); the Kafka consumer hands over event envelopes instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordOpen:
    """The open pixel of a send was fetched."""

    send_id: str


@dataclass(frozen=True)
class RecordClick:
    """A tracked link of a send was followed."""

    send_id: str
    link_id: str


@dataclass(frozen=True)
class Unsubscribe:
    """The person asked for no more email (`method`: one_click or page)."""

    lead_id: str
    method: str


@dataclass(frozen=True)
class ConfirmConsent:
    """The person clicked the double opt-in link (from `ip`)."""

    lead_id: str
    ip: str | None


@dataclass(frozen=True)
class RedriveSend:
    """An operator sends a failed email again."""

    send_id: str


@dataclass(frozen=True)
class Unsuppress:
    """An operator takes an address off the suppression list, at the person's request."""

    email: str


@dataclass(frozen=True)
class ClaimDueSends:
    """The scheduler takes the emails that may go out at `now` (its first transaction)."""

    now: datetime


@dataclass(frozen=True)
class RecordSendResults:
    """The scheduler stores how each claimed email ended at the relay (its second one).

    `claimed` are the `claiming.Claimed` of the round; `results` the mailer's answer per
    send id.
    """

    claimed: Sequence[Any]
    results: Mapping[str, Any]


# Queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GetLead:
    """The lead as nurture keeps it, or None."""

    lead_id: str


@dataclass(frozen=True)
class GetLeadEnrollments:
    """The lead (or None) with its enrollments and their emails."""

    lead_id: str


@dataclass(frozen=True)
class GetLeadConfirmations:
    """The lead (or None) with its double opt-in emails."""

    lead_id: str


@dataclass(frozen=True)
class ListSends:
    """Emails of the send queue, newest first."""

    status: str | None
    lead_id: str | None
    limit: int


@dataclass(frozen=True)
class NextDueAt:
    """When the earliest scheduled email may go out (None: nothing is scheduled)."""


@dataclass(frozen=True)
class CountDue:
    """How many scheduled emails may go out at `now`."""

    now: datetime
