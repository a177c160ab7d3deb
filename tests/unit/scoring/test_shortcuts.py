"""What the scoring path builds once and shares is what it would build afresh: the
lead.scored body, the reasons' JSON, matched conditions."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain import lead_scored
from services.scoring.leads import Snapshot, text_fields
from services.scoring.matching import Matcher
from services.scoring.published import publish_scored, scored_body
from services.scoring.scores import Reason, Score
from services.scoring.settings import FitRule
from shared.events import Attribution, Contact, LeadCaptured, LeadScored, encode, new_event
from tests.unit.scoring.support import T0, captured, engaged, example_model, feed, unsubscribed

MODEL = example_model()


def validated_afresh(event: LeadScored) -> LeadScored:
    """The event validated from plain values, reasons and contact included."""
    return LeadScored.model_validate(event.model_dump())


def test_a_lead_scored_is_the_event_validated_from_plain_values():
    lead = captured(fields={"company_size": "1,200", "budget": 10.5, "ok": True, "note": None})
    later = T0 + timedelta(days=3)
    events = [
        lead,
        engaged(lead.lead_id, "open"),
        engaged(lead.lead_id, "click", at=later),
        unsubscribed(lead.lead_id, at=later),
        captured(lead_id=lead.lead_id, touch_number=2, job_title="CEO"),
    ]
    _state, outcomes = feed(MODEL, events)
    published = [o for o in outcomes if o.publish]
    assert len(published) >= 3
    for outcome in published:
        event = lead_scored(
            lead.lead_id, outcome, cause_event_id="e-1", cause_type=LeadCaptured.TYPE, scored_at=T0
        )
        plain = validated_afresh(event)
        assert event == plain
        wire = encode(new_event(event, "leadflow/test"))[1]
        assert wire == encode(new_event(plain, "leadflow/test"))[1]


class _Outbox:
    """What `publish_text` of a unit of work is handed, as the record's bytes."""

    source = "leadflow/scoring"

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]], str]] = []

    def publish_text(self, *record: Any) -> None:
        topic, key, value, headers, event_id, created_at = record
        assert created_at.tzinfo is not None
        wire = [(name, text.encode()) for name, text in headers]
        self.records.append((topic, key.encode(), value, wire, event_id))


fields_values = st.dictionaries(
    st.text(max_size=8),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what the rows can keep
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
    ),
    max_size=5,
)


@settings(max_examples=100, deadline=None)
@given(
    fields_values,
    st.one_of(st.none(), st.text(max_size=12), st.just('Ünïcode "quoted" \u2028\x00\x1f title')),
)
def test_the_written_lead_scored_is_the_encoded_event(fields, job_title):
    lead = captured(fields=fields, job_title=job_title)
    later = T0 + timedelta(days=3, microseconds=500)
    events = [
        lead,
        engaged(lead.lead_id, "open"),
        engaged(lead.lead_id, "click", at=later),
        engaged(lead.lead_id, "reply", at=later),
        unsubscribed(lead.lead_id, at=later),
        captured(lead_id=lead.lead_id, touch_number=2, job_title="CEO", marketing_consent=False),
    ]
    state, outcomes = feed(MODEL, events)
    published = [o for o in outcomes if o.publish]
    assert len(published) >= 3
    assert state.snapshot is not None
    # A snapshot read back from its row writes the same part as the one built from events.
    again = Snapshot.from_dict(orjson.loads(orjson.dumps(state.snapshot.as_dict())))
    assert again.lead_scored_part == state.snapshot.lead_scored_part
    for outcome in published:
        at = later + timedelta(microseconds=outcome.state.events)
        event = lead_scored(
            lead.lead_id, outcome, cause_event_id="e-1", cause_type=LeadCaptured.TYPE, scored_at=at
        )
        body = scored_body(
            lead.lead_id, outcome, cause_event_id="e-1", cause_type=LeadCaptured.TYPE, scored_at=at
        )
        outbox = _Outbox()
        event_id = publish_scored(outbox, lead.lead_id, body)  # type: ignore[arg-type]
        [(topic, key, value, headers, written_id)] = outbox.records
        wire_key, wire_value, wire_headers = encode(new_event(event, outbox.source))
        assert uuid.UUID(event_id).version == 4 and str(uuid.UUID(event_id)) == event_id
        assert (topic, key, value, written_id) == (LeadScored.TOPIC, wire_key, wire_value, event_id)
        expected = dict(wire_headers)
        written = dict(headers)
        assert [name for name, _ in headers] == [name for name, _ in wire_headers]
        for name in ("ce_id", "ce_time"):
            del written[name], expected[name]
        assert written == expected


points = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([0.0, -0.0, 15.0, -20.0, 0.39]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b_1", "ü"]), points, st.text()), max_size=6))
def test_shared_reasons_write_the_json_of_their_values(values):
    reasons = tuple(Reason.of(rule_id, "engagement", p, detail) for rule_id, p, detail in values)
    for reason, (_rule_id, p, _detail) in zip(reasons, values, strict=True):
        assert repr(reason.points) == repr(p)
        assert reason.contract.points == p
    score = Score(1.0, 0.0, 1.0, "cold", False, False, reasons, "v", T0)
    assert score.reasons_json == orjson.dumps([r.as_dict() for r in reasons]).decode()


def test_an_int_or_negative_zero_is_never_given_a_shared_float():
    assert repr(Reason.of("r", "fit", 0.0, "d").points) == "0.0"
    assert repr(Reason.of("r", "fit", -0.0, "d").points) == "-0.0"
    Reason.of("r", "fit", 5.0, "d")
    assert repr(Reason.of("r", "fit", 5, "d").points) == "5"  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["GB", " gb ", "DE", "", "  ", "120", "1,200", "yes", "x"])))
def test_a_remembered_match_is_the_match(values):
    conditions = [
        {"field": "f", "in": ["GB", "US"]},
        {"field": "f", "equals": 120},
        {"field": "f", "equals": True},
        {"field": "f", "exists": False},
        {"field": "f", "range": {"min": 100}},
    ]
    for condition in conditions:
        remembering = Matcher(FitRule.model_validate({"id": "r", "points": 1, **condition}))
        for value in values:
            fresh = Matcher(FitRule.model_validate({"id": "r", "points": 1, **condition}))
            assert remembering({"f": value}) is fresh({"f": value})


def test_contact_and_touch_fields_are_text_kept_as_the_json_dump_gives_them():
    # The snapshot copies them without the serializer: that holds while every field is
    # text (or None).
    for model in (Contact, Attribution):
        for name, field in model.model_fields.items():
            assert field.annotation == str | None or field.annotation is str, (model, name)
    contact = Contact(email="ada@example.com", first_name="Ada", country="GB")
    assert text_fields(contact) == contact.model_dump(mode="json")
    assert list(text_fields(contact)) == list(contact.model_dump(mode="json"))
    touch = Attribution(channel="direct", source="form", utm_source="x")
    plain = {k: v for k, v in touch if v is not None}
    assert plain == touch.model_dump(mode="json", exclude_none=True)
