"""The router's messages: what its doors (routes, CLI, webhook, worker rounds) ask of it.

Commands are imperative and change state (one commit each on the bus); queries only
read (`MessageBus.query`). Events from Kafka arrive as envelopes, not as these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from services.router.destinations import DeliveryResult, Item

OutcomeKind = Literal["converted", "disqualified"]


# Commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcknowledgeAssignment:
    """The rep took the lead: stop the speed-to-lead clock."""

    assignment_id: str


@dataclass(frozen=True)
class CheckSla:
    """Reassign and escalate open assignments past their SLA at `now`."""

    now: datetime
    limit: int = 100


@dataclass(frozen=True)
class RedriveDelivery:
    """Queue a failed delivery again with a fresh attempt budget."""

    delivery_id: str


@dataclass(frozen=True)
class RecordOutcome:
    """The CRM says the lead converted or will not buy."""

    lead_id: str
    outcome: OutcomeKind
    outcome_id: str
    occurred_at: datetime
    value: Decimal = Decimal("0")
    currency: str = "USD"
    reason: str | None = None


@dataclass(frozen=True)
class ClaimDueDeliveries:
    """A delivery round's first step: take the due deliveries that may go out now."""

    now: datetime


@dataclass(frozen=True)
class RecordDeliveryResults:
    """A delivery round's last step: how each claimed delivery ended."""

    claimed: dict[str, list[Item]]
    results: dict[str, DeliveryResult]
    now: datetime


# Queries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GetAssignment:
    assignment_id: str


@dataclass(frozen=True)
class LeadAssignments:
    lead_id: str


@dataclass(frozen=True)
class GetDelivery:
    delivery_id: str


@dataclass(frozen=True)
class ListDeliveries:
    status: str | None = None
    destination: str | None = None
    lead_id: str | None = None
    limit: int = 100


@dataclass(frozen=True)
class FindLeadByEmail:
    """The routed lead with this email (its id), for outcomes that name a person."""

    email: str


@dataclass(frozen=True)
class FindLeadByCrmContacts:
    """The lead whose delivery to `destination` created one of these CRM contacts."""

    destination: str
    contact_ids: tuple[str, ...]


@dataclass(frozen=True)
class NextDueAt:
    """When the earliest pending delivery is due (None: nothing pending)."""


@dataclass(frozen=True)
class QueueDepth:
    """Pending deliveries per destination."""
