"""The router's messages: what its doors (routes, CLI, webhook, worker rounds) ask of it.

Commands are imperative and change state (one commit each on the bus); reads are plain
functions (queries.py). Events from Kafka arrive as envelopes, not as these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from services.router.destinations import DeliveryResult, Item

OutcomeKind = Literal["converted", "disqualified"]


@dataclass(frozen=True)
class AssignmentMessage:
    """A message about one assignment."""

    assignment_id: str


@dataclass(frozen=True)
class AcknowledgeAssignment(AssignmentMessage):
    """The rep took the lead: stop the speed-to-lead clock."""


@dataclass(frozen=True)
class DeliveryMessage:
    """A message about one delivery."""

    delivery_id: str


@dataclass(frozen=True)
class RedriveDelivery(DeliveryMessage):
    """Queue a failed delivery again with a fresh attempt budget."""


@dataclass(frozen=True)
class LeadMessage:
    """A message about one lead."""

    lead_id: str


@dataclass(frozen=True)
class RecordOutcome(LeadMessage):
    """The CRM says the lead converted or will not buy."""

    outcome: OutcomeKind
    outcome_id: str
    occurred_at: datetime
    value: Decimal = Decimal("0")
    currency: str = "USD"
    reason: str | None = None


@dataclass(frozen=True)
class RoundMessage:
    """A worker round's message: what is due at `now`."""

    now: datetime


@dataclass(frozen=True)
class CheckSla(RoundMessage):
    """Reassign and escalate open assignments past their SLA at `now`."""


@dataclass(frozen=True)
class ClaimDueDeliveries(RoundMessage):
    """A delivery round's first step: take the due deliveries that may go out now."""


@dataclass(frozen=True)
class RecordDeliveryResults:
    """A delivery round's last step: how each claimed delivery ended."""

    claimed: dict[str, list[Item]]
    results: dict[str, DeliveryResult]
    now: datetime
