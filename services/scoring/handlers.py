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
    signal = signal_of(envelope.id, data, envelope.time)
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
    # Computed first, staged together: a failure above leaves the batch untouched.
    change = _change(outcome, now, cause_event_id=envelope.id, cause_type=envelope.type)
    batch.log_event(
        event_id=envelope.id,
        lead_id=data.lead_id,
        seq=outcome.state.events,
        event_type=envelope.type,
        payload=event_payload(envelope),
        occurred_at=signal.occurred_at,
        received_at=now,
    )
    await _apply(uow, batch, outcome, change, now)


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


@dataclass(frozen=True)
class _Change:
    event: LeadScored | None
    history: dict[str, Any] | None


def _change(outcome: Outcome, now: datetime, *, cause_event_id: str, cause_type: str) -> _Change:
    """The lead.scored to publish and the history row to record, if any."""
    score, previous = outcome.score, outcome.previous
    if score is None or (not outcome.publish and score.same_numbers(previous)):
        return _Change(None, None)
    event = None
    if outcome.publish:
        event = lead_scored(
            outcome.state.lead_id,
            outcome,
            cause_event_id=cause_event_id,
            cause_type=cause_type,
            scored_at=now,
        )
    history = {
        "lead_id": outcome.state.lead_id,
        "at": now,
        "score": score.score,
        "fit": score.fit,
        "engagement": score.engagement,
        "grade": score.grade,
        "previous_grade": previous.grade if previous else None,
        "sales_ready": score.sales_ready,
        "became_sales_ready": outcome.became_sales_ready,
        "disqualified": score.disqualified,
        "published": outcome.publish,
        "model_version": score.model_version,
        "cause_event_id": cause_event_id,
        "cause_type": cause_type,
        "reasons": [r.as_dict() for r in score.reasons],
    }
    return _Change(event, history)


async def _apply(
    uow: UnitOfWork, batch: LeadBatch, outcome: Outcome, change: _Change, now: datetime
) -> None:
    """Write (or queue) the new state and the history row, then publish the lead.scored."""
    batch.save(outcome.state, now)
    if change.history is not None:
        batch.record_change(change.history)
    await batch.settle()
    if change.event is None:
        return
    uow.publish(change.event)
    score, previous = outcome.score, outcome.previous
    assert score is not None
    became, channel = outcome.became_sales_ready, change.event.channel
    batch.after_commit(lambda: _count(score, previous, became, channel))


def _count(score: Score, previous: Score | None, became: bool, channel: str) -> None:
    metrics.leads_scored_total.labels(score.grade).inc()
    if previous is not None and previous.grade != score.grade:
        metrics.grade_transitions_total.labels(previous.grade, score.grade).inc()
    if became:
        metrics.sales_ready_total.labels(channel).inc()


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
        change = _change(outcome, now, cause_event_id=run_id, cause_type=DECAY_CAUSE)
        await _apply(uow, batch, outcome, change, now)
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
        change = _change(outcome, now, cause_event_id=run_id, cause_type=REPLAY_CAUSE)
        if not dry_run:
            await _apply(uow, batch, outcome, change, now)
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
