"""Deliveries handed from the routing transaction straight to the delivery worker.

A consumer batch that routes leads also leases their new deliveries (`claimed_until`,
`claims = 1`) in the transaction that writes them, and once it has committed hands them
to the worker in memory: the worker sends them without a claim transaction of its own.
Only destinations without a rate limit are handed over, and none that is paused (the
routing transaction reads the pauses); the rest wait in the queue for a claim, as before.

A handed delivery is leased as a full round's claim would be (`lease_seconds` of
`delivery.batch_size`). If the process dies before its result is recorded, the lease runs
out and a claim takes it again (`claims` 2), exactly as after a crash mid-round. A handed
delivery the worker did not pick up soon enough (`FRESH_SECONDS`) is left to that claim
rather than sent late into the end of its lease.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from services.router.delivery_claims import build_item, lease_seconds
from services.router.destinations import Destination, Item
from services.router.settings import RoutingConfig
from shared.clock import Clock

log = logging.getLogger(__name__)

#: A handed delivery older than this is left to the claim once its lease runs out: the
#: lease's margin beyond the round's calls (30 s) must still cover recording its result.
FRESH_SECONDS = 20.0

# (delivery row, assignment row, lead) as the routing transaction wrote them.
Routed = tuple[dict[str, Any], dict[str, Any], Any]


class Handover:
    """The worker's in-memory queue of deliveries that routing leased for it."""

    def __init__(
        self,
        config: RoutingConfig,
        destinations: dict[str, Destination],
        ack_url: Callable[[str], str],
        clock: Clock,
        on_handed: Callable[[], None],
    ) -> None:
        self.config = config
        self.ack_url = ack_url
        self.clock = clock
        self._on_handed = on_handed
        self._direct = frozenset(
            name
            for name, destination in destinations.items()
            if destination.config.rate_limit is None
        )
        self._waiting: deque[tuple[float, str, Item]] = deque()

        self.closed = False  # the worker has stopped: nothing is handed over any more

    def __len__(self) -> int:
        return len(self._waiting)

    def destinations(self) -> frozenset[str]:
        """Where new deliveries may be handed over now: none while a round's worth waits,
        none once the worker has stopped."""
        if self.closed or len(self._waiting) >= self.config.delivery.batch_size:
            return frozenset()
        return self._direct

    def lease_until(self) -> datetime:
        """Until when a delivery handed over now is leased."""
        seconds = lease_seconds(self.config, self.config.delivery.batch_size)
        return self.clock() + timedelta(seconds=seconds)

    def hand_over(self, routed: Sequence[Routed]) -> None:
        """Queue committed, leased deliveries for the worker's next round and wake it."""
        if not routed:
            return
        documents: dict[tuple[str, str], dict[str, Any]] = {}
        assignments: dict[str, SimpleNamespace] = {}
        at = time.monotonic()
        for row, assignment, lead in routed:
            key = assignment["assignment_id"]
            view = assignments.get(key)
            if view is None:
                view = assignments[key] = SimpleNamespace(**assignment)
            item = build_item(
                SimpleNamespace(**row), view, lead, self.config, self.ack_url, documents
            )
            self._waiting.append((at, row["destination"], item))
        self._on_handed()

    def close(self) -> list[Item]:
        """Stop taking deliveries; those still waiting, whose leases are to be released."""
        self.closed = True
        waiting = [item for _, _, item in self._waiting]
        self._waiting.clear()
        return waiting

    def take(self, limit: int) -> dict[str, list[Item]]:
        """Up to `limit` handed deliveries, oldest first, by destination."""
        taken: dict[str, list[Item]] = {}
        stale = 0
        oldest = time.monotonic() - FRESH_SECONDS
        while self._waiting and limit > 0:
            at, name, item = self._waiting.popleft()
            if at < oldest:
                stale += 1
                continue
            taken.setdefault(name, []).append(item)
            limit -= 1
        if stale:
            log.warning("%d handed deliveries waited too long; a claim takes them later", stale)
        return taken
