"""Routing rules, strategies, availability and backoff: pure functions, no I/O."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.router import domain
from services.router.settings import RoutingConfig

# A Wednesday, 10:00 in London (UTC+0 in November).
WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def config(**routing) -> RoutingConfig:
    base = {
        "reps": {"a": {}, "b": {}, "c": {}},
        "rules": [{"id": "all", "reps": ["a", "b", "c"]}],
    }
    base.update(routing)
    return RoutingConfig.model_validate(base)


def lead(**overrides) -> domain.LeadFacts:
    values = {"lead_id": "L1", "channel": "google_ads", "country": "GB", "fields": {}}
    values.update(overrides)
    return domain.LeadFacts(**values)


def route_many(cfg: RoutingConfig, count: int, now=WEDNESDAY_10) -> list[str | None]:
    states: dict[str, dict] = {}
    loads: Counter[str] = Counter()
    chosen = []
    for i in range(count):
        decision = domain.decide(cfg, lead(lead_id=f"L{i}"), now, states, loads)
        if decision.new_state is not None:
            states[decision.rule_id] = decision.new_state
        if decision.rep_id:
            loads[decision.rep_id] += 1
        chosen.append(decision.rep_id)
    return chosen


def test_round_robin_cycles_the_pool_in_order():
    assert route_many(config(), 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_weighted_follows_the_weights_evenly_interleaved():
    cfg = config(
        reps={"a": {"weight": 3}, "b": {"weight": 1}},
        rules=[{"id": "w", "reps": ["a", "b"], "strategy": "weighted"}],
    )
    chosen = route_many(cfg, 8)
    assert Counter(chosen) == {"a": 6, "b": 2}
    assert chosen[:4].count("b") == 1  # smooth: not aaaaaabb


def test_capacity_strategy_picks_the_rep_with_most_room():
    cfg = config(
        reps={"a": {"max_open_per_day": 4}, "b": {"max_open_per_day": 2}},
        rules=[{"id": "cap", "reps": ["a", "b"], "strategy": "capacity"}],
        fallback={"queue": "overflow"},
    )
    chosen = route_many(cfg, 7)
    assert Counter(chosen) == {"a": 4, "b": 2, None: 1}
    assert chosen[-1] is None


def test_capacity_limit_skips_a_full_rep_under_round_robin():
    cfg = config(reps={"a": {"max_open_per_day": 1}, "b": {}, "c": {}})
    assert route_many(cfg, 5) == ["a", "b", "c", "b", "c"]


def test_working_hours_and_out_of_office_are_skipped_with_reasons():
    cfg = config(
        reps={
            "a": {
                "timezone": "America/New_York",
                "working_hours": {"start": "09:00", "end": "17:00"},
            },
            "b": {"out_of_office": [{"from": "2026-11-24", "until": "2026-11-26"}]},
            "c": {"timezone": "Europe/London", "working_hours": {"days": ["mon", "tue", "wed"]}},
        }
    )
    decision = domain.decide(cfg, lead(), WEDNESDAY_10, {}, {})
    assert decision.rep_id == "c"
    reasons = {c.rep_id: c.reason for c in decision.candidates}
    assert reasons["a"].startswith("outside working hours")
    assert reasons["b"] == "out of office"
    thursday = domain.decide(cfg, lead(), WEDNESDAY_10 + timedelta(days=1), {}, {})
    assert {c.rep_id: c.reason for c in thursday.candidates}["c"] == "not a working day (thu)"


def test_first_matching_rule_wins_and_reasons_name_the_misses():
    cfg = config(
        territories={"emea": ["GB", "DE"]},
        rules=[
            {"id": "us", "match": {"country": ["us"]}, "reps": ["a"]},
            {
                "id": "emea-enterprise",
                "match": {"territory": ["emea"], "company_size": {"min": 100}},
                "reps": ["b"],
                "destinations": [],
            },
            {"id": "rest", "reps": ["c"]},
        ],
    )
    decision = domain.decide(cfg, lead(fields={"company_size": "120"}), WEDNESDAY_10, {}, {})
    assert (decision.rule_id, decision.rep_id) == ("emea-enterprise", "b")
    assert decision.reason()["rules_checked"] == ["us: country GB not in ['US']"]
    small = domain.decide(cfg, lead(fields={"company_size": "11-50"}), WEDNESDAY_10, {}, {})
    assert small.rule_id == "rest"


@pytest.mark.parametrize(
    ("match", "facts", "ok"),
    [
        ({"channel": ["google_ads"]}, {}, True),
        ({"channel": ["meta_lead_ads"]}, {}, False),
        ({"form": ["demo-request"]}, {"form_id": "demo-request"}, True),
        ({"form_type": ["demo_request"]}, {"form_type": "newsletter"}, False),
        (
            {"product_interest": ["Analytics"]},
            {"fields": {"product_interest": "crm; analytics"}},
            True,
        ),
        ({"product_interest": ["billing"]}, {"fields": {"product_interest": "crm"}}, False),
        ({"company_size": {"max": 50}}, {"fields": {"company_size": 120}}, False),
        ({"company_size": {"min": 10}}, {"fields": {}}, False),
        ({"grade": ["hot"]}, {"grade": "hot"}, True),
        ({"min_score": 70}, {"score": 65}, False),
        ({"fields": {"industry": ["saas", "fintech"]}}, {"fields": {"industry": "SaaS"}}, True),
    ],
)
def test_match_conditions(match, facts, ok):
    cfg = config(rules=[{"id": "r", "match": match, "reps": ["a"]}])
    rule, _ = domain.select_rule(cfg, lead(**facts))
    assert (rule is not None) == ok


def test_unassignable_lead_goes_to_fallback_owner_never_dropped():
    cfg = config(
        reps={"a": {"active": False}, "boss": {}},
        rules=[{"id": "r", "reps": ["a"], "destinations": []}],
        fallback={"rep": "boss"},
    )
    decision = domain.decide(cfg, lead(), WEDNESDAY_10, {}, {})
    assert decision.rep_id == "boss"
    assert "no rep of its pool can take the lead" in decision.explanation
    no_rule = config(rules=[{"id": "r", "match": {"country": ["FR"]}, "reps": ["a"]}])
    queued = domain.decide(no_rule, lead(), WEDNESDAY_10, {}, {})
    assert (queued.rep_id, queued.queue, queued.rule_id) == (None, "unassigned", "fallback")


def test_reassignment_excludes_reps_who_had_the_lead():
    decision = domain.decide(config(), lead(), WEDNESDAY_10, {"all": {"next": 0}}, {}, ["a"])
    assert decision.rep_id == "b"


def test_config_refuses_unknown_references():
    with pytest.raises(ValueError, match="unknown rep 'zed'"):
        config(rules=[{"id": "r", "reps": ["zed"]}])
    with pytest.raises(ValueError, match="unknown destination 'crm'"):
        config(rules=[{"id": "r", "reps": ["a"], "destinations": ["crm"]}])


def test_webhook_without_url_is_disabled():
    cfg = config(destinations={"hook": {"type": "webhook", "url": ""}})
    assert cfg.destination_enabled("hook") is False


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    delays = [domain.backoff_delay(n, 1.0, 30.0, rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(30.0, 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_ack_tokens_are_bound_to_the_assignment_and_secret():
    token = domain.ack_token("k", "a1")
    assert domain.ack_token_valid("k", "a1", token)
    assert not domain.ack_token_valid("k", "a2", token)
    assert not domain.ack_token_valid("other", "a1", token)


def test_a_candidate_as_stored_is_every_field_of_it():
    from dataclasses import asdict

    candidate = domain.Candidate("rep-a", False, "out of office", 3)
    assert candidate.as_dict() == asdict(candidate)
