"""Scoring's read side: a lead's score explained, and the counts the CLI shows.

Query handlers: the bus runs them with `query`, which commits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.scoring import queries
from services.scoring.commands import CountLeads, CountUnsentEvents, ExplainScore
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


async def handle_explain(
    query: ExplainScore, uow: UnitOfWork, *, model: ScoringModel
) -> Explanation | None:
    """Why the lead has its score; None for a lead scoring has not scored."""
    lead_id = query.lead_id
    row = await queries.get_state_row(uow.session, lead_id)
    if row is None:
        return None
    state = state_from_row(row)
    if state.last is None:
        return None
    current = None
    if not state.erased:
        state_now = await rebuilt(uow, state, model) if needs_rebuild(state, model) else state
        current = model.score(state_now, None, query.now).score
    rows = await queries.history(uow.session, lead_id, query.limit)
    total = await queries.count_changes(uow.session, lead_id)
    return Explanation(state, state.last, current, rows, total)


async def handle_count_leads(_query: CountLeads, uow: UnitOfWork) -> int:
    """How many leads (not erased) scoring keeps."""
    return await queries.count_leads(uow.session)


async def handle_count_unsent(_query: CountUnsentEvents, uow: UnitOfWork) -> int:
    """How many events wait in scoring's outbox."""
    return await queries.count_unsent(uow.session)
