"""Scoring's configuration: the `scoring` section (fit and engagement rules, grades, decay).

The model lives in the config file, nothing in code: fit rules match the lead's
contact and form fields, engagement rules match what the lead does (forms sent,
emails opened and clicked, replies, repeat visits, unsubscribes), grades and the
sales-ready rule turn the score into a decision. `model_version` is a hash of
all of it, so every score says which model produced it.

The rules themselves (conditions, fit and engagement rules) are in `rule_settings.py`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import orjson
from pydantic import Field, model_validator

from services.scoring.rule_settings import (
    EVENT_FACTS,
    FIT_FACTS,
    OPERATORS,
    EngagementRule,
    FitRule,
    Problem,
    condition_problems,
)
from services.scoring.scores import Grade
from shared.config import (
    ConfigProblem,
    CrossCheckedModel,
    Found,
    RawConfig,
    StrictModel,
    load_checked,
)


class Grades(StrictModel):
    """Score thresholds: at least `hot` is hot, at least `warm` is warm, else cold."""

    hot: float = 70
    warm: float = 35


class SalesReadyWhen(StrictModel):
    """One way to be sales-ready: every threshold given here holds."""

    min_score: float | None = None
    min_fit: float | None = None
    min_engagement: float | None = None
    grade: list[Grade] | None = Field(default=None, min_length=1)
    form_type: list[str] | None = Field(
        default=None, min_length=1, description="The lead sent a form of one of these types."
    )

    @model_validator(mode="after")
    def _something(self) -> SalesReadyWhen:
        if all(
            v is None
            for v in (self.min_score, self.min_fit, self.min_engagement, self.grade, self.form_type)
        ):
            raise ValueError(
                "give at least one of min_score, min_fit, min_engagement, grade, form_type"
            )
        return self


class Decay(StrictModel):
    """Engagement points fade: half of them are gone after `half_life_days`."""

    half_life_days: float | None = Field(
        default=None, gt=0, description="None: engagement never fades."
    )
    sweep_minutes: float = Field(
        default=15, gt=0, description="How often leads whose grade decay changes are re-scored."
    )
    sweep_batch: int = Field(default=500, ge=1, description="Leads re-scored per transaction.")


class ScoringConfig(CrossCheckedModel):
    """The `scoring` section."""

    grades: Grades = Field(default_factory=Grades)
    sales_ready: list[SalesReadyWhen] = Field(
        default_factory=list, description="Any one of these makes a lead sales-ready."
    )
    decay: Decay = Field(default_factory=Decay)
    fit: list[FitRule] = Field(default_factory=list)
    engagement: list[EngagementRule] = Field(default_factory=list)

    def problems(self) -> Found:
        """Rules that contradict each other or the grades."""
        return model_problems(self)

    @property
    def model_version(self) -> str:
        """A short hash of everything that changes a score (not the sweep's schedule)."""
        canonical = self.model_dump(
            mode="json", by_alias=True, exclude={"decay": {"sweep_minutes", "sweep_batch"}}
        )
        digest = hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS))
        return digest.hexdigest()[:12]

    def max_fit(self) -> float:
        """The most fit points a lead can have."""
        return sum(r.points for r in self.fit if r.points > 0 and not r.disqualify)

    def max_engagement(self) -> float:
        """The most engagement points a lead can hold (inf when a rule has no cap)."""
        total = 0.0
        for rule in self.engagement:
            if rule.points > 0:
                total += rule.max_points if rule.max_points is not None else math.inf
        return total


def model_problems(config: ScoringConfig) -> list[Problem]:
    """Mistakes the field types cannot catch (path inside the section, message)."""
    problems: list[Problem] = []
    seen: set[str] = set()
    ids = [("fit", i, r.id) for i, r in enumerate(config.fit)]
    ids += [("engagement", i, r.id) for i, r in enumerate(config.engagement)]
    for kind, i, rule_id in ids:
        if rule_id in seen:
            problems.append(((kind, i, "id"), f"duplicate rule id {rule_id!r}"))
        seen.add(rule_id)
    if config.grades.hot <= config.grades.warm:
        problems.append(
            (
                ("grades", "hot"),
                f"hot ({config.grades.hot:g}) must be above warm ({config.grades.warm:g})",
            )
        )
    for i, fit_rule in enumerate(config.fit):
        path: tuple[str | int, ...] = ("fit", i)
        problems += condition_problems(
            path,
            fit_rule.field,
            fit_rule.operators(),
            {"equals": fit_rule.equals, "in": fit_rule.in_},
            FIT_FACTS,
            custom_allowed=True,
        )
        if fit_rule.points == 0 and not fit_rule.disqualify:
            problems.append(((*path, "id"), "give points (not 0) or disqualify: true"))
        if fit_rule.disqualify and fit_rule.points:
            problems.append(((*path, "points"), "a disqualifying rule gives no points"))
    for i, rule in enumerate(config.engagement):
        path = ("engagement", i)
        problems += condition_problems(
            path,
            rule.field,
            rule.operators(),
            {"equals": rule.equals, "in": rule.in_},
            EVENT_FACTS[rule.event],
            custom_allowed=False,
        )
        if rule.points == 0:
            problems.append(((*path, "points"), "points must not be 0"))
        elif rule.max_points is not None and rule.max_points < abs(rule.points):
            problems.append(
                (
                    (*path, "max_points"),
                    f"max_points ({rule.max_points:g}) is below one event's "
                    f"{abs(rule.points):g} points",
                )
            )
    if not config.fit and not config.engagement:
        return problems  # no rules: every lead is cold, and that is a valid model
    max_fit, max_engagement = config.max_fit(), config.max_engagement()
    max_score = max_fit + max_engagement
    for name in ("hot", "warm"):
        threshold = getattr(config.grades, name)
        if threshold > max_score:
            problems.append(
                (
                    ("grades", name),
                    f"{name} ({threshold:g}) is out of reach: the most a lead can score "
                    f"is {max_score:g}",
                )
            )
    for i, when in enumerate(config.sales_ready):
        for name, most in (
            ("min_score", max_score),
            ("min_fit", max_fit),
            ("min_engagement", max_engagement),
        ):
            value = getattr(when, name)
            if value is not None and value > most:
                problems.append(
                    (
                        ("sales_ready", i, name),
                        f"{name} ({value:g}) is out of reach: the most is {most:g}",
                    )
                )
    return problems


def form_type_problems(config: ScoringConfig, forms: Any) -> list[Problem]:
    """Form types and ids the rules name but no form in `forms` has."""
    if not isinstance(forms, dict):
        return []
    declared = {
        name: form for name, form in forms.items() if name != "platforms" and isinstance(form, dict)
    }
    if not declared:
        return []
    types = {str(form.get("type")) for form in declared.values() if form.get("type")}
    problems: list[Problem] = []

    def check(path: tuple[str | int, ...], value: Any, known: set[str], what: str) -> None:
        if isinstance(value, str) and value not in known:
            problems.append(
                (path, f"no form has {what} {value!r} (known: {', '.join(sorted(known))})")
            )

    for i, rule in enumerate(config.engagement):
        if rule.field in ("form_type", "form_id"):
            known = types if rule.field == "form_type" else set(declared)
            if rule.equals is not None:
                check(("engagement", i, "equals"), rule.equals, known, rule.field)
            for j, value in enumerate(rule.in_ or []):
                check(("engagement", i, "in", j), value, known, rule.field)
    for i, when in enumerate(config.sales_ready):
        for j, value in enumerate(when.form_type or []):
            check(("sales_ready", i, "form_type", j), value, types, "form_type")
    return problems


UNKNOWN_KEY_HINT = (
    "unknown setting {key!r} (operators: " + ", ".join(OPERATORS) + "; see docs/scoring.md)"
)


def _reworded(problem: ConfigProblem) -> ConfigProblem:
    """Pydantic's problem in the words of docs/scoring.md."""
    parts = problem.path.split(".")
    message = problem.message
    if (
        message.startswith("unknown field")
        and len(parts) == 4
        and parts[1] in ("fit", "engagement")
    ):
        message = UNKNOWN_KEY_HINT.format(key=parts[-1])
    elif message.startswith("Value error, "):
        message = message[13:]
    return ConfigProblem(problem.file, problem.line, problem.path, message)


def load(raw: RawConfig) -> ScoringConfig:
    """Validate the `scoring` section of the config file; every mistake names its line."""
    return load_checked(
        raw,
        "scoring",
        ScoringConfig,
        reword=_reworded,
        more=lambda config: form_type_problems(config, raw.section("forms")),
    )
