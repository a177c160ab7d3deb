"""The router's messages: what its doors (routes, CLI, webhook, worker rounds) ask of it.

Commands are imperative and change state (one commit each on the bus); reads are plain
functions (queries.py). Events from Kafka arrive as envelopes, not as these.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from services.router.destinations import DeliveryResult, Item
from shared.messages import LeadMessage, Message, RoundMessage

OutcomeKind = Literal["converted", "disqualified"]


class AcknowledgeAssignment(Message):
    """The rep took the lead: stop the speed-to-lead clock."""

    assignment_id: str


class RedriveDelivery(Message):
    """Queue a failed delivery again with a fresh attempt budget."""

    delivery_id: str


class RecordOutcome(LeadMessage):
    """The CRM says the lead converted or will not buy."""

    outcome: OutcomeKind
    outcome_id: str
    occurred_at: datetime
    value: Decimal = Decimal("0")
    currency: str = "USD"
    reason: str | None = None


class CheckSla(RoundMessage):
    """Reassign and escalate open assignments past their SLA at `now`."""


class ReleaseStaleClaims(Message):
    """A delivery worker's start: let go of the claims its process's predecessor held."""


class ClaimDueDeliveries(RoundMessage):
    """A delivery round's first step: take the due deliveries that may go out now."""


class RecordDeliveryResults(Message):
    """A delivery round's last step: how each claimed delivery ended."""

    claimed: dict[str, list[Item]]
    results: dict[str, DeliveryResult]
    now: datetime
