"""Scoring's use cases: score captured and engaging leads, forget erased ones, let decay
regrade stale leads, replay the event log under a new model, explain a score.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from services.scoring import store
from services.scoring.domain import (
    DECAY_CAUSE,
    REPLAY_CAUSE,
    LeadState,
    Outcome,
    Score,
    ScoringModel,
    erase,
    event_payload,
    lead_scored,
    needs_rebuild,
    rebuild,
    reevaluate,
    replayed,
    rescore,
    signal_from_log,
    signal_of,
)
from services.scoring.store import LeadBatch
from shared import metrics
from shared.db import UnitOfWork
from shared.events import (
    Envelope,
    LeadCaptured,
    LeadEngaged,
    LeadErased,
    LeadScored,
    LeadUnsubscribed,
)
from shared.events.contracts import Event

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@functools.cache
def _timer(cause: str) -> Any:
    """The scoring-duration series of a cause, looked up once."""
    return metrics.scoring_duration_seconds.labels(cause)


# Consuming events -------------------------------------------------------------------------


async def handle_lead_captured(
    envelope: Envelope[LeadCaptured],
    uow: UnitOfWork,
    *,
    model: ScoringModel,
    clock: Clock = utc_now,
) -> None:
    """A submission: every captured lead gets a `lead.scored`, repeat touches too."""
    await _score_event(envelope, uow, model, clock, always=True, cause="captured")


async def handle_lead_engaged(
    envelope: Envelope[LeadEngaged],
    uow: UnitOfWork,
    *,
    model: ScoringModel,
    clock: Clock = utc_now,
) -> None:
    """An open, click, reply, repeat visit or double opt-in confirmation: published
    only when it changes the score, the grade, sales-readiness or consent."""
    await _score_event(envelope, uow, model, clock, always=False, cause="engagement")


async def handle_lead_unsubscribed(
    envelope: Envelope[LeadUnsubscribed],
    uow: UnitOfWork,
    *,
    model: ScoringModel,
    clock: Clock = utc_now,
) -> None:
    """No more marketing email: consent withdrawn, and the unsubscribe rules apply."""
    await _score_event(envelope, uow, model, clock, always=False, cause="engagement")


async def _score_event(
    envelope: Envelope[Any],
    uow: UnitOfWork,
    model: ScoringModel,
    clock: Clock,
    *,
    always: bool,
    cause: str,
) -> None:
    batch = LeadBatch.of(uow)
    data: Event = envelope.data
    event_id = envelope.id
    signal = signal_of(event_id, data, envelope.time)
    if signal is None:
        return
    now = clock()
    state = await batch.get(data.lead_id)
    if state.erased:
        log.info("event for an erased lead ignored", extra={"lead_id": data.lead_id})
        return
    if needs_rebuild(state, model):
        state = await _rebuilt(uow, state, model)
    started = time.perf_counter()
    outcome = rescore(state, signal, model, now, always=always)
    _timer(cause).observe(time.perf_counter() - started)
    event_type = data.TYPE
    # Computed first, staged together: a failure here leaves the batch untouched.
    event = _scored(outcome, now, cause_event_id=event_id, cause_type=event_type)
    batch.log_event(
        event_id=event_id,
        lead_id=data.lead_id,
        seq=outcome.state.events,
        event_type=event_type,
        payload=event_payload(envelope),
        occurred_at=signal.occurred_at,
        received_at=now,
    )
    await _apply(uow, batch, outcome, event, now, cause_event_id=event_id, cause_type=event_type)


async def _rebuilt(uow: UnitOfWork, state: LeadState, model: ScoringModel) -> LeadState:
    """The lead folded again under `model` (it was last scored by another one); what was
    last published stays the reference for the next change."""
    logged = (await store.events_of(uow.session, [state.lead_id]))[state.lead_id]
    fresh = rebuild(state.lead_id, _entries(logged), model)
    return replace(fresh, last=state.last, events=state.events, erased=state.erased)


def _entries(rows: list[Any]) -> list[tuple[Any, datetime]]:
    entries = []
    for row in rows:
        signal = signal_from_log(row.event_id, row.event_type, row.payload, row.occurred_at)
        if signal is not None:
            entries.append((signal, row.received_at))
    return entries


def _scored(
    outcome: Outcome, now: datetime, *, cause_event_id: str, cause_type: str
) -> LeadScored | None:
    """The lead.scored to publish, if the outcome publishes."""
    if not outcome.publish:
        return None
    return lead_scored(
        outcome.state.lead_id,
        outcome,
        cause_event_id=cause_event_id,
        cause_type=cause_type,
        scored_at=now,
    )


async def _apply(
    uow: UnitOfWork,
    batch: LeadBatch,
    outcome: Outcome,
    event: LeadScored | None,
    now: datetime,
    *,
    cause_event_id: str,
    cause_type: str,
) -> None:
    """Write (or queue) the new state and the history row (when the score moved or is
    published), then publish the lead.scored."""
    score, previous = outcome.score, outcome.previous
    batch.save(outcome.state, now)
    if score is not None and (outcome.publish or not score.same_numbers(previous)):
        batch.record_change(
            score,
            lead_id=outcome.state.lead_id,
            at=now,
            previous_grade=previous.grade if previous else None,
            became_sales_ready=outcome.became_sales_ready,
            published=outcome.publish,
            cause_event_id=cause_event_id,
            cause_type=cause_type,
        )
    await batch.settle()
    if event is None:
        return
    uow.publish(event)
    assert score is not None
    # Counted once committed, one series lookup per distinct outcome, not per event.
    tally = batch.tally
    if not tally:
        batch.after_commit(functools.partial(_count, tally))
    tally[
        (
            score.grade,
            previous.grade if previous else None,
            outcome.became_sales_ready,
            event.channel,
        )
    ] += 1


def _count(tally: Counter[tuple[str, str | None, bool, str]]) -> None:
    for (grade, previous_grade, became, channel), n in tally.items():
        metrics.leads_scored_total.labels(grade).inc(n)
        if previous_grade is not None and previous_grade != grade:
            metrics.grade_transitions_total.labels(previous_grade, grade).inc(n)
        if became:
            metrics.sales_ready_total.labels(channel).inc(n)


def _scrubbed(payload: dict[str, Any]) -> dict[str, Any]:
    if "contact" not in payload and "fields" not in payload:
        return payload
    return {**payload, "contact": {}, "fields": {}}


async def handle_lead_erased(envelope: Envelope[LeadErased], uow: UnitOfWork) -> None:
    """Forget the person: the snapshot and the logged submissions lose contact and fields;
    later events of the lead are ignored. The anonymous score history stays."""
    batch = LeadBatch.of(uow)
    lead_id = envelope.data.lead_id
    state = await batch.get(lead_id)
    if state.erased:
        return
    batch.save(erase(state), envelope.data.erased_at, erased_at=envelope.data.erased_at)
    batch.scrub(lead_id, _scrubbed)
    await batch.settle()
    await store.scrub_logged_events(uow.session, lead_id, _scrubbed)
    log.info("lead erased from scoring", extra={"lead_id": lead_id})


# Decay ------------------------------------------------------------------------------------


async def handle_decay_sweep(
    uow: UnitOfWork, *, model: ScoringModel, now: datetime, limit: int, run_id: str
) -> tuple[int, int]:
    """Re-score leads whose decay deadline passed; publish the grade changes it causes.

    Returns (leads looked at, leads regraded). Rows another replica holds are skipped.
    """
    batch = LeadBatch.of(uow)
    states = await batch.due(now, limit)
    regraded = 0
    for state in states:
        if needs_rebuild(state, model):
            state = await _rebuilt(uow, state, model)
        started = time.perf_counter()
        outcome = reevaluate(state, model, now)
        _timer("decay").observe(time.perf_counter() - started)
        event = _scored(outcome, now, cause_event_id=run_id, cause_type=DECAY_CAUSE)
        await _apply(uow, batch, outcome, event, now, cause_event_id=run_id, cause_type=DECAY_CAUSE)
        regraded += outcome.publish
    return len(states), regraded


class DecayWorker:
    """The periodic sweep: leads whose engagement has faded past a threshold are regraded."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        model: ScoringModel,
        *,
        interval_seconds: float,
        batch_size: int,
        clock: Clock = utc_now,
    ) -> None:
        self.uow_factory = uow_factory
        self.model = model
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self.clock = clock

    async def sweep(self) -> int:
        """One full sweep; returns how many leads changed grade or sales-readiness."""
        run_id = f"decay-{uuid.uuid4()}"
        regraded = 0
        while True:
            async with self.uow_factory() as uow:
                seen, changed = await handle_decay_sweep(
                    uow, model=self.model, now=self.clock(), limit=self.batch_size, run_id=run_id
                )
                await uow.commit()
            regraded += changed
            if seen < self.batch_size:
                break
        if regraded:
            log.info("decay sweep regraded %d lead(s)", regraded)
        return regraded

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `interval_seconds` until the service stops."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("decay sweep failed (%s); retrying next round", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_seconds)


# Replay -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayPage:
    """What one page of replay did."""

    lead_ids: list[str]
    rescored: int
    regraded: int
    newly_sales_ready: int


async def handle_replay_page(
    uow: UnitOfWork,
    *,
    model: ScoringModel,
    after: str,
    limit: int,
    now: datetime,
    run_id: str,
    dry_run: bool = False,
) -> ReplayPage:
    """Re-score the next `limit` leads after `after` from their logged events under
    `model`; publish `lead.scored` only for leads whose grade or sales-readiness changed."""
    batch = LeadBatch.of(uow)
    lead_ids = await store.lead_ids_after(uow.session, after, limit)
    await batch.load(lead_ids)
    logged = await store.events_of(uow.session, lead_ids)
    rescored = regraded = newly = 0
    for lead_id in lead_ids:
        state = await batch.get(lead_id)
        if state.erased or not logged[lead_id]:
            continue
        started = time.perf_counter()
        outcome = replayed(state, rebuild(lead_id, _entries(logged[lead_id]), model), model, now)
        _timer("replay").observe(time.perf_counter() - started)
        rescored += 1
        regraded += outcome.publish
        newly += outcome.became_sales_ready
        event = _scored(outcome, now, cause_event_id=run_id, cause_type=REPLAY_CAUSE)
        if not dry_run:
            await _apply(
                uow, batch, outcome, event, now, cause_event_id=run_id, cause_type=REPLAY_CAUSE
            )
    return ReplayPage(lead_ids, rescored, regraded, newly)


# Explanation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """A lead's last published score with its reasons, the same as of now, and history."""

    state: LeadState
    last: Score
    now: Score | None
    history: list[Any]
    history_total: int


async def handle_explain(
    lead_id: str, uow: UnitOfWork, *, model: ScoringModel, now: datetime, limit: int
) -> Explanation | None:
    """Why the lead has its score; None for a lead scoring has not scored."""
    row = await store.get_state_row(uow.session, lead_id)
    if row is None:
        return None
    state = store.state_from_row(row)
    if state.last is None:
        return None
    current = None
    if not state.erased:
        if needs_rebuild(state, model):
            state_now = await _rebuilt(uow, state, model)
        else:
            state_now = state
        current = model.score(state_now, None, now).score
    rows = await store.history(uow.session, lead_id, limit)
    total = await store.count_changes(uow.session, lead_id)
    return Explanation(state, state.last, current, rows, total)
