"""What scoring keeps about a lead: its snapshot, the model's memory, the last score.

The snapshot holds the contact and form facts other services need; `observe`
folds a signal into it (merged contact and fields, consent, form types). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson
from pydantic import TypeAdapter

from services.scoring.scores import Score
from services.scoring.signals import Signal
from shared.events.contracts import Contact, FieldValue

_FIELDS: TypeAdapter[dict[str, FieldValue]] = TypeAdapter(dict[str, FieldValue])
_CONTACT = Contact.__pydantic_serializer__
_CONTACT_FIELDS = list(Contact.model_fields)
_PLAIN = (str, bool, float, type(None))
_INT_RANGE = range(-(2**63), 2**64)


@dataclass(frozen=True)
class Snapshot:
    """The lead as other services need it: contact, form facts, consent, first touch."""

    contact: Mapping[str, Any]
    fields: Mapping[str, FieldValue]
    channel: str
    source: str
    first_touch: Mapping[str, Any]
    form_id: str | None
    form_type: str | None
    form_types: tuple[str, ...]
    marketing_consent: bool
    double_opt_in: bool
    is_test: bool
    captured_at: datetime
    touches: int = 1

    def facts(self) -> dict[str, FieldValue]:
        """What fit rules can test: contact fields, first-touch attribution, fields.<name>."""
        facts: dict[str, FieldValue] = {
            name: value for name, value in self.contact.items() if isinstance(value, str)
        }
        email = self.contact.get("email")
        if isinstance(email, str) and "@" in email:
            facts["email_domain"] = email.rsplit("@", 1)[1].strip().lower()
        facts["channel"] = self.channel
        facts["source"] = self.source
        for name in ("utm_source", "utm_medium", "utm_campaign", "promo_code"):
            value = self.first_touch.get(name)
            if value is not None:
                facts[name] = value
        for name, value in self.fields.items():
            facts[f"fields.{name}"] = value
        return facts

    def as_dict(self) -> dict[str, Any]:
        return {
            "contact": dict(self.contact),
            "fields": dict(self.fields),
            "channel": self.channel,
            "source": self.source,
            "first_touch": dict(self.first_touch),
            "form_id": self.form_id,
            "form_type": self.form_type,
            "form_types": list(self.form_types),
            "marketing_consent": self.marketing_consent,
            "double_opt_in": self.double_opt_in,
            "is_test": self.is_test,
            "captured_at": self.captured_at.isoformat(),
            "touches": self.touches,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            contact=dict(data.get("contact") or {}),
            fields=dict(data.get("fields") or {}),
            channel=data["channel"],
            source=data.get("source") or "",
            first_touch=dict(data.get("first_touch") or {}),
            form_id=data.get("form_id"),
            form_type=data.get("form_type"),
            form_types=tuple(data.get("form_types") or ()),
            marketing_consent=bool(data.get("marketing_consent")),
            double_opt_in=bool(data.get("double_opt_in")),
            is_test=bool(data.get("is_test")),
            captured_at=datetime.fromisoformat(data["captured_at"]),
            touches=int(data.get("touches") or 1),
        )

    def erased(self) -> Snapshot:
        """The snapshot without the person: no contact, no form fields."""
        return replace(self, contact={}, fields={})

    @cached_property
    def contact_model(self) -> Contact:
        """The contact as the events carry it, validated once per snapshot (every event of
        a lead that leaves its facts alone keeps the snapshot)."""
        return Contact.model_validate(self.contact)

    @cached_property
    def lead_scored_part(self) -> bytes:
        """`"channel": ..., "captured_at": ...`: the lead's part of a `lead.scored` body,
        as the contract's serializer writes it (no braces), encoded once per snapshot
        (see `published.py`)."""
        body = orjson.dumps(
            {
                "channel": self.channel,
                "form_id": self.form_id,
                "form_type": self.form_type,
                "contact": orjson.Fragment(_contact_json(self)),
                "fields": orjson.Fragment(_fields_json(self.fields)),
                "marketing_consent": self.marketing_consent,
                "double_opt_in": self.double_opt_in,
                "is_test": self.is_test,
                "captured_at": self.captured_at,
            },
            option=orjson.OPT_UTC_Z,
        )
        return body[1:-1]


def _contact_json(snapshot: Snapshot) -> bytes:
    """The contact as `Contact` serializes it: a contact kept as the model dumped it
    (every field, in order, text or null) is that JSON already."""
    contact = snapshot.contact
    if list(contact) == _CONTACT_FIELDS and all(
        type(v) is str or v is None for v in contact.values()
    ):
        return orjson.dumps(contact)
    return _CONTACT.to_json(snapshot.contact_model)


def _fields_json(fields: Mapping[str, FieldValue]) -> bytes:
    """The form fields as the contract serializes them: plain JSON values as they are."""
    if all(type(v) in _PLAIN or (type(v) is int and v in _INT_RANGE) for v in fields.values()):
        return orjson.dumps(dict(fields))
    return _FIELDS.dump_json(dict(fields))


def text_fields(model: Contact) -> dict[str, Any]:
    """A contact as `model_dump(mode="json")` gives it: its fields are text or None, kept
    as they are (pinned by the unit tests), without the serializer's cost per capture."""
    return dict(model)


def _merge_contact(known: Mapping[str, Any], new: Contact) -> dict[str, Any]:
    values = dict(known)
    for name, value in new:
        if value and not (name in ("email", "phone") and values.get(name)):
            values[name] = value
    return values


def observe(snapshot: Snapshot | None, signal: Signal) -> Snapshot | None:
    """The snapshot after this signal: merged contact and fields, consent, form types.

    Consent: `marketing_consent` says consent was given; `double_opt_in` says it
    still waits for its confirmation click. The click (`confirm`) clears the
    wait; an unsubscribe withdraws consent until a later submission gives it again.
    """
    captured = signal.captured
    if captured is not None:
        if snapshot is None:
            consent = captured.marketing_consent
            return Snapshot(
                contact=text_fields(captured.contact),
                fields=dict(captured.fields),
                channel=captured.first_touch.channel,
                source=captured.first_touch.source,
                first_touch={k: v for k, v in captured.first_touch if v is not None},
                form_id=captured.form_id,
                form_type=captured.form_type,
                form_types=(captured.form_type,) if captured.form_type else (),
                marketing_consent=consent,
                double_opt_in=consent and captured.double_opt_in,
                is_test=captured.is_test,
                captured_at=captured.captured_at,
                touches=captured.touch_number,
            )
        consent, waiting = snapshot.marketing_consent, snapshot.double_opt_in
        if captured.marketing_consent and not (consent and not waiting):
            consent, waiting = True, captured.double_opt_in
        form_types = snapshot.form_types
        if captured.form_type and captured.form_type not in form_types:
            form_types = (*form_types, captured.form_type)
        return replace(
            snapshot,
            contact=_merge_contact(snapshot.contact, captured.contact),
            fields={**snapshot.fields, **captured.fields},
            form_id=captured.form_id,
            form_type=captured.form_type,
            form_types=form_types,
            marketing_consent=consent,
            double_opt_in=waiting,
            is_test=snapshot.is_test and captured.is_test,
            captured_at=min(snapshot.captured_at, captured.captured_at),
            touches=max(snapshot.touches, captured.touch_number),
        )
    if snapshot is None or signal.consent is None:
        return snapshot
    if signal.consent == "confirmed":
        return replace(snapshot, marketing_consent=True, double_opt_in=False)
    return replace(snapshot, marketing_consent=False, double_opt_in=False)


@dataclass(frozen=True)
class LeadState:
    """Everything scoring keeps about one lead."""

    lead_id: str
    snapshot: Snapshot | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)
    model_version: str | None = None
    events: int = 0
    """Events recorded for this lead (the sequence number of the last one)."""
    last: Score | None = None
    """The last score published (None before the first capture)."""
    erased: bool = False


def erase(state: LeadState) -> LeadState:
    """The state without the person."""
    snapshot = state.snapshot.erased() if state.snapshot else None
    return replace(state, snapshot=snapshot, erased=True)
