"""Every consumed lead event becomes one timeline entry (and maybe a profile change).

`recording(handlers)` wraps insights' handlers: each runs as before, then its
event is queued in the transaction's `ConsoleRepository` (written in bulk at commit).
Timeline entries hold what the console shows, not the event: the contact goes
to the profile only (erasure empties it), never into the timeline.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from services.insights.console.repository import ConsoleRepository, ProfileChange, contact_values
from shared import events
from shared.db import UnitOfWork
from shared.events import Attribution, Envelope
from shared.kafka.consumer import Handler

Entry = tuple[str, Any, dict[str, Any], ProfileChange | None]

# What the timeline shows of a capture's attribution (the pages apart, without their query).
_ATTRIBUTION = tuple(
    name for name in Attribution.model_fields if name not in ("channel", "landing_page", "referrer")
)


def _pick(event: Any, *names: str) -> dict[str, Any]:
    """The event's fields of these names, under the same names."""
    return {name: getattr(event, name) for name in names}


def _page(url: str | None) -> str | None:
    # The page, not its query: a query string may carry what the visitor typed.
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else None


def _attribution(attribution: Attribution) -> dict[str, Any]:
    out = {name: getattr(attribution, name) for name in _ATTRIBUTION}
    out["landing_page"] = _page(attribution.landing_page)
    out["referrer"] = _page(attribution.referrer)
    return {k: v for k, v in out.items() if v is not None}


def _captured(event: events.LeadCaptured) -> Entry:
    c = event.contact
    data = {
        "submission_id": event.submission_id,
        "new_lead": event.is_new_lead,
        "touch": event.touch_number,
        "source": event.source,
        "form_id": event.form_id,
        "form_type": event.form_type,
        "channel": event.channel,
        "attribution": _attribution(event.attribution),
        "marketing_consent": event.marketing_consent,
        "double_opt_in": event.double_opt_in,
        "is_test": event.is_test,
        "cost": str(event.cost) if event.cost is not None else None,
    }
    change = ProfileChange(
        contact=contact_values(
            c.email, c.first_name, c.last_name, c.company, c.job_title, c.phone, c.country
        ),
        channel=event.first_touch.channel,
        channel_rank=2,
        captured_at=event.captured_at,  # the earliest capture wins
    )
    return "captured", event.captured_at, data, change


def _scored(event: events.LeadScored) -> Entry:
    data = _pick(
        event,
        "score",
        "fit",
        "engagement",
        "grade",
        "previous_grade",
        "sales_ready",
        "became_sales_ready",
        "disqualified",
    )
    data["cause"] = event.cause_type
    data["model_version"] = event.model_version
    data["reasons"] = [[r.rule_id, r.kind, r.points, r.detail] for r in event.reasons]
    change = ProfileChange(
        channel=event.channel,
        channel_rank=1,
        captured_at=event.captured_at,
        grade=event.grade,
        score=event.score,
        graded_at=event.scored_at,
    )
    return "scored", event.scored_at, data, change


def _routed(event: events.LeadRouted) -> Entry:
    data = _pick(event, "assignment_id", "rep_id", "rule_id", "destinations", "reassigned")
    return "routed", event.routed_at, data, ProfileChange(channel=event.channel, channel_rank=1)


def _delivery_failed(event: events.LeadDeliveryFailed) -> Entry:
    data = _pick(event, "assignment_id", "destination", "error", "attempts")
    data["error"] = event.error[:500]
    return "delivery_failed", event.failed_at, data, None


def _converted(event: events.LeadConverted) -> Entry:
    data = {"value": str(event.value), "currency": event.currency, "outcome_id": event.outcome_id}
    return "converted", event.occurred_at, data, None


def _disqualified(event: events.LeadDisqualified) -> Entry:
    data = _pick(event, "reason", "outcome_id")
    return "disqualified", event.occurred_at, data, None


def _engaged(event: events.LeadEngaged) -> Entry:
    data = _pick(event, "kind", "sequence_id", "step", "link_id")
    return "engaged", event.occurred_at, data, None


def _unsubscribed(event: events.LeadUnsubscribed) -> Entry:
    return "unsubscribed", event.occurred_at, {"method": event.method}, None


def _erased(event: events.LeadErased) -> Entry:
    return "erased", event.erased_at, {}, ProfileChange(erased_at=event.erased_at)


ENTRIES: dict[str, Callable[[Any], Entry]] = {
    events.LeadCaptured.TYPE: _captured,
    events.LeadScored.TYPE: _scored,
    events.LeadRouted.TYPE: _routed,
    events.LeadDeliveryFailed.TYPE: _delivery_failed,
    events.LeadConverted.TYPE: _converted,
    events.LeadDisqualified.TYPE: _disqualified,
    events.LeadEngaged.TYPE: _engaged,
    events.LeadUnsubscribed.TYPE: _unsubscribed,
    events.LeadErased.TYPE: _erased,
}


def recording(handlers: dict[str, Handler]) -> dict[str, Handler]:
    """The same handlers, each also recording its event in the console's timeline."""
    return {
        event_type: _recorded(handler, ENTRIES[event_type])
        for event_type, handler in handlers.items()
    }


def _recorded(handler: Handler, entry: Callable[[Any], Entry]) -> Handler:
    @functools.wraps(handler)
    async def handle(envelope: Envelope[Any], uow: UnitOfWork) -> None:
        await handler(envelope, uow)
        kind, at, data, change = entry(envelope.data)
        await ConsoleRepository.of(uow).add(
            envelope.data.lead_id, envelope.id, kind, at, data, change
        )

    return handle
