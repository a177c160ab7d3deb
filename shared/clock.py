"""The one clock: `utc_now()` everywhere, a `Clock` parameter where a test needs to move time.

Code that decides by the time of day (quiet hours, due sends, SLA deadlines, score
decay) takes `clock: Clock = utc_now` and never calls `datetime.now` itself, so tests
pass a fixed or stepping clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC (None stays None)."""
    return value.astimezone(UTC).isoformat() if value else None


class FixedClock:
    """A clock that says what it is told: `clock.now = ...` or `clock.advance(seconds)`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now = self.now + timedelta(seconds=seconds)
        return self.now
