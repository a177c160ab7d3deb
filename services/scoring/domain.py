"""How one event changes what scoring knows about a lead. Pure: no I/O.

A lead's state (`leads.py`) is its snapshot, the scoring model's own memory (for
the rule model: the points each engagement rule holds) and the last score
published (`scores.py`). Events become `Signal`s (`signals.py`); `rescore` folds
one signal into the state and says whether a `lead.scored` must go out;
`rebuild` folds a lead's stored events from scratch (replay, or a lead last scored
by an older model); `reevaluate` lets time alone (decay) regrade a lead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from services.scoring.leads import LeadState, observe
from services.scoring.scores import Score
from services.scoring.signals import Signal
from shared.events import Envelope, LeadScored
from shared.events.contracts import Event

DECAY_CAUSE = "leadflow.scoring.decay"
REPLAY_CAUSE = "leadflow.scoring.replay"


class Result(NamedTuple):
    """What a model returns: its new memory of the lead and the score."""

    memory: dict[str, Any]
    score: Score


class ScoringModel(Protocol):
    """A way to score leads. The rule model is the one in use; a learned model
    (say, win probability trained on `leads.outcomes`) would implement the same
    two members and keep whatever it needs in the memory it returns."""

    @property
    def version(self) -> str:
        """Identifies the model; recorded on every score."""
        ...

    def score(self, state: LeadState, signal: Signal | None, at: datetime) -> Result:
        """Fold `signal` (if any) into the lead's memory and score the lead as of `at`."""
        ...


class ScoreUpdate(NamedTuple):
    """A lead after one signal (or a decay check, or a replay): its new state and what to
    publish."""

    state: LeadState
    score: Score | None
    previous: Score | None
    publish: bool
    became_sales_ready: bool


def needs_rebuild(state: LeadState, model: ScoringModel) -> bool:
    """The lead's memory was built by another model: fold its events again first."""
    return state.events > 0 and state.model_version != model.version


def rescore(
    state: LeadState, signal: Signal, model: ScoringModel, at: datetime, *, always: bool
) -> ScoreUpdate:
    """Fold one signal into the lead. Publish on every capture (`always`), otherwise
    only when the score, grade, sales-readiness or consent changed."""
    before = state.snapshot
    snapshot = observe(before, signal)
    events = state.events + 1
    # Built field by field rather than with `dataclasses.replace`: this runs per event.
    staged = LeadState(
        state.lead_id, snapshot, state.memory, state.model_version, events, state.last, state.erased
    )
    result = model.score(staged, signal, at)
    version = model.version
    previous = state.last
    if snapshot is None:
        # Engagement before the capture arrived: remembered, published with the capture.
        new = LeadState(state.lead_id, None, result.memory, version, events, previous, state.erased)
        return ScoreUpdate(new, None, previous, publish=False, became_sales_ready=False)
    score = result.score
    publish = (
        always
        or not score.same_numbers(previous)
        or (
            before is not None
            and snapshot is not before
            and (
                snapshot.marketing_consent != before.marketing_consent
                or snapshot.double_opt_in != before.double_opt_in
            )
        )
    )
    last = score if publish or previous is None else _keep(previous, score)
    new = LeadState(state.lead_id, snapshot, result.memory, version, events, last, state.erased)
    became = publish and score.sales_ready and not (previous and previous.sales_ready)
    return ScoreUpdate(new, score if publish else None, previous, publish, became)


def _keep(previous: Score, current: Score) -> Score:
    # Nothing published: the last published score stands, with the current decay deadline.
    if previous.due_at == current.due_at:
        return previous
    return replace(previous, due_at=current.due_at)


def reevaluate(state: LeadState, model: ScoringModel, at: datetime) -> ScoreUpdate:
    """The lead as of `at` with nothing new but the passing time (decay). Publishes
    only when its grade or sales-readiness changed."""
    if state.snapshot is None or state.last is None or state.erased:
        return ScoreUpdate(state, None, state.last, publish=False, became_sales_ready=False)
    result = model.score(state, None, at)
    previous = state.last
    publish = not result.score.same_verdict(previous)
    last = result.score if publish else _keep(previous, result.score)
    new = replace(state, memory=result.memory, model_version=model.version, last=last)
    became = publish and result.score.sales_ready and not previous.sales_ready
    return ScoreUpdate(new, result.score if publish else None, previous, publish, became)


def rebuild(
    lead_id: str, entries: Iterable[tuple[Signal, datetime]], model: ScoringModel
) -> LeadState:
    """The lead as the model would have scored it, from its stored events in order
    (each with the time it was first scored)."""
    state = LeadState(lead_id=lead_id, model_version=model.version)
    for signal, at in entries:
        state = rescore(state, signal, model, at, always=signal.captured is not None).state
    return state


def replayed(
    stored: LeadState, rebuilt: LeadState, model: ScoringModel, at: datetime
) -> ScoreUpdate:
    """The rebuilt lead as of `at`, compared with what was last published: publish
    only when the grade or sales-readiness changed."""
    if rebuilt.snapshot is None:
        return ScoreUpdate(rebuilt, None, stored.last, publish=False, became_sales_ready=False)
    result = model.score(rebuilt, None, at)
    previous = stored.last
    publish = previous is not None and not result.score.same_verdict(previous)
    state = replace(
        rebuilt,
        memory=result.memory,
        model_version=model.version,
        last=result.score,
        events=stored.events,
    )
    became = publish and result.score.sales_ready and not (previous and previous.sales_ready)
    return ScoreUpdate(state, result.score, previous, publish, became)


def scored_head(
    lead_id: str, update: ScoreUpdate, reasons: Any, *, cause_event_id: str, cause_type: str
) -> dict[str, Any]:
    """A `lead.scored`'s fields from `lead_id` to `cause_type`, in the contract's order (the
    order its body is written in), with `reasons` as the caller gives them."""
    score, previous = update.score, update.previous
    assert score is not None
    return {
        "lead_id": lead_id,
        "score": float(score.score),
        "fit": float(score.fit),
        "engagement": float(score.engagement),
        "grade": score.grade,
        "previous_grade": previous.grade if previous else None,
        "sales_ready": score.sales_ready,
        "became_sales_ready": update.became_sales_ready,
        "disqualified": score.disqualified,
        "model_version": score.model_version,
        "reasons": reasons,
        "cause_event_id": cause_event_id,
        "cause_type": cause_type,
    }


def lead_scored(
    lead_id: str,
    update: ScoreUpdate,
    *,
    cause_event_id: str,
    cause_type: str,
    scored_at: datetime,
) -> LeadScored:
    """The `lead.scored` event of a score update that publishes."""
    score, snapshot = update.score, update.state.snapshot
    assert score is not None and snapshot is not None
    # Validated like any event, but its reasons and contact are models validated once per
    # reason and snapshot (pydantic takes instances of a field's model as they are).
    reasons = [r.contract for r in score.reasons]
    fields = scored_head(
        lead_id, update, reasons, cause_event_id=cause_event_id, cause_type=cause_type
    )
    return LeadScored.model_validate(
        {
            **fields,
            "channel": snapshot.channel,
            "form_id": snapshot.form_id,
            "form_type": snapshot.form_type,
            "contact": snapshot.contact_model,
            "fields": snapshot.fields,
            "marketing_consent": snapshot.marketing_consent,
            "double_opt_in": snapshot.double_opt_in,
            "is_test": snapshot.is_test,
            "captured_at": snapshot.captured_at,
            "scored_at": scored_at,
        }
    )


def event_payload(envelope: Envelope[Event]) -> str:
    """What the event log keeps of an event: its body, as JSON text (as it came, when it
    came from a record: the body the contract validated)."""
    if envelope.body is not None:
        return envelope.body.decode()
    data = envelope.data
    return data.__pydantic_serializer__.to_json(data).decode()
