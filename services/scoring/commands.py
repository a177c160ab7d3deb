"""The messages scoring's doors hand to its bus, besides the events it consumes.

Commands change state (the decay sweep's rounds, replay's pages); reads are plain
functions in views.py.
"""

from __future__ import annotations

from shared.messages import RoundMessage


class RescoreRun(RoundMessage):
    """A page of a re-scoring run: up to `limit` leads as of `now`, recorded as `run_id`."""

    limit: int
    run_id: str


class SweepDecay(RescoreRun):
    """Re-score the leads whose decay deadline passed by `now`."""


class ReplayNextPage(RescoreRun):
    """Re-score the leads after `after` from their logged events."""

    after: str
    dry_run: bool = False
