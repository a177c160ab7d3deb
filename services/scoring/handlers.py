"""Scoring's use cases: score captured and engaging leads, forget erased ones, let decay
regrade stale leads, replay the event log under a new model. (Explanations: `views.py`.)

The file is over 300 lines because every use case that re-scores a lead (an event, the
decay sweep, a replay page) writes through the same path (`_apply`: state, history,
`lead.scored`, metrics), kept in one place.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.scoring import queries
from services.scoring.commands import ReplayNextPage, SweepDecay
from services.scoring.domain import (
    DECAY_CAUSE,
    REPLAY_CAUSE,
    ScoreUpdate,
    ScoringModel,
    event_payload,
    needs_rebuild,
    rebuild,
    reevaluate,
    replayed,
    rescore,
)
from services.scoring.lead_cache import LeadCache
from services.scoring.leads import LeadState, erase
from services.scoring.published import publish_scored, scored_body
from services.scoring.signals import signal_from_log, signal_of
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import Envelope, LeadErased
from shared.events.contracts import Event
from shared.kafka.handling import observe_all

log = logging.getLogger(__name__)

# The once-key of the metrics a transaction's scored leads add up to.
_SCORED_METRICS = "scoring.scored-metrics"


@functools.cache
def _timer(cause: str) -> Any:
    """The scoring-duration series of a cause, looked up once."""
    return metrics.scoring_duration_seconds.labels(cause)


# Consuming events -------------------------------------------------------------------------


def _event_scorer(name: str, doc: str, *, always: bool, cause: str) -> Callable[..., Any]:
    """The handler of one kind of scored event: `always` publishes a `lead.scored` for
    every event, else only for a change; `cause` labels the scoring-duration metric.
    It is named `name` (the consumer's metrics and dead letters name it)."""

    async def handler(
        envelope: Envelope[Any], uow: UnitOfWork, *, model: ScoringModel, clock: Clock = utc_now
    ) -> None:
        await _score_event(envelope, uow, model, clock, always=always, cause=cause)

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = doc
    return handler


handle_lead_captured = _event_scorer(
    "handle_lead_captured",
    "A submission: every captured lead gets a `lead.scored`, repeat touches too.",
    always=True,
    cause="captured",
)
handle_lead_engaged = _event_scorer(
    "handle_lead_engaged",
    "An open, click, reply, repeat visit or double opt-in confirmation: published only "
    "when it changes the score, the grade, sales-readiness or consent.",
    always=False,
    cause="engagement",
)
handle_lead_unsubscribed = _event_scorer(
    "handle_lead_unsubscribed",
    "No more marketing email: consent withdrawn, and the unsubscribe rules apply.",
    always=False,
    cause="engagement",
)


async def _score_event(
    envelope: Envelope[Any],
    uow: UnitOfWork,
    model: ScoringModel,
    clock: Clock,
    *,
    always: bool,
    cause: str,
) -> None:
    cache = LeadCache.of(uow)
    data: Event = envelope.data
    event_id = envelope.id
    signal = signal_of(event_id, data, envelope.time)
    if signal is None:
        return
    now = clock()
    state = await cache.get(data.lead_id)
    if state.erased:
        log.info("event for an erased lead ignored", extra={"lead_id": data.lead_id})
        return
    if needs_rebuild(state, model):
        state = await rebuilt(uow, state, model)
    started = time.perf_counter()
    update = rescore(state, signal, model, now, always=always)
    timings = cache.timings.get(cause)
    if timings is None:
        timings = cache.timings[cause] = []
    if not timings or cache.one_by_one:
        uow.on_commit(
            functools.partial(_observe_timings, cache, cause), once_key=f"scoring.timings.{cause}"
        )
    timings.append(time.perf_counter() - started)
    event_type = data.TYPE
    # Computed first, staged together: a failure here leaves the cache untouched.
    event = _scored(update, now, cause_event_id=event_id, cause_type=event_type)
    cache.log_event(
        event_id=event_id,
        lead_id=data.lead_id,
        seq=update.state.events,
        event_type=event_type,
        payload=event_payload(envelope),
        occurred_at=signal.occurred_at,
        received_at=now,
    )
    await _apply(uow, cache, update, event, now, cause_event_id=event_id, cause_type=event_type)


async def rebuilt(uow: UnitOfWork, state: LeadState, model: ScoringModel) -> LeadState:
    """The lead folded again under `model` (it was last scored by another one); what was
    last published stays the reference for the next change."""
    logged = (await queries.events_of(uow.session, [state.lead_id]))[state.lead_id]
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
    update: ScoreUpdate, now: datetime, *, cause_event_id: str, cause_type: str
) -> bytes | None:
    """The body of the lead.scored to publish, if the update publishes."""
    if not update.publish:
        return None
    return scored_body(
        update.state.lead_id,
        update,
        cause_event_id=cause_event_id,
        cause_type=cause_type,
        scored_at=now,
    )


async def _apply(
    uow: UnitOfWork,
    cache: LeadCache,
    update: ScoreUpdate,
    event: bytes | None,
    now: datetime,
    *,
    cause_event_id: str,
    cause_type: str,
) -> None:
    """Write (or queue) the new state and the history row (when the score moved or is
    published), then publish the lead.scored."""
    score, previous = update.score, update.previous
    cache.save(update.state, now)
    if score is not None and (update.publish or not score.same_numbers(previous)):
        cache.record_change(
            score,
            lead_id=update.state.lead_id,
            at=now,
            previous_grade=previous.grade if previous else None,
            became_sales_ready=update.became_sales_ready,
            published=update.publish,
            cause_event_id=cause_event_id,
            cause_type=cause_type,
        )
    await cache.settle()
    if event is None:
        return
    snapshot = update.state.snapshot
    assert score is not None and snapshot is not None
    publish_scored(uow, update.state.lead_id, event)
    # Counted once committed, one series lookup per distinct series, not per event.
    tally = cache.tally
    if not tally or cache.one_by_one:
        uow.on_commit(functools.partial(_count, cache), once_key=_SCORED_METRICS)
    tally[
        (
            score.grade,
            previous.grade if previous else None,
            update.became_sales_ready,
            snapshot.channel,
        )
    ] += 1


def _observe_timings(cache: LeadCache, cause: str) -> None:
    # Once committed, the transaction's scoring durations of a cause in one go.
    timings = cache.timings.pop(cause, None)
    if timings:
        observe_all(_timer(cause), timings)


def _count(cache: LeadCache) -> None:
    tally: Counter[tuple[str, str | None, bool, str]]
    tally, cache.tally = cache.tally, Counter()
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
    cache = LeadCache.of(uow)
    lead_id = envelope.data.lead_id
    state = await cache.get(lead_id)
    if state.erased:
        return
    cache.save(erase(state), envelope.data.erased_at, erased_at=envelope.data.erased_at)
    cache.scrub(lead_id, _scrubbed)
    await cache.settle()
    await queries.scrub_logged_events(uow.session, lead_id, _scrubbed)
    log.info("lead erased from scoring", extra={"lead_id": lead_id})


# Decay ------------------------------------------------------------------------------------


async def handle_decay_sweep(
    command: SweepDecay, uow: UnitOfWork, *, model: ScoringModel
) -> tuple[int, int]:
    """Re-score leads whose decay deadline passed; publish the grade changes it causes.

    Returns (leads looked at, leads regraded). Rows another replica holds are skipped.
    """
    cache = LeadCache.of(uow)
    now, run_id = command.now, command.run_id
    states = await cache.due(now, command.limit)
    regraded = 0
    for state in states:
        if needs_rebuild(state, model):
            state = await rebuilt(uow, state, model)
        started = time.perf_counter()
        update = reevaluate(state, model, now)
        _timer("decay").observe(time.perf_counter() - started)
        event = _scored(update, now, cause_event_id=run_id, cause_type=DECAY_CAUSE)
        await _apply(uow, cache, update, event, now, cause_event_id=run_id, cause_type=DECAY_CAUSE)
        regraded += update.publish
    return len(states), regraded


# Replay -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayPage:
    """What one page of replay did."""

    lead_ids: list[str]
    rescored: int
    regraded: int
    newly_sales_ready: int


async def handle_replay_page(
    command: ReplayNextPage, uow: UnitOfWork, *, model: ScoringModel
) -> ReplayPage:
    """Re-score the next `limit` leads after `after` from their logged events under
    `model`; publish `lead.scored` only for leads whose grade or sales-readiness changed
    (a dry run only counts)."""
    cache = LeadCache.of(uow)
    now, run_id = command.now, command.run_id
    lead_ids = await queries.lead_ids_after(uow.session, command.after, command.limit)
    await cache.load(lead_ids)
    logged = await queries.events_of(uow.session, lead_ids)
    rescored = regraded = newly = 0
    for lead_id in lead_ids:
        state = await cache.get(lead_id)
        if state.erased or not logged[lead_id]:
            continue
        started = time.perf_counter()
        update = replayed(state, rebuild(lead_id, _entries(logged[lead_id]), model), model, now)
        _timer("replay").observe(time.perf_counter() - started)
        rescored += 1
        regraded += update.publish
        newly += update.became_sales_ready
        event = _scored(update, now, cause_event_id=run_id, cause_type=REPLAY_CAUSE)
        if not command.dry_run:
            await _apply(
                uow, cache, update, event, now, cause_event_id=run_id, cause_type=REPLAY_CAUSE
            )
    return ReplayPage(lead_ids, rescored, regraded, newly)
