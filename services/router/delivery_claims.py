"""A delivery round's claim: the due deliveries that may go out now, locked and leased.

Due rows are taken in one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
replicas never take the same row) with their assignment and lead, and leased for a
while in one more. Per-destination rate limits decide how many requests may go out
now; rows over a destination's allowance are released at once, untouched.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from services.router import store
from services.router.commands import ClaimDueDeliveries, ReleaseStaleClaims
from services.router.destinations import Destination, Item
from services.router.documents import build_document
from services.router.settings import RoutingConfig
from shared.db import UnitOfWork

#: Requests in flight at once per destination, as the lease reckons a round's length.
CONCURRENCY = 8


def lease_seconds(config: RoutingConfig, claimed: int) -> float:
    """How long a claim of `claimed` rows is held: long enough for every call to time out."""
    timeout = config.delivery.timeout_seconds
    rounds = math.ceil(max(claimed, 1) / CONCURRENCY)
    return 4 * timeout * rounds + 30


async def handle_release_stale_claims(command: ReleaseStaleClaims, uow: UnitOfWork) -> int:
    """On SQLite, free the deliveries a killed predecessor had claimed; returns how many.

    One process owns a SQLite database, so a claim found when its delivery worker starts
    was made by a process that is gone (killed mid-round): its deliveries go out in this
    first round instead of when their lease runs out (minutes for a full round). On
    PostgreSQL another replica may be sending them, so their leases are honoured.
    """
    if uow.dialect != "sqlite":
        return 0
    return await store.release_claims(uow.session)


async def handle_claim_due_deliveries(
    command: ClaimDueDeliveries,
    uow: UnitOfWork,
    *,
    config: RoutingConfig,
    destinations: dict[str, Destination],
    ack_url: Callable[[str], str],
) -> dict[str, list[Item]]:
    """Claim what is due at `command.now`, by destination, each row as the item to send."""
    now, session = command.now, uow.session
    skip = set(await store.paused_destinations(session, now))
    allowance: dict[str, int] = {}
    for name, destination in destinations.items():
        limit = destination.config.rate_limit
        if limit is None or name in skip:
            continue
        row = await store.destination_row(session, uow.dialect, name, now)
        allowance[name] = limit.requests - len(_recent(row.sent, now, limit.per_seconds))
        if allowance[name] <= 0:
            skip.add(name)
    # Rows of a destination no longer configured (or disabled) wait; they are not lost.
    rows = await store.claim_due(
        session,
        uow.dialect,
        now,
        lambda n: now + timedelta(seconds=lease_seconds(config, n)),
        config.delivery.batch_size,
        only_destinations=[name for name in destinations if name not in skip],
    )
    by_destination: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_destination[row.destination].append(row)
    claimed: dict[str, list[Item]] = {}
    # An assignment's deliveries to several destinations send one document (bar its id).
    documents: dict[tuple[str, str], dict[str, Any]] = {}
    for name, group in by_destination.items():
        if name in allowance:
            group = await _within_allowance(uow, destinations[name], group, allowance[name], now)
        if group:
            claimed[name] = [_item(row, config, ack_url, documents) for row in group]
    return claimed


async def _within_allowance(
    uow: UnitOfWork, destination: Destination, group: list[Any], requests: int, now: datetime
) -> list[Any]:
    """The rows `requests` calls may carry; the rest are released, and the calls counted."""
    keep = group[: requests * destination.max_batch]
    await store.update_deliveries(
        uow.session,
        uow.dialect,
        [
            (extra.delivery_id, {"claimed_until": None, "claims": extra.claims})
            for extra in group[len(keep) :]
        ],
    )
    sent = await store.destination_row(uow.session, uow.dialect, destination.name, now)
    used = math.ceil(len(keep) / destination.max_batch)
    window = destination.config.rate_limit.per_seconds
    stamps = _recent(sent.sent, now, window) + [now.timestamp()] * used
    await store.save_destination_state(uow.session, destination.name, sent=stamps, updated_at=now)
    return keep


def _item(
    row: Any,
    config: RoutingConfig,
    ack_url: Callable[[str], str],
    documents: dict[tuple[str, str], dict[str, Any]],
) -> Item:
    key = (row.assignment_id, row.purpose)
    built = documents.get(key)
    if built is not None:
        document = {**built, "delivery_id": row.delivery_id}  # the key keeps its place
    elif (
        assignment := _joined(row, store.ASSIGNMENT_PREFIX, store.CLAIMED_ASSIGNMENT_COLUMNS)
    ) is not None:
        lead = _joined(row, store.LEAD_PREFIX, store.CLAIMED_LEAD_COLUMNS)
        document = build_document(row, assignment, lead, config, ack_url(row.assignment_id))
        documents[key] = document
    else:
        document = {"lead_id": row.lead_id, "delivery_id": row.delivery_id}
    return Item(
        delivery_id=row.delivery_id,
        lead_id=row.lead_id,
        purpose=row.purpose,
        claims=row.claims + 1,
        document=document,
        progress=dict(row.progress or {}),
    )


def _joined(row: Any, prefix: str, columns: tuple[str, ...]) -> SimpleNamespace | None:
    """The assignment or lead a claimed row carries (None when it is gone)."""
    values = row._mapping
    if values[prefix + columns[0]] is None:
        return None
    return SimpleNamespace(**{name: values[prefix + name] for name in columns})


def _recent(sent: Any, now: datetime, window: float) -> list[float]:
    cutoff = now.timestamp() - window
    return [float(t) for t in (sent or []) if float(t) > cutoff]
