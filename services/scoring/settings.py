"""Scoring's configuration: the `scoring` section (fit and engagement rules, grades, decay).

The model lives in the config file, nothing in code: fit rules match the lead's
contact and form fields, engagement rules match what the lead does (forms sent,
emails opened and clicked, replies, repeat visits, unsubscribes), grades and the
sales-ready rule turn the score into a decision. `model_version` is a hash of
all of it, so every score says which model produced it.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Literal

import orjson
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from shared.config import ConfigError, ConfigProblem, RawConfig, StrictModel

Grade = Literal["hot", "warm", "cold"]
EventKind = Literal[
    "submission", "repeat_visit", "open", "click", "reply", "confirm", "unsubscribe"
]
Scalar = str | int | float | bool

OPERATORS = ("equals", "in", "contains", "regex", "range", "exists")

CONTACT_FACTS = (
    "email",
    "email_domain",
    "phone",
    "first_name",
    "last_name",
    "company",
    "job_title",
    "country",
)
TOUCH_FACTS = ("channel", "source", "utm_source", "utm_medium", "utm_campaign", "promo_code")
FIT_FACTS = (*CONTACT_FACTS, *TOUCH_FACTS)
CUSTOM_PREFIX = "fields."

SUBMISSION_FACTS = ("form_id", "form_type", *TOUCH_FACTS)
EMAIL_FACTS = ("sequence_id", "step", "link_id")
EVENT_FACTS: dict[str, tuple[str, ...]] = {
    "submission": SUBMISSION_FACTS,
    # A repeat visit is a repeat submission (capture) or a tracked return (nurture).
    "repeat_visit": (*SUBMISSION_FACTS, *EMAIL_FACTS),
    "open": EMAIL_FACTS,
    "click": EMAIL_FACTS,
    "reply": EMAIL_FACTS,
    "confirm": EMAIL_FACTS,
    "unsubscribe": ("method",),
}


class Range(StrictModel):
    """A numeric range, bounds included; either bound may be left out."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self


class Condition(StrictModel):
    """A test on one field: exactly one of the operators."""

    field: str | None = Field(
        default=None,
        min_length=1,
        description="A lead fact (job_title, country, email_domain...) or fields.<name>.",
    )
    equals: Scalar | None = Field(default=None, description="Equal (text: case-insensitive).")
    in_: list[Scalar] | None = Field(
        default=None, alias="in", min_length=1, description="Equal to any of these."
    )
    contains: str | list[str] | None = Field(
        default=None, description="Contains this text (or any of these), case-insensitive."
    )
    regex: str | None = Field(default=None, description="Python regex, case-insensitive search.")
    range: Range | None = Field(default=None, description="A number within min..max.")
    exists: bool | None = Field(default=None, description="true: given and not empty.")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"bad regular expression: {exc}") from None
        return value

    @field_validator("contains")
    @classmethod
    def _non_empty_text(cls, value: str | list[str] | None) -> str | list[str] | None:
        texts = [value] if isinstance(value, str) else value
        if texts is not None and (not texts or any(not t.strip() for t in texts)):
            raise ValueError("contains needs non-empty text")
        return value

    def operators(self) -> list[str]:
        """The operators given."""
        values = {
            "equals": self.equals,
            "in": self.in_,
            "contains": self.contains,
            "regex": self.regex,
            "range": self.range,
            "exists": self.exists,
        }
        return [name for name, value in values.items() if value is not None]

    def describe(self) -> str:
        """The condition in words, for explanations."""
        if self.equals is not None:
            return f"{self.field} = {self.equals!r}"
        if self.in_ is not None:
            shown = ", ".join(str(v) for v in self.in_[:5])
            more = f", … ({len(self.in_)} values)" if len(self.in_) > 5 else ""
            return f"{self.field} in [{shown}{more}]"
        if self.contains is not None:
            texts = [self.contains] if isinstance(self.contains, str) else self.contains
            return f"{self.field} contains " + " or ".join(repr(t) for t in texts)
        if self.regex is not None:
            return f"{self.field} matches /{self.regex}/"
        if self.range is not None:
            low = "" if self.range.min is None else f"{self.range.min:g}"
            high = "" if self.range.max is None else f"{self.range.max:g}"
            return f"{self.field} in {low}..{high}"
        if self.exists is not None:
            return f"{self.field} {'is given' if self.exists else 'is missing'}"
        return ""


class FitRule(Condition):
    """Who the lead is: points (or disqualification) while the condition holds."""

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = Field(default=None, description="Shown in explanations.")
    field: str = Field(  # type: ignore[assignment]
        min_length=1,
        description="A lead fact (job_title, country, email_domain...) or fields.<name>.",
    )
    points: float = Field(default=0, description="Added once while the condition holds.")
    disqualify: bool = Field(
        default=False, description="The lead is never sales-ready and graded cold."
    )


class EngagementRule(Condition):
    """What the lead does: points per matching event, up to a cap, fading with decay."""

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = Field(default=None, description="Shown in explanations.")
    event: EventKind = Field(description="Which events count.")
    points: float = Field(description="Per matching event; negative to subtract.")
    max_points: float | None = Field(
        default=None,
        gt=0,
        description="Cap of what this rule holds at once (for a negative rule: of its size).",
    )
    decay: bool = Field(default=True, description="false: these points never fade.")


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


class ScoringConfig(StrictModel):
    """The `scoring` section."""

    grades: Grades = Field(default_factory=Grades)
    sales_ready: list[SalesReadyWhen] = Field(
        default_factory=list, description="Any one of these makes a lead sales-ready."
    )
    decay: Decay = Field(default_factory=Decay)
    fit: list[FitRule] = Field(default_factory=list)
    engagement: list[EngagementRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ScoringConfig:
        if info.context and info.context.get("checked_later"):
            return self
        problems = model_problems(self)
        if problems:
            raise ValueError("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
        return self

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


Problem = tuple[tuple[str | int, ...], str]


def _check_condition(
    path: tuple[str | int, ...],
    field: str | None,
    operators: list[str],
    values: dict[str, Any],
    allowed: tuple[str, ...],
    custom_allowed: bool,
) -> list[Problem]:
    problems: list[Problem] = []
    if field is None:
        if operators:
            problems.append(((*path, operators[0]), f"{operators[0]} needs a field to test"))
        return problems
    if len(operators) != 1:
        given = ", ".join(operators) or "none"
        problems.append(
            ((*path, "field"), f"give exactly one operator of {', '.join(OPERATORS)} (got {given})")
        )
    known = field in allowed or (custom_allowed and field.startswith(CUSTOM_PREFIX))
    if custom_allowed and field == CUSTOM_PREFIX:
        known = False
    if not known:
        hint = f"one of {', '.join(allowed)}"
        if custom_allowed:
            hint += f", or {CUSTOM_PREFIX}<name> for a form field"
        problems.append(((*path, "field"), f"unknown field {field!r} ({hint})"))
    elif not field.startswith(CUSTOM_PREFIX):
        # YAML 1.1 reads NO, yes, on, off... as booleans: a country list with NO in it
        # would silently lose Norway.
        for name in ("equals", "in"):
            value = values.get(name)
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, bool):
                    where = (*path, name, i) if isinstance(value, list) else (*path, name)
                    problems.append(
                        (where, "YAML read this value as true/false: put it in quotes ('NO')")
                    )
    return problems


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
        problems += _check_condition(
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
        problems += _check_condition(
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


def load(raw: RawConfig) -> ScoringConfig:
    """Validate the `scoring` section of the config file; every mistake names its line."""
    section = raw.section("scoring")
    try:
        config = ScoringConfig.model_validate(section, context={"checked_later": True})
    except ValidationError as exc:
        problems = []
        for problem in raw.problems_from(exc, prefix=("scoring",)):
            parts = problem.path.split(".")
            if (
                problem.message.startswith("unknown field")
                and len(parts) == 4
                and parts[1] in ("fit", "engagement")
            ):
                problem = ConfigProblem(
                    problem.file,
                    problem.line,
                    problem.path,
                    UNKNOWN_KEY_HINT.format(key=parts[-1]),
                )
            elif problem.message.startswith("Value error, "):
                problem = ConfigProblem(
                    problem.file, problem.line, problem.path, problem.message[13:]
                )
            problems.append(problem)
        raise ConfigError(problems) from None
    found = model_problems(config) + form_type_problems(config, raw.section("forms"))
    if found:
        raise ConfigError(
            [
                ConfigProblem(
                    raw.file,
                    raw.line_of(("scoring", *path)),
                    ".".join(str(p) for p in ("scoring", *path)),
                    message,
                )
                for path, message in found
            ]
        )
    return config
