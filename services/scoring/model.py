"""The rule model: fit rules, engagement rules with caps and decay, grades, sales-ready.

Fit is recomputed from the lead's snapshot every time. Engagement lives in the
model's memory of the lead: per rule, the points it holds, when that was last
brought up to date, and how many events counted. Points fade with one half-life
for every rule that decays, so the decaying part of engagement is a single
exponential: the moment decay alone will change a grade is known in advance
(`Score.due_at`), and the sweep only looks at leads that are due.

The file is over 300 lines because scoring, the engagement memory, the reasons'
wording and the decay deadline all read the same tables the model compiles once
from the config; the conditions they test are in `matching.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from services.scoring.domain import Result
from services.scoring.leads import LeadState
from services.scoring.matching import Matcher
from services.scoring.rule_settings import EngagementRule
from services.scoring.scores import Grade, Reason, Score
from services.scoring.settings import ScoringConfig
from services.scoring.signals import Signal

# Scores are kept to two decimals: a falling value reads under a threshold T once it is
# below T - 0.005, a rising one reaches T from T - 0.005 up. Decay deadlines aim a hair
# past that point, so the re-score at the deadline sees the change.
_DOWN_MARGIN, _UP_MARGIN = 0.005 + 1e-6, 0.005 - 1e-6
_EPSILON = 1e-9
_NO_TIME = timedelta(0)


def _points(value: float) -> float:
    return round(value + 0.0, 2) + 0.0


class RuleModel:
    """The scoring model written in the config file."""

    def __init__(self, config: ScoringConfig) -> None:
        self.config = config
        self._version = config.model_version
        self.half_life = config.decay.half_life_days
        self.fit_rules = [(rule, Matcher(rule)) for rule in config.fit]
        # What each fit rule adds when it fires, worded once.
        self._fit_reasons = []
        for rule in config.fit:
            detail = rule.description or rule.describe()
            if rule.disqualify:
                reason = Reason(rule.id, "fit", 0.0, f"{detail}: disqualified")
            else:
                reason = Reason.of(rule.id, "fit", _points(rule.points), detail)
            self._fit_reasons.append(reason)
        self.engagement_rules = [
            (rule, Matcher(rule) if rule.field else None) for rule in config.engagement
        ]
        # Rule id → (its place in the config, whether it decays, the rule): a lead holds
        # points of a few rules, visited in the config's order.
        self._held_order = {
            rule.id: (i, rule.decay, rule) for i, rule in enumerate(config.engagement)
        }
        # (rule id, events counted) → what the rule says: worded once, not per score.
        self._details: dict[tuple[str, int], str] = {}
        # The signal's kinds → the engagement rules they count for, in the config's order.
        self._counting: dict[tuple[str, ...], list[tuple[EngagementRule, Matcher | None]]] = {}
        # What the per-score checks compare, read once from the config.
        grades = config.grades
        self._hot, self._warm = grades.hot - _EPSILON, grades.warm - _EPSILON
        self._sales_ready = [
            (
                None if w.min_score is None else w.min_score - _EPSILON,
                None if w.min_fit is None else w.min_fit - _EPSILON,
                None if w.min_engagement is None else w.min_engagement - _EPSILON,
                w.grade,
                None if w.form_type is None else frozenset(w.form_type),
            )
            for w in config.sales_ready
        ]
        # Thresholds of the engagement that matter for decay: less the fit (score
        # thresholds), or as they are (sales-ready engagement minimums); in the order the
        # deadline's candidates were always listed.
        self._engagement_thresholds: list[tuple[bool, float]] = [
            (True, grades.hot),
            (True, grades.warm),
        ]
        for when in config.sales_ready:
            if when.min_score is not None:
                self._engagement_thresholds.append((True, when.min_score))
            if when.min_engagement is not None:
                self._engagement_thresholds.append((False, when.min_engagement))

    @property
    def version(self) -> str:
        return self._version

    # Memory ------------------------------------------------------------------------------

    def _fade(self, value: float, elapsed: timedelta) -> float:
        if not self.half_life or elapsed <= _NO_TIME:
            return value
        return value * 0.5 ** (elapsed.total_seconds() / 86400 / self.half_life)

    def _rules_counting(
        self, kinds: tuple[str, ...]
    ) -> list[tuple[EngagementRule, Matcher | None]]:
        found = self._counting.get(kinds)
        if found is None:
            found = self._counting[kinds] = [
                (rule, matcher) for rule, matcher in self.engagement_rules if rule.event in kinds
            ]
        return found

    def _observe(
        self, memory: Mapping[str, Any], signal: Signal, at: datetime
    ) -> dict[str, dict[str, Any]]:
        # A rule's entry is replaced when it counts an event, never changed in place: the
        # previous memory's entries are shared, not copied.
        engagement: dict[str, dict[str, Any]] = dict(memory.get("engagement") or {})
        as_of = None
        for rule, matcher in self._rules_counting(signal.kinds):
            if matcher is not None and not matcher(signal.facts):
                continue
            held = engagement.get(rule.id)
            value = float(held["value"]) if held else 0.0
            if held and rule.decay:
                value = self._fade(value, at - datetime.fromisoformat(held["as_of"]))
            # An event that arrives late has already lost part of its points.
            added = self._fade(rule.points, at - signal.occurred_at) if rule.decay else rule.points
            value += added
            if rule.max_points is not None:
                value = (
                    min(value, rule.max_points) if rule.points > 0 else max(value, -rule.max_points)
                )
            if as_of is None:
                as_of = at.isoformat()
            engagement[rule.id] = {
                "value": value,
                "as_of": as_of,
                "count": (int(held["count"]) if held else 0) + 1,
            }
        return engagement

    # Scoring -----------------------------------------------------------------------------

    def score(self, state: LeadState, signal: Signal | None, at: datetime) -> Result:
        """Fold `signal` into the lead's engagement memory and score the lead as of `at`."""
        memory = dict(state.memory)
        if signal is not None:
            memory["engagement"] = self._observe(memory, signal, at)
        # Fit depends on the snapshot's facts alone, and only a submission changes those
        # (a submission always publishes, so the last score saw the facts as they are).
        last = state.last
        fit_of = (
            last
            if last is not None
            and last.model_version == self._version
            and (signal is None or signal.captured is None)
            and not state.erased
            else None
        )
        return Result(memory=memory, score=self.evaluate(state, memory, at, fit_of=fit_of))

    def evaluate(
        self,
        state: LeadState,
        memory: Mapping[str, Any],
        at: datetime,
        *,
        fit_of: Score | None = None,
    ) -> Score:
        """The score of a lead as of `at`, with every rule that fired.

        `fit_of`: a score of this model on the same facts, whose fit part is reused.
        """
        if fit_of is not None:
            reasons = [r for r in fit_of.reasons if r.kind == "fit"]
            disqualified = fit_of.disqualified
        else:
            reasons, disqualified = self._fit(state)
        fit = _points(sum(r.points for r in reasons))

        held = memory.get("engagement")
        constant, fading = 0.0, 0.0
        if held:
            engaged: list[tuple[EngagementRule, float, int]] = []
            order = self._held_order
            for (_, decays, rule), entry in sorted(
                (order[rule_id], entry) for rule_id, entry in held.items() if rule_id in order
            ):
                if not entry:
                    continue
                value = float(entry["value"])
                if decays:
                    value = self._fade(value, at - datetime.fromisoformat(entry["as_of"]))
                    fading += value
                else:
                    constant += value
                engaged.append((rule, value, int(entry["count"])))
            engagement = _points(constant + fading)
            reasons += self._engagement_reasons(engaged, engagement)
        else:
            engagement = _points(0.0)
        total = _points(fit + engagement)

        grade = self.grade(total, disqualified)
        sales_ready = not disqualified and self._is_sales_ready(
            state, total, fit, engagement, grade
        )
        due = None if disqualified else self._due(fit, constant, fading, at)
        return Score(
            score=total,
            fit=fit,
            engagement=engagement,
            grade=grade,
            sales_ready=sales_ready,
            disqualified=disqualified,
            reasons=tuple(reasons),
            model_version=self._version,
            at=at,
            due_at=due,
        )

    def _is_sales_ready(
        self, state: LeadState, total: float, fit: float, engagement: float, grade: Grade
    ) -> bool:
        for min_score, min_fit, min_engagement, grades, form_types in self._sales_ready:
            if (
                (min_score is None or total >= min_score)
                and (min_fit is None or fit >= min_fit)
                and (min_engagement is None or engagement >= min_engagement)
                and (grades is None or grade in grades)
                and (
                    form_types is None
                    or (
                        state.snapshot is not None
                        and not form_types.isdisjoint(state.snapshot.form_types)
                    )
                )
            ):
                return True
        return False

    def _fit(self, state: LeadState) -> tuple[list[Reason], bool]:
        """The fit rules that fire on the lead's facts, and whether one disqualifies."""
        facts = state.snapshot.facts() if state.snapshot else {}
        reasons: list[Reason] = []
        disqualified = False
        for (fit_rule, matcher), reason in zip(self.fit_rules, self._fit_reasons, strict=True):
            if not matcher(facts):
                continue
            disqualified = disqualified or fit_rule.disqualify
            reasons.append(reason)
        return reasons, disqualified

    def grade(self, score: float, disqualified: bool = False) -> Grade:
        """hot, warm or cold by the thresholds; a disqualified lead is cold."""
        if disqualified:
            return "cold"
        if score >= self._hot:
            return "hot"
        if score >= self._warm:
            return "warm"
        return "cold"

    def _engagement_reasons(
        self, engaged: list[tuple[EngagementRule, float, int]], total: float
    ) -> list[Reason]:
        reasons: list[Reason] = []
        added = 0.0
        largest, largest_at = -1.0, 0
        for rule, value, count in engaged:
            points = _points(value)
            if points == 0:
                continue
            added += points
            # The first of the largest, as max() would pick it.
            if abs(points) > largest:
                largest, largest_at = abs(points), len(reasons)
            reasons.append(Reason.of(rule.id, "engagement", points, self._detail(rule, count)))
        # Rounding each rule to cents can miss the rounded total by a cent or two: the
        # largest reason absorbs it, so the reasons always add up to the score.
        if reasons:
            residual = _points(total - added)
            if residual:
                r = reasons[largest_at]
                reasons[largest_at] = Reason.of(
                    r.rule_id, r.kind, _points(r.points + residual), r.detail
                )
        return reasons

    def _detail(self, rule: EngagementRule, count: int) -> str:
        key = (rule.id, count)
        found = self._details.get(key)
        if found is None:
            if len(self._details) > 10_000:
                self._details.clear()
            found = self._details[key] = self._word(rule, count)
        return found

    def _word(self, rule: EngagementRule, count: int) -> str:
        if rule.description:
            head = rule.description
        else:
            head = rule.event.replace("_", " ")
            condition = rule.describe() if rule.field else ""
            if condition:
                head += f" where {condition}"
        parts = [f"{head}: {count} event(s) at {rule.points:+g}"]
        if rule.max_points is not None:
            parts.append(f"at most {rule.max_points:g}")
        if rule.decay and self.half_life:
            parts.append(f"fading by half every {self.half_life:g} days")
        return "; ".join(parts)

    def _due(self, fit: float, constant: float, fading: float, at: datetime) -> datetime | None:
        """When the fading engagement alone next crosses a threshold that matters."""
        if not self.half_life or abs(fading) < _EPSILON:
            return None
        # Thresholds on the (rounded) engagement: score thresholds less the fit, and the
        # sales-ready engagement minimums.
        days: list[float] = []
        margin = _DOWN_MARGIN if fading > 0 else _UP_MARGIN
        for less_fit, threshold in self._engagement_thresholds:
            target = (threshold - fit if less_fit else threshold) - margin
            remaining = target - constant
            if remaining == 0 or (remaining > 0) != (fading > 0) or abs(remaining) >= abs(fading):
                continue
            days.append(self.half_life * math.log2(fading / remaining))
        if not days:
            return None
        return at + timedelta(days=min(days), seconds=1)
