"""The rules' settings: conditions on lead facts, fit and engagement rules, and which
facts each kind of rule may test."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from shared.config import StrictModel

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


Problem = tuple[tuple[str | int, ...], str]


def condition_problems(
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
