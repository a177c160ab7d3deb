"""Signals: the events scoring consumes, as the scoring model reads them. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from shared.events import LeadCaptured, LeadEngaged, LeadUnsubscribed
from shared.events.contracts import EVENT_TYPES, Event, FieldValue

Consent = Literal["confirmed", "withdrawn"]

_NO_FACTS: Mapping[str, FieldValue] = MappingProxyType({})


# Signals are made for every event and only read: immutable named tuples, cheaper to
# make than frozen dataclasses (as the model's results and score updates).
class Signal(NamedTuple):
    """One scoring input: which engagement rules it counts for, and what they can test."""

    event_id: str
    event_type: str
    kinds: tuple[str, ...]
    occurred_at: datetime
    facts: Mapping[str, FieldValue] = _NO_FACTS
    captured: LeadCaptured | None = None
    consent: Consent | None = None


def signal_of(event_id: str, data: Event, sent_at: datetime) -> Signal | None:
    """The signal of an event scoring consumes (None for others).

    `sent_at` is the event's CloudEvents time: a submission happened then (its
    `captured_at` is the lead's first capture, the speed-to-lead clock).
    """
    if isinstance(data, LeadCaptured):
        touch = data.attribution
        kinds: tuple[str, ...] = ("submission",)
        if not data.is_new_lead or data.touch_number > 1:
            kinds += ("repeat_visit",)
        facts: dict[str, FieldValue] = {
            "form_id": data.form_id,
            "form_type": data.form_type,
            "channel": data.channel,
            "source": data.source,
            "utm_source": touch.utm_source,
            "utm_medium": touch.utm_medium,
            "utm_campaign": touch.utm_campaign,
            "promo_code": touch.promo_code,
        }
        return Signal(event_id, data.TYPE, kinds, sent_at, facts, captured=data)
    if isinstance(data, LeadEngaged):
        facts = {"sequence_id": data.sequence_id, "step": data.step, "link_id": data.link_id}
        consent: Consent | None = "confirmed" if data.kind == "confirm" else None
        return Signal(event_id, data.TYPE, (data.kind,), data.occurred_at, facts, consent=consent)
    if isinstance(data, LeadUnsubscribed):
        return Signal(
            event_id,
            data.TYPE,
            ("unsubscribe",),
            data.occurred_at,
            {"method": data.method},
            consent="withdrawn",
        )
    return None


def signal_from_log(
    event_id: str, event_type: str, payload: Mapping[str, Any], occurred_at: datetime
) -> Signal | None:
    """The signal of a logged event."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        return None
    return signal_of(event_id, model.model_validate(payload), occurred_at)
