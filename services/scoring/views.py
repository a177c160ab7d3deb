"""Scoring's read side: a lead's score explained, and the counts the CLI shows.

Plain read functions, not bus messages: each opens one unit of work on the factory
it is given, reads, and commits nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.scoring import queries
from services.scoring.domain import ScoringModel, needs_rebuild
from services.scoring.handlers import rebuilt
from services.scoring.lead_rows import state_from_row
from services.scoring.leads import LeadState
from services.scoring.scores import Score
from shared.db import UnitOfWork


@dataclass(frozen=True)
class Explanation:
    """A lead's last published score with its reasons, the same as of now, and history."""

    state: LeadState
    last: Score
    now: Score | None
    history: list[Any]
    history_total: int


async def explain(
    uows: Callable[[], UnitOfWork],
    lead_id: str,
    now: datetime,
    limit: int,
    *,
    model: ScoringModel,
) -> Explanation | None:
    """Why the lead has its score as of `now`, with at most `limit` history rows; None
    for a lead scoring has not scored."""
    async with uows() as uow:
        return await _explain(uow, lead_id, now, limit, model)


async def _explain(
    uow: UnitOfWork, lead_id: str, now: datetime, limit: int, model: ScoringModel
) -> Explanation | None:
    row = await queries.get_state_row(uow.session, lead_id)
    if row is None:
        return None
    state = state_from_row(row)
    if state.last is None:
        return None
    current = None
    if not state.erased:
        state_now = await rebuilt(uow, state, model) if needs_rebuild(state, model) else state
        current = model.score(state_now, None, now).score
    rows = await queries.history(uow.session, lead_id, limit)
    total = await queries.count_changes(uow.session, lead_id)
    return Explanation(state, state.last, current, rows, total)


async def count_leads(uows: Callable[[], UnitOfWork]) -> int:
    """How many leads (not erased) scoring keeps."""
    async with uows() as uow:
        return await queries.count_leads(uow.session)


async def count_unsent(uows: Callable[[], UnitOfWork]) -> int:
    """How many events wait in scoring's outbox."""
    async with uows() as uow:
        return await queries.count_unsent(uow.session)
