"""The messages scoring's doors hand to its bus, besides the events it consumes.

Commands change state (the decay sweep's rounds, replay's pages); queries only read
(a lead's explanation, counts the CLI shows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SweepDecay:
    """Re-score up to `limit` leads whose decay deadline passed by `now`."""

    now: datetime
    limit: int
    run_id: str


@dataclass(frozen=True)
class ReplayNextPage:
    """Re-score the next `limit` leads after `after` from their logged events."""

    after: str
    limit: int
    now: datetime
    run_id: str
    dry_run: bool = False


@dataclass(frozen=True)
class ExplainScore:
    """Why a lead has its score, as of `now`, with at most `limit` history rows."""

    lead_id: str
    now: datetime
    limit: int


@dataclass(frozen=True)
class CountLeads:
    """How many leads (not erased) scoring keeps."""


@dataclass(frozen=True)
class CountUnsentEvents:
    """How many events wait in scoring's outbox."""
