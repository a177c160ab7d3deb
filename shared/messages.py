"""What every service's commands share: the frozen-dataclass base, and the messages
several services send the same way (about one lead; a worker round's `now`).

A service's commands.py subclasses these; the bus dispatches on the subclass, so two
services' `LeadMessage` subclasses never meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, dataclass_transform


@dataclass_transform(frozen_default=True)
class Message:
    """A command or query: every subclass is a frozen dataclass of its annotated fields."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(frozen=True)(cls)


class LeadMessage(Message):
    """A message about one lead."""

    lead_id: str


class RoundMessage(Message):
    """A worker round's message: what is due at `now`."""

    now: datetime
