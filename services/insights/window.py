"""The report window: leads captured in [since, until), spend of its whole days (UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

MAX_WINDOW_DAYS = 36_600


class InvalidWindow(ValueError):
    """A `since` / `until` that cannot be a report window; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Window:
    """Leads captured in [start, end); spend of the days first_day … last_day."""

    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


def parse_bound(text: str, field: str, *, end: bool) -> datetime:
    """A date (whole day, UTC) or an ISO 8601 datetime (naive means UTC) as a UTC instant.

    A date as `until` includes that whole day: the bound is the next midnight.
    """
    text = text.strip()
    try:
        if not any(mark in text for mark in ("T", "t", " ", ":")):
            day = date.fromisoformat(text)
            if end:
                day = day + timedelta(days=1)
            return datetime.combine(day, time(), UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise InvalidWindow(
            field, f"{field} must be a date (2026-11-01) or an ISO 8601 datetime, got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def make_window(since: str | None, until: str | None, today: date) -> Window:
    """The report window; by default the current month up to and including today (UTC)."""
    end = (
        parse_bound(until, "until", end=True)
        if until
        else datetime.combine(today + timedelta(days=1), time(), UTC)
    )
    if since:
        start = parse_bound(since, "since", end=False)
    else:
        first = (end - timedelta(microseconds=1)).date().replace(day=1)
        start = datetime.combine(first, time(), UTC)
    if start >= end:
        raise InvalidWindow("until", "until must be later than since")
    window = Window(start, end)
    if window.days > MAX_WINDOW_DAYS:
        raise InvalidWindow("since", f"the window may span at most {MAX_WINDOW_DAYS} days")
    return window
