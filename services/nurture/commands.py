"""The commands nurture's doors hand to its bus (reads are plain functions: queries.py).

HTTP routes, CLI commands and the scheduler's rounds each build one of these and
call the bus (messagebus.py); the Kafka consumer hands over event envelopes instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SendMessage:
    """A message about one email of the send queue."""

    send_id: str


@dataclass(frozen=True)
class RecordOpen(SendMessage):
    """The open pixel of a send was fetched."""


@dataclass(frozen=True)
class RecordClick(SendMessage):
    """A tracked link of a send was followed."""

    link_id: str


@dataclass(frozen=True)
class RedriveSend(SendMessage):
    """An operator sends a failed email again."""


@dataclass(frozen=True)
class LeadMessage:
    """A message about one lead."""

    lead_id: str


@dataclass(frozen=True)
class Unsubscribe(LeadMessage):
    """The person asked for no more email (`method`: one_click or page)."""

    method: str


@dataclass(frozen=True)
class ConfirmConsent(LeadMessage):
    """The person clicked the double opt-in link (from `ip`)."""

    ip: str | None


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
