"""The shared message types: every subclass is a frozen dataclass, dispatched by its type."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from shared.messages import LeadMessage, Message, RoundMessage


class Ping(LeadMessage):
    """A test message about one lead."""

    note: str = ""


class Tick(RoundMessage):
    """A test round."""


class Plain(Message):
    """A test message with its own fields."""

    name: str
    tags: tuple[str, ...] = ()


def test_subclasses_are_frozen_dataclasses_with_the_base_fields_first() -> None:
    ping = Ping("lead-1", note="hi")
    assert dataclasses.is_dataclass(ping)
    assert [f.name for f in dataclasses.fields(ping)] == ["lead_id", "note"]
    assert ping == Ping(lead_id="lead-1", note="hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ping.note = "changed"  # type: ignore[misc]


def test_messages_of_different_types_differ_even_with_equal_fields() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert Tick(now).now == now
    assert Tick(now) != RoundMessage(now)
    assert hash(Tick(now)) == hash(Tick(now))


def test_defaults_and_own_fields() -> None:
    assert Plain("a") == Plain(name="a", tags=())
    assert repr(Plain("a", ("x",))) == "Plain(name='a', tags=('x',))"
