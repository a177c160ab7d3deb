"""Routing rules as pure functions: which rule, which reps may take the lead, which one does.

No I/O here. The store hands in the stored strategy state (round-robin cursor,
weighted-round-robin credits) and each rep's count of leads today; the functions
return the decision with every reason and the new state to store.

The module is over 300 lines because rule matching, rep availability and the three
strategies are one decision, read together: `decide` walks them in order.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.router.settings import WEEKDAYS, Match, Rep, RoutingConfig, Rule
from shared.views import fields_of

FieldValue = str | int | float | bool | None


@dataclass(frozen=True)
class LeadFacts:
    """What rules can match on."""

    lead_id: str
    channel: str
    country: str | None = None
    form_id: str | None = None
    form_type: str | None = None
    grade: str | None = None
    score: float | None = None
    fields: Mapping[str, FieldValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One rep of the pool and whether they could take the lead."""

    rep_id: str
    eligible: bool
    reason: str
    load_today: int = 0

    def as_dict(self) -> dict[str, Any]:
        # As `dataclasses.asdict`, without its deep copy (every field is a plain value).
        return fields_of(self, "rep_id", "eligible", "reason", "load_today")


@dataclass(frozen=True)
class Decision:
    """Who gets the lead and why."""

    rule_id: str
    strategy: str
    pool: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    rep_id: str | None
    queue: str | None
    destinations: tuple[str, ...]
    explanation: str
    new_state: dict[str, Any] | None = None
    rules_checked: tuple[str, ...] = ()

    def reason(self) -> dict[str, Any]:
        """The stored, user-visible reason of this decision."""
        return {
            "rule_id": self.rule_id,
            "rules_checked": list(self.rules_checked),
            "strategy": self.strategy,
            "pool": list(self.pool),
            "candidates": [c.as_dict() for c in self.candidates],
            "chosen": self.rep_id,
            "queue": self.queue,
            "explanation": self.explanation,
        }


FALLBACK_RULE = "fallback"


def _number(value: FieldValue) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().replace(",", "")
    if "-" in text[1:]:  # "51-200": a range answer counts as its lower bound
        text = text.split("-", 1)[0]
    text = text.rstrip("+")
    try:
        return float(text)
    except ValueError:
        return None


def _values(value: FieldValue) -> set[str]:
    if value is None:
        return set()
    parts = str(value).replace(";", ",").split(",")
    return {p.strip().lower() for p in parts if p.strip()}


def _any_of(wanted: Iterable[str], value: str | None) -> bool:
    return value is not None and value.lower() in {w.lower() for w in wanted}


def match_failure(
    match: Match, lead: LeadFacts, territories: Mapping[str, list[str]]
) -> str | None:
    """Why `lead` does not meet `match`, or None when it does."""
    country = (lead.country or "").upper() or None
    if match.country is not None and country not in match.country:
        return f"country {country or '(none)'} not in {match.country}"
    if match.territory is not None:
        codes = {c.upper() for t in match.territory for c in territories.get(t, [])}
        if country not in codes:
            return f"country {country or '(none)'} not in territories {match.territory}"
    if match.channel is not None and not _any_of(match.channel, lead.channel):
        return f"channel {lead.channel} not in {match.channel}"
    if match.form is not None and not _any_of(match.form, lead.form_id):
        return f"form {lead.form_id} not in {match.form}"
    if match.form_type is not None and not _any_of(match.form_type, lead.form_type):
        return f"form type {lead.form_type} not in {match.form_type}"
    if match.company_size is not None:
        size = _number(lead.fields.get("company_size"))
        low, high = match.company_size.min, match.company_size.max
        if size is None or (low is not None and size < low) or (high is not None and size > high):
            return f"company size {size} outside {low}..{high}"
    if match.product_interest is not None:
        interests = _values(lead.fields.get("product_interest"))
        if not interests & {p.lower() for p in match.product_interest}:
            return f"product interest not in {match.product_interest}"
    if match.grade is not None and lead.grade not in match.grade:
        return f"grade {lead.grade} not in {match.grade}"
    if match.min_score is not None and (lead.score is None or lead.score < match.min_score):
        return f"score {lead.score} below {match.min_score}"
    for name, wanted in match.fields.items():
        options = [wanted] if isinstance(wanted, str) else wanted
        if not _values(lead.fields.get(name)) & {o.lower() for o in options}:
            return f"field {name} not in {options}"
    return None


def select_rule(config: RoutingConfig, lead: LeadFacts) -> tuple[Rule | None, list[str]]:
    """The first rule whose conditions the lead meets, and why the earlier ones did not."""
    checked: list[str] = []
    for rule in config.rules:
        failure = match_failure(rule.match, lead, config.territories)
        if failure is None:
            return rule, checked
        checked.append(f"{rule.id}: {failure}")
    return None, checked


def _as_datetime(value: date | datetime, tz: ZoneInfo, end: bool) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    day = datetime(value.year, value.month, value.day, tzinfo=tz)
    return day + timedelta(days=1) if end else day


def availability(rep: Rep, now: datetime) -> str | None:
    """Why `rep` cannot take a lead at `now`, or None when they can."""
    if not rep.active:
        return "inactive"
    tz = ZoneInfo(rep.timezone)
    local = now.astimezone(tz)
    for absence in rep.out_of_office:
        start = _as_datetime(absence.start, tz, end=False)
        end = _as_datetime(absence.end, tz, end=True)
        if start <= local < end:
            return "out of office"
    hours = rep.working_hours
    if hours is not None:
        if WEEKDAYS[local.weekday()] not in hours.days:
            return f"not a working day ({WEEKDAYS[local.weekday()]})"
        if not hours.start <= local.time() < hours.end:
            return f"outside working hours ({hours.start:%H:%M}-{hours.end:%H:%M} {rep.timezone})"
    return None


def day_start(rep: Rep, now: datetime) -> datetime:
    """Midnight of `now`'s day in the rep's time zone (capacity counts from here)."""
    local = now.astimezone(ZoneInfo(rep.timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def candidates(
    pool: Sequence[str],
    reps: Mapping[str, Rep],
    now: datetime,
    load_today: Mapping[str, int],
    exclude: Iterable[str] = (),
) -> list[Candidate]:
    """Every rep of the pool with whether they can take a lead now, and why not."""
    excluded = set(exclude)
    out: list[Candidate] = []
    for rep_id in pool:
        rep = reps[rep_id]
        load = load_today.get(rep_id, 0)
        reason = "had this lead already" if rep_id in excluded else availability(rep, now)
        if reason is None and rep.max_open_per_day is not None and load >= rep.max_open_per_day:
            reason = f"at capacity ({load}/{rep.max_open_per_day} today)"
        out.append(Candidate(rep_id, reason is None, reason or "available", load))
    return out


def pick_round_robin(
    pool: Sequence[str], eligible: set[str], state: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """The next eligible rep after the stored cursor; the cursor moves past them."""
    start = int(state.get("next", 0)) % len(pool) if pool else 0
    for step in range(len(pool)):
        index = (start + step) % len(pool)
        if pool[index] in eligible:
            return pool[index], {"next": (index + 1) % len(pool)}
    return None, dict(state)


def pick_weighted(
    pool: Sequence[str], eligible: set[str], weights: Mapping[str, int], state: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """Smooth weighted round-robin (as nginx): shares follow the weights, evenly interleaved."""
    credit = {rep: int(state.get("credit", {}).get(rep, 0)) for rep in pool}
    active = [rep for rep in pool if rep in eligible]
    if not active:
        return None, {"credit": credit}
    total = sum(weights[rep] for rep in active)
    for rep in active:
        credit[rep] += weights[rep]
    chosen = max(active, key=lambda rep: (credit[rep], -pool.index(rep)))
    credit[chosen] -= total
    return chosen, {"credit": credit}


def pick_capacity(
    pool: Sequence[str],
    eligible: set[str],
    capacity: Mapping[str, int | None],
    load_today: Mapping[str, int],
    state: Mapping[str, Any],
) -> tuple[str | None, dict[str, Any]]:
    """The rep with the most room left today (share of capacity); ties in round-robin order."""
    active = [rep for rep in pool if rep in eligible]
    if not active:
        return None, dict(state)
    start = int(state.get("next", 0)) % len(pool)
    order = {rep: (pool.index(rep) - start) % len(pool) for rep in pool}

    def used(rep: str) -> float:
        limit = capacity.get(rep)
        return load_today.get(rep, 0) / limit if limit else float(load_today.get(rep, 0))

    chosen = min(active, key=lambda rep: (used(rep), order[rep]))
    return chosen, {"next": (pool.index(chosen) + 1) % len(pool)}


def decide(
    config: RoutingConfig,
    lead: LeadFacts,
    now: datetime,
    state_of: Mapping[str, Mapping[str, Any]],
    load_today: Mapping[str, int],
    exclude: Iterable[str] = (),
) -> Decision:
    """Assign `lead`: the first matching rule's pool and strategy, else the fallback."""
    rule, checked = select_rule(config, lead)
    if rule is None:
        return _fallback(config, now, load_today, checked, "no rule matched", exclude)
    pool = tuple(rule.reps)
    found = candidates(pool, config.reps, now, load_today, exclude)
    eligible = {c.rep_id for c in found if c.eligible}
    state = state_of.get(rule.id, {})
    if rule.strategy == "weighted":
        weights = {rep: config.reps[rep].weight for rep in pool}
        chosen, new_state = pick_weighted(pool, eligible, weights, state)
    elif rule.strategy == "capacity":
        limits = {rep: config.reps[rep].max_open_per_day for rep in pool}
        chosen, new_state = pick_capacity(pool, eligible, limits, load_today, state)
    else:
        chosen, new_state = pick_round_robin(pool, eligible, state)
    if chosen is None:
        return _fallback(
            config,
            now,
            load_today,
            [*checked],
            f"rule {rule.id} matched but no rep of its pool can take the lead",
            exclude,
            matched=rule,
            pool_candidates=found,
        )
    return Decision(
        rule_id=rule.id,
        strategy=rule.strategy,
        pool=pool,
        candidates=tuple(found),
        rep_id=chosen,
        queue=None,
        destinations=tuple(rule.destinations),
        explanation=f"rule {rule.id} matched; {rule.strategy} chose {chosen}",
        new_state=new_state,
        rules_checked=tuple(checked),
    )


def _fallback(
    config: RoutingConfig,
    now: datetime,
    load_today: Mapping[str, int],
    checked: list[str],
    why: str,
    exclude: Iterable[str],
    matched: Rule | None = None,
    pool_candidates: list[Candidate] | None = None,
) -> Decision:
    fallback = config.fallback
    destinations = tuple(matched.destinations if matched else ()) or tuple(fallback.destinations)
    found = list(pool_candidates or [])
    if fallback.rep:
        found += candidates([fallback.rep], config.reps, now, load_today)
        return Decision(
            rule_id=matched.id if matched else FALLBACK_RULE,
            strategy="fallback",
            pool=tuple(c.rep_id for c in found),
            candidates=tuple(found),
            rep_id=fallback.rep,
            queue=None,
            destinations=destinations,
            explanation=f"{why}; fallback owner {fallback.rep}",
            rules_checked=tuple(checked),
        )
    return Decision(
        rule_id=matched.id if matched else FALLBACK_RULE,
        strategy="fallback",
        pool=tuple(c.rep_id for c in found),
        candidates=tuple(found),
        rep_id=None,
        queue=fallback.queue,
        destinations=destinations,
        explanation=f"{why}; queued in {fallback.queue}",
        rules_checked=tuple(checked),
    )


def sla_minutes(config: RoutingConfig, rule_id: str) -> float:
    """The speed-to-lead SLA of a rule (the global one unless the rule overrides it)."""
    for rule in config.rules:
        if rule.id == rule_id and rule.sla_minutes is not None:
            return rule.sla_minutes
    return config.sla.minutes


def backoff_delay(
    attempts: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff after `attempts` failures, with equal jitter (half fixed)."""
    ceiling = min(cap, base * (2 ** max(attempts - 1, 0)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def ack_token(secret: str, assignment_id: str) -> str:
    """The token of an acknowledgement link: an HMAC of the assignment id."""
    digest = hmac.new(secret.encode(), f"ack:{assignment_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:40]


def ack_token_valid(secret: str, assignment_id: str, token: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII str, and a link can carry anything.
    return hmac.compare_digest(ack_token(secret, assignment_id).encode(), (token or "").encode())
