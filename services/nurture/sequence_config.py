"""The sequences of the `nurture` section: who enters, the steps, what ends a run, re-entry,
and the double opt-in email."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from services.nurture.config_types import Duration, check_keys, check_name
from shared.config import StrictModel

ExitReason = Literal[
    "sales_ready", "unsubscribed", "bounced", "replied", "converted", "erased", "disqualified"
]
EXIT_REASONS: tuple[str, ...] = (
    "sales_ready",
    "unsubscribed",
    "bounced",
    "replied",
    "converted",
    "erased",
    "disqualified",
)
# The law and the person decide these, not the sequence: they always end it.
ALWAYS_EXIT = frozenset({"unsubscribed", "bounced", "erased"})


class Entry(StrictModel):
    """Who enters: all given conditions must hold; a list means "any of".

    Marketing consent is always required (confirmed, for double opt-in forms).
    """

    grades: list[Literal["warm", "cold"]] = Field(
        default_factory=lambda: ["warm", "cold"],  # type: ignore[arg-type]
        min_length=1,
        description="Hot leads go to sales, not to nurture.",
    )
    channels: list[str] | None = None
    forms: list[str] | None = Field(default=None, description="Form ids.")
    form_types: list[str] | None = None
    countries: list[str] | None = None

    @field_validator("countries", mode="after")
    @classmethod
    def _upper(cls, value: list[str] | None) -> list[str] | None:
        return [c.upper() for c in value] if value else value


class Link(StrictModel):
    """A piece of content a step links to."""

    url: str
    title: str | None = None

    @field_validator("url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an absolute http(s) URL")
        return value


def _link(value: Any) -> Any:
    return {"url": value} if isinstance(value, str) else value


class Step(StrictModel):
    """One email of a sequence, sent `delay` after the previous one (or after enrollment)."""

    id: str | None = Field(default=None, description="Default: step-<number>.")
    delay: Duration = timedelta(0)
    template: str = Field(description="<template>.html.j2 and <template>.txt.j2.")
    subject: str = Field(min_length=1, max_length=250, description="A Jinja template (text).")
    preheader: str | None = Field(
        default=None, max_length=250, description="The preview line shown after the subject."
    )
    links: dict[str, Annotated[Link, BeforeValidator(_link)]] = Field(
        default_factory=dict,
        description="link id → URL (or {url, title}); templates use {{ links.<id> }}.",
    )

    @field_validator("template")
    @classmethod
    def _template_name(cls, value: str) -> str:
        return check_name(value, "template")

    @field_validator("links")
    @classmethod
    def _link_ids(cls, value: dict[str, Link]) -> dict[str, Link]:
        return check_keys(value, "link id")


class Reentry(StrictModel):
    """May a lead go through the sequence again?"""

    policy: Literal["never", "after_completion", "always"] = Field(
        default="never",
        description="never: once per lead; after_completion: again once the previous run "
        "finished all its steps; always: again after any ending (unsubscribes and bounces "
        "excepted: they stop all email for good).",
    )
    cooldown: Duration = Field(
        default=timedelta(days=30), description="Time since the previous run ended."
    )


class SequenceConfig(StrictModel):
    """An email sequence: who enters, what they get and when, and what ends it."""

    name: str | None = None
    enabled: bool = True
    entry: Entry = Field(default_factory=Entry)
    steps: list[Step] = Field(min_length=1)
    exit_on: list[ExitReason] = Field(
        default_factory=lambda: list(EXIT_REASONS),  # type: ignore[arg-type]
        description="unsubscribed, bounced and erased always end a sequence, listed or not.",
    )
    reentry: Reentry = Field(default_factory=Reentry)

    @model_validator(mode="after")
    def _unique_step_ids(self) -> SequenceConfig:
        seen: set[str] = set()
        for number in range(1, len(self.steps) + 1):
            step_id = self.step_id(number)
            check_name(step_id, "step id")
            if step_id in seen:
                raise ValueError(f"duplicate step id {step_id!r}")
            seen.add(step_id)
        return self

    def step_id(self, number: int) -> str:
        """The id of step `number` (1-based)."""
        return self.steps[number - 1].id or f"step-{number}"

    def exits_on(self, reason: str) -> bool:
        return reason in ALWAYS_EXIT or reason in self.exit_on


class DoubleOptIn(StrictModel):
    """The confirmation email of forms that require double opt-in."""

    template: str = "confirm"
    subject: str = Field(default="Please confirm your subscription", min_length=1)
    token_valid: Duration = Field(
        default=timedelta(days=7), description="How long the confirmation link works."
    )
    resend_after: Duration = Field(
        default=timedelta(days=1),
        description="A new submission sends a new confirmation email after this long.",
    )
    confirmed_url: str | None = Field(
        default=None, description="Where the browser goes after confirming (default: a page)."
    )

    @field_validator("template")
    @classmethod
    def _template_name(cls, value: str) -> str:
        return check_name(value, "template")
