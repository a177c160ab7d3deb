"""What scoring knows about a lead, and how one event changes it. Pure: no I/O.

A lead's state is its snapshot (the contact and form facts other services need),
the scoring model's own memory (for the rule model: the points each engagement
rule holds) and the last score published. Events become `Signal`s; `rescore`
folds one signal into the state and says whether a `lead.scored` must go out;
`rebuild` folds a lead's stored events from scratch (replay, or a lead last
scored by an older model).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

import orjson

from shared.events import (
    Envelope,
    LeadCaptured,
    LeadEngaged,
    LeadScored,
    LeadUnsubscribed,
)
from shared.events.contracts import EVENT_TYPES, Contact, Event, FieldValue, ScoreReason

Grade = Literal["hot", "warm", "cold"]
Consent = Literal["confirmed", "withdrawn"]

DECAY_CAUSE = "leadflow.scoring.decay"
REPLAY_CAUSE = "leadflow.scoring.replay"


@dataclass(frozen=True)
class Reason:
    """One rule that fired and what it adds to the score now."""

    rule_id: str
    kind: Literal["fit", "engagement"]
    points: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "kind": self.kind,
            "points": self.points,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reason:
        detail = data.get("detail") or ""
        return cls.of(data["rule_id"], data["kind"], float(data["points"]), detail)

    @classmethod
    def of(
        cls, rule_id: str, kind: Literal["fit", "engagement"], points: float, detail: str
    ) -> Reason:
        """The reason with these values, shared: rules fire with the same points and
        wording lead after lead, so their contract model and JSON are made once."""
        # -0.0 equals 0.0 but is written differently, and an int equals its float: such
        # values are never shared.
        if type(points) is not float or points == 0.0:
            return cls(rule_id, kind, points, detail)
        key = (rule_id, kind, points, detail)
        found = _REASONS.get(key)
        if found is None:
            if len(_REASONS) >= 10_000:
                _REASONS.clear()
            found = _REASONS[key] = cls(rule_id, kind, points, detail)
        return found

    @cached_property
    def contract(self) -> ScoreReason:
        """The reason as `lead.scored` carries it."""
        return ScoreReason.model_validate(self.as_dict())

    @cached_property
    def as_json(self) -> str:
        """`as_dict` as JSON text."""
        return orjson.dumps(self.as_dict()).decode()


_REASONS: dict[tuple[str, str, float, str], Reason] = {}


@dataclass(frozen=True)
class Score:
    """A model's verdict on a lead at one moment; the reasons add up to `score`."""

    score: float
    fit: float
    engagement: float
    grade: Grade
    sales_ready: bool
    disqualified: bool
    reasons: tuple[Reason, ...]
    model_version: str
    at: datetime
    due_at: datetime | None = None
    """When decay alone would next change the grade or sales-readiness (None: never)."""

    @cached_property
    def reasons_json(self) -> str:
        """The reasons as JSON text (what the lead's row and its history keep), encoded once
        however many rows carry them."""
        # orjson writes no whitespace: the list is its items' JSON joined by commas.
        return "[" + ",".join([r.as_json for r in self.reasons]) + "]"

    def same_verdict(self, other: Score | None) -> bool:
        """Same verdict: grade, sales-readiness and disqualification."""
        return (
            other is not None
            and other.grade == self.grade
            and other.sales_ready == self.sales_ready
            and other.disqualified == self.disqualified
        )

    def same_numbers(self, other: Score | None) -> bool:
        """Same verdict and the same points."""
        return (
            self.same_verdict(other)
            and other is not None
            and (other.score, other.fit, other.engagement)
            == (self.score, self.fit, self.engagement)
        )


@dataclass(frozen=True)
class Snapshot:
    """The lead as other services need it: contact, form facts, consent, first touch."""

    contact: Mapping[str, Any]
    fields: Mapping[str, FieldValue]
    channel: str
    source: str
    first_touch: Mapping[str, Any]
    form_id: str | None
    form_type: str | None
    form_types: tuple[str, ...]
    marketing_consent: bool
    double_opt_in: bool
    is_test: bool
    captured_at: datetime
    touches: int = 1

    def facts(self) -> dict[str, FieldValue]:
        """What fit rules can test: contact fields, first-touch attribution, fields.<name>."""
        facts: dict[str, FieldValue] = {
            name: value for name, value in self.contact.items() if isinstance(value, str)
        }
        email = self.contact.get("email")
        if isinstance(email, str) and "@" in email:
            facts["email_domain"] = email.rsplit("@", 1)[1].strip().lower()
        facts["channel"] = self.channel
        facts["source"] = self.source
        for name in ("utm_source", "utm_medium", "utm_campaign", "promo_code"):
            value = self.first_touch.get(name)
            if value is not None:
                facts[name] = value
        for name, value in self.fields.items():
            facts[f"fields.{name}"] = value
        return facts

    def as_dict(self) -> dict[str, Any]:
        return {
            "contact": dict(self.contact),
            "fields": dict(self.fields),
            "channel": self.channel,
            "source": self.source,
            "first_touch": dict(self.first_touch),
            "form_id": self.form_id,
            "form_type": self.form_type,
            "form_types": list(self.form_types),
            "marketing_consent": self.marketing_consent,
            "double_opt_in": self.double_opt_in,
            "is_test": self.is_test,
            "captured_at": self.captured_at.isoformat(),
            "touches": self.touches,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            contact=dict(data.get("contact") or {}),
            fields=dict(data.get("fields") or {}),
            channel=data["channel"],
            source=data.get("source") or "",
            first_touch=dict(data.get("first_touch") or {}),
            form_id=data.get("form_id"),
            form_type=data.get("form_type"),
            form_types=tuple(data.get("form_types") or ()),
            marketing_consent=bool(data.get("marketing_consent")),
            double_opt_in=bool(data.get("double_opt_in")),
            is_test=bool(data.get("is_test")),
            captured_at=datetime.fromisoformat(data["captured_at"]),
            touches=int(data.get("touches") or 1),
        )

    def erased(self) -> Snapshot:
        """The snapshot without the person: no contact, no form fields."""
        return replace(self, contact={}, fields={})

    @cached_property
    def contact_model(self) -> Contact:
        """The contact as the events carry it, validated once per snapshot (every event of
        a lead that leaves its facts alone keeps the snapshot)."""
        return Contact.model_validate(self.contact)


_NO_FACTS: Mapping[str, FieldValue] = MappingProxyType({})


# Signals, results and score updates are made for every event and only read: immutable named
# tuples, cheaper to make than frozen dataclasses.
class Signal(NamedTuple):
    """One scoring input: which engagement rules it counts for, and what they can test."""

    event_id: str
    event_type: str
    kinds: tuple[str, ...]
    occurred_at: datetime
    facts: Mapping[str, FieldValue] = _NO_FACTS
    captured: LeadCaptured | None = None
    consent: Consent | None = None


def signal_of(event_id: str, data: Event, sent_at: datetime) -> Signal | None:
    """The signal of an event scoring consumes (None for others).

    `sent_at` is the event's CloudEvents time: a submission happened then (its
    `captured_at` is the lead's first capture, the speed-to-lead clock).
    """
    if isinstance(data, LeadCaptured):
        touch = data.attribution
        kinds: tuple[str, ...] = ("submission",)
        if not data.is_new_lead or data.touch_number > 1:
            kinds += ("repeat_visit",)
        facts: dict[str, FieldValue] = {
            "form_id": data.form_id,
            "form_type": data.form_type,
            "channel": data.channel,
            "source": data.source,
            "utm_source": touch.utm_source,
            "utm_medium": touch.utm_medium,
            "utm_campaign": touch.utm_campaign,
            "promo_code": touch.promo_code,
        }
        return Signal(event_id, data.TYPE, kinds, sent_at, facts, captured=data)
    if isinstance(data, LeadEngaged):
        facts = {"sequence_id": data.sequence_id, "step": data.step, "link_id": data.link_id}
        consent: Consent | None = "confirmed" if data.kind == "confirm" else None
        return Signal(event_id, data.TYPE, (data.kind,), data.occurred_at, facts, consent=consent)
    if isinstance(data, LeadUnsubscribed):
        return Signal(
            event_id,
            data.TYPE,
            ("unsubscribe",),
            data.occurred_at,
            {"method": data.method},
            consent="withdrawn",
        )
    return None


def signal_from_log(
    event_id: str, event_type: str, payload: Mapping[str, Any], occurred_at: datetime
) -> Signal | None:
    """The signal of a logged event."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        return None
    return signal_of(event_id, model.model_validate(payload), occurred_at)


def _merge_contact(known: Mapping[str, Any], new: Contact) -> dict[str, Any]:
    values = dict(known)
    for name, value in new.model_dump().items():
        if value and not (name in ("email", "phone") and values.get(name)):
            values[name] = value
    return values


def observe(snapshot: Snapshot | None, signal: Signal) -> Snapshot | None:
    """The snapshot after this signal: merged contact and fields, consent, form types.

    Consent: `marketing_consent` says consent was given; `double_opt_in` says it
    still waits for its confirmation click. The click (`confirm`) clears the
    wait; an unsubscribe withdraws consent until a later submission gives it again.
    """
    captured = signal.captured
    if captured is not None:
        if snapshot is None:
            consent = captured.marketing_consent
            return Snapshot(
                contact=captured.contact.model_dump(mode="json"),
                fields=dict(captured.fields),
                channel=captured.first_touch.channel,
                source=captured.first_touch.source,
                first_touch=captured.first_touch.model_dump(mode="json", exclude_none=True),
                form_id=captured.form_id,
                form_type=captured.form_type,
                form_types=(captured.form_type,) if captured.form_type else (),
                marketing_consent=consent,
                double_opt_in=consent and captured.double_opt_in,
                is_test=captured.is_test,
                captured_at=captured.captured_at,
                touches=captured.touch_number,
            )
        consent, waiting = snapshot.marketing_consent, snapshot.double_opt_in
        if captured.marketing_consent and not (consent and not waiting):
            consent, waiting = True, captured.double_opt_in
        form_types = snapshot.form_types
        if captured.form_type and captured.form_type not in form_types:
            form_types = (*form_types, captured.form_type)
        return replace(
            snapshot,
            contact=_merge_contact(snapshot.contact, captured.contact),
            fields={**snapshot.fields, **captured.fields},
            form_id=captured.form_id,
            form_type=captured.form_type,
            form_types=form_types,
            marketing_consent=consent,
            double_opt_in=waiting,
            is_test=snapshot.is_test and captured.is_test,
            captured_at=min(snapshot.captured_at, captured.captured_at),
            touches=max(snapshot.touches, captured.touch_number),
        )
    if snapshot is None or signal.consent is None:
        return snapshot
    if signal.consent == "confirmed":
        return replace(snapshot, marketing_consent=True, double_opt_in=False)
    return replace(snapshot, marketing_consent=False, double_opt_in=False)


@dataclass(frozen=True)
class LeadState:
    """Everything scoring keeps about one lead."""

    lead_id: str
    snapshot: Snapshot | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)
    model_version: str | None = None
    events: int = 0
    """Events recorded for this lead (the sequence number of the last one)."""
    last: Score | None = None
    """The last score published (None before the first capture)."""
    erased: bool = False


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


def erase(state: LeadState) -> LeadState:
    """The state without the person."""
    snapshot = state.snapshot.erased() if state.snapshot else None
    return replace(state, snapshot=snapshot, erased=True)


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
    previous = update.previous
    # Validated like any event, but its reasons and contact are models validated once per
    # reason and snapshot (pydantic takes instances of a field's model as they are).
    return LeadScored.model_validate(
        {
            "lead_id": lead_id,
            "score": score.score,
            "fit": score.fit,
            "engagement": score.engagement,
            "grade": score.grade,
            "previous_grade": previous.grade if previous else None,
            "sales_ready": score.sales_ready,
            "became_sales_ready": update.became_sales_ready,
            "disqualified": score.disqualified,
            "model_version": score.model_version,
            "reasons": [r.contract for r in score.reasons],
            "cause_event_id": cause_event_id,
            "cause_type": cause_type,
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
    """What the event log keeps of an event: its body, as JSON text."""
    data = envelope.data
    return data.__pydantic_serializer__.to_json(data).decode()
