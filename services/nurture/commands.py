"""The commands nurture's doors hand to its bus (reads are plain functions: queries.py).

HTTP routes, CLI commands and the scheduler's rounds each build one of these and
call the bus (messagebus.py); the Kafka consumer hands over event envelopes instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.messages import LeadMessage, Message, RoundMessage


class SendMessage(Message):
    """A message about one email of the send queue."""

    send_id: str


class RecordOpen(SendMessage):
    """The open pixel of a send was fetched."""


class RecordClick(SendMessage):
    """A tracked link of a send was followed."""

    link_id: str


class RedriveSend(SendMessage):
    """An operator sends a failed email again."""


class Unsubscribe(LeadMessage):
    """The person asked for no more email (`method`: one_click or page)."""

    method: str


class ConfirmConsent(LeadMessage):
    """The person clicked the double opt-in link (from `ip`)."""

    ip: str | None


class Unsuppress(Message):
    """An operator takes an address off the suppression list, at the person's request."""

    email: str


class ClaimDueSends(RoundMessage):
    """The scheduler takes the emails that may go out at `now` (its first transaction)."""


class RecordSendResults(Message):
    """The scheduler stores how each claimed email ended at the relay (its second one).

    `claimed` are the `claiming.Claimed` of the round; `results` the mailer's answer per
    send id.
    """

    claimed: Sequence[Any]
    results: Mapping[str, Any]
