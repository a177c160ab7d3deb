"""CloudEvents 1.0, Kafka protocol binding, binary content mode.

Attributes travel as `ce_*` headers, the body is the event data as JSON and
the record key is the lead id, so one lead's events stay in one partition.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import ValidationError

from shared.clock import utc_now
from shared.events.contracts import EVENT_TYPES, Event

E = TypeVar("E", bound=Event)

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


class InvalidEnvelope(ValueError):
    """A record that is not a leadflow CloudEvent we can read."""


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """One event with its CloudEvents attributes."""

    data: E
    source: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=utc_now)
    body: bytes | None = field(default=None, compare=False, repr=False)
    """The JSON body the event was read from (`decode`), if it was read from a record."""

    @property
    def type(self) -> str:
        return self.data.TYPE

    @property
    def topic(self) -> str:
        return self.data.TOPIC

    @property
    def subject(self) -> str:
        return self.data.lead_id


def new_event(data: E, source: str) -> Envelope[E]:
    """Wrap event data in a fresh envelope."""
    return Envelope(data=data, source=source)


def encode(envelope: Envelope[Event]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """The (key, value, headers) of a record carrying `envelope`."""
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", envelope.id.encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_source", envelope.source.encode()),
        ("ce_time", envelope.time.astimezone(UTC).isoformat().encode()),
        ("ce_subject", envelope.subject.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    data = envelope.data
    value = data.__pydantic_serializer__.to_json(data)
    return envelope.subject.encode(), value, headers


def header_map(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    """Record headers as text (the last value wins for a repeated name)."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers}


def decode(
    value: bytes | None, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]
) -> Envelope[Event] | None:
    """Read a record as an envelope; None for an event type this version does not know.

    Raises InvalidEnvelope for a record that claims to be a leadflow event but
    cannot be read: it is poison and belongs in the dead-letter topic.
    """
    attrs = header_map(headers)
    event_type = attrs.get("ce_type")
    if not event_type:
        raise InvalidEnvelope("missing ce_type header")
    model = EVENT_TYPES.get(event_type)
    if model is None:
        return None
    for required in ("ce_id", "ce_source", "ce_specversion"):
        if not attrs.get(required):
            raise InvalidEnvelope(f"missing {required} header")
    if attrs["ce_specversion"] != SPEC_VERSION:
        raise InvalidEnvelope(f"unsupported ce_specversion {attrs['ce_specversion']!r}")
    try:
        data = model.model_validate_json(value or b"")
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise InvalidEnvelope(f"body is not JSON: {errors[0]['msg']}") from exc
        # Where and what, never the input: it may carry a person's details into the logs.
        problems = [{"loc": e["loc"], "msg": e["msg"]} for e in errors[:3]]
        raise InvalidEnvelope(f"body does not match {event_type}: {problems}") from exc
    try:
        time = datetime.fromisoformat(attrs["ce_time"]) if attrs.get("ce_time") else utc_now()
    except ValueError as exc:
        raise InvalidEnvelope(f"bad ce_time {attrs['ce_time']!r}") from exc
    return Envelope(data=data, source=attrs["ce_source"], id=attrs["ce_id"], time=time, body=value)
