"""The rule model and the example model in leadflow.example.yaml: grades, reasons, caps, decay."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain import lead_scored, rebuild, reevaluate, replayed, rescore
from services.scoring.leads import LeadState
from services.scoring.matching import Matcher, number
from services.scoring.model import RuleModel
from services.scoring.scores import Score
from services.scoring.settings import FitRule, ScoringConfig
from services.scoring.signals import signal_of
from shared.events import LeadCaptured, LeadScored, encode, new_event
from tests.unit.scoring.support import (
    T0,
    captured,
    engaged,
    example_config,
    example_model,
    feed,
    signal,
    unsubscribed,
)

MODEL = example_model()


def last(events: list[Any], at=T0, model: RuleModel = MODEL) -> tuple[LeadState, Score]:
    state, _outcomes = feed(model, events, at)
    assert state.last is not None
    return state, state.last


def assert_explained(score: Score) -> None:
    """The reasons add up to the score, the fit and the engagement."""
    fit = [r.points for r in score.reasons if r.kind == "fit"]
    engagement = [r.points for r in score.reasons if r.kind == "engagement"]
    assert round(sum(fit), 2) == score.fit
    assert round(sum(engagement), 2) == score.engagement
    assert round(sum(fit) + sum(engagement), 2) == score.score
    assert score.score == round(score.fit + score.engagement, 2)


def download(**overrides: Any) -> LeadCaptured:
    values: dict[str, Any] = {
        "form_id": "guide-download",
        "form_type": "download",
        "email": "sam@gmail.com",
        "job_title": None,
        "country": None,
        "fields": {},
        "channel": "direct",
        "utm_source": None,
        "utm_medium": None,
    }
    return captured(**{**values, **overrides})


# The example model ------------------------------------------------------------------------


def test_a_director_asking_for_a_demo_is_hot_and_sales_ready():
    _state, outcomes = feed(MODEL, [captured()])
    (outcome,) = outcomes
    score = outcome.score
    assert score is not None and outcome.publish
    assert (score.fit, score.engagement, score.score) == (45, 30, 75)
    assert score.grade == "hot" and score.sales_ready and outcome.became_sales_ready
    assert {r.rule_id for r in score.reasons} == {
        "senior_title",
        "target_country",
        "company_size",
        "paid_search",
        "demo_request",
    }
    assert score.model_version == example_config().model_version
    assert_explained(score)


def test_guide_downloads_and_newsletters_from_free_mail_are_cold():
    _, guide = last([download()])
    _, newsletter = last([download(form_id="newsletter", form_type="newsletter")])
    assert (guide.score, guide.grade, guide.sales_ready) == (0, "cold", False)
    assert (newsletter.score, newsletter.grade, newsletter.sales_ready) == (-5, "cold", False)
    assert [r.rule_id for r in guide.reasons] == ["free_mail", "content_download"]


def test_asking_to_be_contacted_is_sales_ready_whatever_the_score():
    _state, outcomes = feed(
        MODEL,
        [
            download(
                form_id="contact-sales", form_type="contact_me", email="jo@acme.io", company="Acme"
            )
        ],
    )
    score = outcomes[0].score
    assert score is not None
    assert (score.score, score.grade) == (45, "warm")
    assert score.sales_ready and outcomes[0].became_sales_ready


def test_a_competitor_is_disqualified_cold_and_never_sales_ready():
    _, score = last(
        [
            captured(email="spy@competitor.example", company="Rival"),
            download(
                form_id="contact-sales", form_type="contact_me", email="spy@competitor.example"
            ),
        ]
    )
    assert score.disqualified and score.grade == "cold" and not score.sales_ready
    assert any(r.rule_id == "competitor" and "disqualified" in r.detail for r in score.reasons)
    assert score.due_at is None
    assert_explained(score)


def test_clicks_make_a_warm_lead_sales_ready_exactly_once():
    lead = download(email="kim@acme.io", job_title="Head of Marketing", country="DE")
    lead = download(
        lead_id=lead.lead_id,
        email="kim@acme.io",
        job_title="Head of Marketing",
        country="DE",
        fields={"company_size": "300"},
    )
    events = [lead] + [engaged(lead.lead_id, "click") for _ in range(7)]
    _, outcomes = feed(MODEL, events)
    scores = [o.score.score if o.score else None for o in outcomes]
    grades = [o.score.grade if o.score else None for o in outcomes]
    assert scores[:6] == [50, 55, 60, 65, 70, 75]
    assert grades[:6] == ["warm", "warm", "warm", "warm", "hot", "hot"]
    assert [o.became_sales_ready for o in outcomes] == [False] * 4 + [True] + [False] * 3
    # At the cap, a click changes nothing and publishes nothing.
    assert [o.publish for o in outcomes] == [True] * 6 + [False, False]


def test_engagement_never_makes_a_poor_fit_sales_ready():
    lead = download(form_id="newsletter", form_type="newsletter")
    events = [lead, *(engaged(lead.lead_id, "click") for _ in range(8))]
    events += [engaged(lead.lead_id, "reply"), engaged(lead.lead_id, "reply")]
    _, score = last(events)
    assert (score.fit, score.engagement, score.grade) == (-10, 60, "warm")
    assert not score.sales_ready


def test_a_repeat_submission_counts_as_a_repeat_visit_and_caps_hold():
    first = captured()
    again = captured(lead_id=first.lead_id, touch_number=2)
    _, outcomes = feed(MODEL, [first, again, captured(lead_id=first.lead_id, touch_number=3)])
    second, third = outcomes[1], outcomes[2]
    assert second.publish and second.score and second.score.score == 85
    assert not second.became_sales_ready  # already sales-ready
    assert third.score and third.score.score == 95  # repeat visits cap at 20, demo at 30
    opens = [engaged(first.lead_id, "open") for _ in range(12)]
    _, capped = last([first, *opens])
    assert next(r for r in capped.reasons if r.rule_id == "email_open").points == 5


def test_unsubscribing_withdraws_consent_and_costs_points_that_do_not_fade():
    lead = captured()
    state, score = last([lead, unsubscribed(lead.lead_id), unsubscribed(lead.lead_id)])
    assert state.snapshot is not None and not state.snapshot.marketing_consent
    assert next(r for r in score.reasons if r.rule_id == "unsubscribed").points == -20
    later = MODEL.evaluate(state, state.memory, T0 + timedelta(days=600))
    assert next(r for r in later.reasons if r.rule_id == "unsubscribed").points == -20


def test_double_opt_in_waits_for_the_confirmation_click():
    lead = download(form_id="newsletter", form_type="newsletter", double_opt_in=True)
    state, outcomes = feed(MODEL, [lead, engaged(lead.lead_id, "confirm")])
    first = outcomes[0].state.snapshot
    assert first is not None and (first.marketing_consent, first.double_opt_in) == (True, True)
    assert state.snapshot is not None
    assert (state.snapshot.marketing_consent, state.snapshot.double_opt_in) == (True, False)
    assert outcomes[1].publish
    # Without a rule on `confirm`, the consent change alone is published.
    plain = RuleModel(
        ScoringConfig.model_validate(
            {
                "grades": {"hot": 10, "warm": 5},
                "engagement": [{"id": "c", "event": "click", "points": 10, "max_points": 10}],
            }
        )
    )
    _, plain_outcomes = feed(plain, [lead, engaged(lead.lead_id, "confirm")])
    assert plain_outcomes[1].publish and plain_outcomes[1].score is not None
    assert plain_outcomes[1].score.score == 0


def test_engagement_before_the_capture_is_kept_and_scored_with_it():
    lead = captured()
    click = engaged(lead.lead_id, "click")
    _state, outcomes = feed(MODEL, [click, lead])
    assert not outcomes[0].publish and outcomes[0].score is None
    assert outcomes[1].publish and outcomes[1].score and outcomes[1].score.score == 80
    assert outcomes[1].previous is None and outcomes[1].became_sales_ready


# Decay ------------------------------------------------------------------------------------


def test_engagement_halves_every_half_life_and_the_deadline_is_exact():
    state, score = last([captured()])
    later = MODEL.evaluate(state, state.memory, T0 + timedelta(days=60))
    assert later.engagement == 15 and later.fit == 45
    assert score.due_at is not None
    before = MODEL.evaluate(state, state.memory, score.due_at - timedelta(minutes=1))
    after = MODEL.evaluate(state, state.memory, score.due_at)
    assert (before.grade, before.sales_ready) == ("hot", True)
    assert (after.grade, after.sales_ready) == ("warm", False)
    assert after.score < 70 <= before.score


def test_decay_lowers_a_stale_lead_and_publishes_only_the_change():
    lead = captured(country="BR", fields={})  # fit 20: title and paid search
    clicks = [engaged(lead.lead_id, "click") for _ in range(5)]
    state, score = last([lead, *clicks])
    assert (score.fit, score.engagement, score.grade, score.sales_ready) == (20, 55, "hot", True)
    assert score.due_at is not None
    quiet = reevaluate(state, MODEL, score.due_at - timedelta(hours=1))
    assert not quiet.publish and quiet.score is None
    assert quiet.state.last == replace(score, due_at=quiet.state.last.due_at)
    stale = reevaluate(state, MODEL, score.due_at)
    assert stale.publish and stale.score is not None and stale.previous is score
    assert (stale.score.grade, stale.score.sales_ready) == ("warm", False)
    assert not stale.became_sales_ready
    assert stale.score.due_at is not None and stale.score.due_at > score.due_at
    cold = reevaluate(stale.state, MODEL, stale.score.due_at)
    assert cold.publish and cold.score is not None and cold.score.grade == "cold"
    assert cold.previous == stale.score
    # Fit alone is 20: nothing decay can change any more.
    assert cold.score.due_at is None


def test_a_lead_whose_fit_keeps_it_warm_has_no_deadline_once_warm():
    state, score = last([captured()])  # fit 45 >= warm
    assert score.due_at is not None
    warm = reevaluate(state, MODEL, score.due_at)
    assert warm.score is not None and warm.score.grade == "warm"
    assert warm.score.due_at is None


def test_points_of_a_late_event_have_already_faded():
    lead = captured()
    late = engaged(lead.lead_id, "click", at=T0 - timedelta(days=60))
    _, score = last([lead, late])
    assert next(r for r in score.reasons if r.rule_id == "email_click").points == 2.5


# Replay -------------------------------------------------------------------------------


def _entries(events: list[Any], times: list[Any]) -> list[Any]:
    return [(signal(e), at) for e, at in zip(events, times, strict=True)]


def test_rebuilding_from_the_log_gives_the_live_score():
    lead = download(email="kim@acme.io", job_title="VP Sales", country="US")
    events = [lead, engaged(lead.lead_id, "open"), engaged(lead.lead_id, "click")]
    times = [T0, T0 + timedelta(days=3), T0 + timedelta(days=9)]
    state = LeadState(lead_id=lead.lead_id)
    for event, at in zip(events, times, strict=True):
        state = rescore(state, signal(event), MODEL, at, always=event is lead).state
    rebuilt = rebuild(lead.lead_id, _entries(events, times), MODEL)
    assert rebuilt.last == state.last and rebuilt.memory == state.memory
    again = replayed(state, rebuilt, MODEL, times[-1])
    assert not again.publish and again.score == state.last


def test_replay_after_a_threshold_change_regrades_only_the_affected_leads():
    config = example_config()
    strict = RuleModel(
        config.model_copy(update={"grades": config.grades.model_copy(update={"hot": 80})})
    )
    assert strict.version != MODEL.version
    hot = captured()  # 75: hot before, warm now
    hotter = captured(company="Analytical Engines")  # 80: hot either way
    cold = download()
    changed = {}
    for lead in (hot, hotter, cold):
        stored, _ = feed(MODEL, [lead])
        outcome = replayed(
            stored, rebuild(lead.lead_id, _entries([lead], [T0]), strict), strict, T0
        )
        changed[lead.lead_id] = outcome
    assert [changed[x.lead_id].publish for x in (hot, hotter, cold)] == [True, False, False]
    regraded = changed[hot.lead_id].score
    assert regraded is not None and regraded.grade == "warm" and regraded.sales_ready
    assert changed[hot.lead_id].previous is not None
    assert regraded.model_version == strict.version


# The explanation adds up, whatever happens ----------------------------------------------

KINDS = ("open", "click", "reply", "repeat_visit", "confirm")


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from((*KINDS, "unsubscribe", "capture")), st.integers(0, 400)),
        max_size=25,
    ),
    title=st.sampled_from([None, "Director", "Intern", "Chief of Staff"]),
    size=st.sampled_from([None, "12", "1,200", "abc", "500+", 75]),
)
def test_reasons_always_add_up_to_the_score(steps, title, size):
    lead = captured(job_title=title, fields={} if size is None else {"company_size": size})
    state = rescore(LeadState(lead_id=lead.lead_id), signal(lead), MODEL, T0, always=True).state
    clock = T0
    for kind, hours in steps:
        clock += timedelta(hours=hours)
        if kind == "capture":
            # A later submission may change the facts the fit rules test.
            retitled = title if hours % 2 else "Director of Sales"
            event: Any = captured(lead_id=lead.lead_id, touch_number=2, job_title=retitled)
        elif kind == "unsubscribe":
            event = unsubscribed(lead.lead_id, at=clock)
        else:
            event = engaged(lead.lead_id, kind, at=clock)
        outcome = rescore(state, signal(event, clock), MODEL, clock, always=kind == "capture")
        state = outcome.state
        assert state.last is not None
        assert_explained(state.last)
        if outcome.became_sales_ready:
            assert outcome.previous is not None and not outcome.previous.sales_ready
        if outcome.score is not None:
            # The fit part reused from the last score is the one the facts give afresh.
            assert outcome.score == MODEL.evaluate(state, state.memory, clock)
        current = MODEL.evaluate(state, state.memory, clock + timedelta(days=hours))
        assert_explained(current)


def test_a_lead_scored_reads_back_as_its_contract_says():
    lead = captured(fields={"company_size": 120, "newsletter": True, "note": None})
    _state, outcomes = feed(MODEL, [lead, engaged(lead.lead_id, "reply")])
    for outcome in outcomes:
        event = lead_scored(
            lead.lead_id, outcome, cause_event_id="e-1", cause_type=LeadCaptured.TYPE, scored_at=T0
        )
        _key, value, _headers = encode(new_event(event, "leadflow/test"))
        again = LeadScored.model_validate_json(value)
        assert again == event
        assert again.contact.email == lead.contact.email
        last = outcome.state.last
        assert last is not None
        assert [r.rule_id for r in again.reasons] == [r.rule_id for r in last.reasons]


# Conditions -------------------------------------------------------------------------------


def rule(**condition: Any) -> Matcher:
    return Matcher(FitRule.model_validate({"id": "r", "points": 1, **condition}))


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ({"field": "country", "equals": "gb"}, "GB", True),
        ({"field": "country", "in": ["US", "GB"]}, " gb ", True),
        ({"field": "country", "in": ["US", "GB"]}, "DE", False),
        ({"field": "fields.size", "equals": 120}, "120", True),
        ({"field": "fields.size", "in": [50, 100]}, 100.0, True),
        ({"field": "fields.ok", "equals": True}, "yes", True),
        ({"field": "fields.ok", "equals": False}, "on", False),
        ({"field": "job_title", "contains": "director"}, "Sales DIRECTOR", True),
        ({"field": "job_title", "contains": ["vp", "head"]}, "Head of IT", True),
        ({"field": "job_title", "regex": r"^c[eft]o$"}, "CTO", True),
        ({"field": "job_title", "regex": r"^c[eft]o$"}, "CTO Office", False),
        ({"field": "fields.size", "range": {"min": 50, "max": 500}}, "1,200", False),
        ({"field": "fields.size", "range": {"min": 50}}, "1,200", True),
        ({"field": "fields.size", "range": {"max": 50}}, "fifty", False),
        ({"field": "fields.size", "range": {"min": 500}}, "500+", True),
        ({"field": "company", "exists": True}, "Acme", True),
        ({"field": "company", "exists": True}, "  ", False),
        ({"field": "company", "exists": False}, None, True),
        ({"field": "company", "equals": "acme"}, None, False),
    ],
)
def test_operators(condition, value, expected):
    assert rule(**condition)({condition["field"]: value}) is expected


def test_numbers_are_read_from_form_text():
    assert [number(v) for v in ("120", "1,200", " 7.5 ", "500+", "n/a", True, None)] == [
        120,
        1200,
        7.5,
        500,
        None,
        None,
        None,
    ]


def test_engagement_rules_can_test_the_event():
    config = ScoringConfig.model_validate(
        {
            "grades": {"hot": 20, "warm": 10},
            "engagement": [
                {
                    "id": "pricing_click",
                    "event": "click",
                    "field": "link_id",
                    "equals": "pricing",
                    "points": 10,
                },
                {"id": "any_click", "event": "click", "points": 1, "max_points": 3},
            ],
        }
    )
    model = RuleModel(config)
    lead = captured()
    _, score = last(
        [
            lead,
            engaged(lead.lead_id, "click", link_id="blog"),
            engaged(lead.lead_id, "click", link_id="pricing"),
        ],
        model=model,
    )
    points = {r.rule_id: r.points for r in score.reasons}
    assert points == {"pricing_click": 10, "any_click": 2}
    assert score.grade == "warm"


def test_the_signal_of_a_repeat_touch_is_a_submission_and_a_repeat_visit():
    again = captured(touch_number=2)
    sent = T0 + timedelta(days=30)
    found = signal_of(str(uuid.uuid4()), again, sent)
    assert found is not None and found.kinds == ("submission", "repeat_visit")
    assert found.occurred_at == sent  # captured_at is the first capture, not this touch
