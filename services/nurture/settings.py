"""Nurture's configuration: the `nurture` section (sequences, SMTP, quiet hours, caps).

Sequences are tried in the order they are written; the first whose entry
conditions a lead meets enrolls it. Templates are checked when the config is
loaded (`leadflow config check` renders every step with a sample lead), so a
typo in a template name or a Jinja error names its line instead of failing at
send time.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.config import ConfigError, ConfigProblem, RawConfig, StrictModel

PACKAGED_TEMPLATES = Path(__file__).parent / "templates"
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

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> timedelta:
    """`90`, `"90s"`, `"15m"`, `"2h"`, `"3d"`, `"1w"` (a bare number is seconds)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or e.g. '15m', '2h', '3d'")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration: use seconds or e.g. '15m', '2h', '3d'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


def _format_duration(value: timedelta) -> str:
    return f"{int(value.total_seconds())}s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(_format_duration, return_type=str)
]


def parse_clock_time(value: Any) -> Any:
    """`"22:00"`; an unquoted 22:00 reaches us as YAML 1.1's base-60 integer 1320."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    return value


ClockTime = Annotated[time, BeforeValidator(parse_clock_time)]


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be letters, digits, '-' or '_' (at most 100 characters)"
        )
    return value


class RateLimit(StrictModel):
    """At most `messages` per `per_seconds`, shared by every nurture replica."""

    messages: int = Field(ge=1)
    per_seconds: float = Field(default=1.0, gt=0)


class SmtpConfig(StrictModel):
    """The SMTP relay nurture hands mail to."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1025, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = Field(
        default="none",
        description="none: plain (local sinks); starttls: upgrade (port 587); tls: implicit (465).",
    )
    username: str = ""
    password: str = Field(default="", repr=False)
    validate_certs: bool = True
    timeout_seconds: float = Field(default=10, gt=0)
    rate_limit: RateLimit | None = Field(
        default=None, description="The relay's sending quota (SES: 14 per second...)."
    )


class QuietHours(StrictModel):
    """No sequence email between `start` and `end` in the lead's local time."""

    start: ClockTime
    end: ClockTime
    default_timezone: str = Field(default="UTC", description="For leads whose country is unknown.")
    countries: dict[str, str] = Field(
        default_factory=dict,
        description="Country (ISO 3166-1 alpha-2) → time zone, overriding the built-in map "
        "(which takes the most populous zone of countries that span several).",
    )

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("countries")
    @classmethod
    def _known_zones(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for country, zone in value.items():
            if not re.fullmatch(r"[A-Za-z]{2}", country):
                raise ValueError(f"{country!r} is not a two-letter country code")
            out[country.upper()] = check_timezone(zone)
        return out

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: remove quiet_hours to send at any time")
        return self


class FrequencyCap(StrictModel):
    """At most `max_emails` sequence emails to one lead within any `period`."""

    max_emails: int = Field(ge=1)
    period: Duration

    @field_validator("period")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("the period must be longer than 0")
        return value


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
        for key in value:
            check_name(key, "link id")
        return value


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


class Delivery(StrictModel):
    """The send queue: batches, retries and polling."""

    max_attempts: int = Field(
        default=8, ge=1, description="SMTP attempts (temporary failures) before giving up."
    )
    backoff_seconds: float = Field(default=30, gt=0, description="First retry delay.")
    backoff_max_seconds: float = Field(default=3600, gt=0)
    poll_seconds: float = Field(
        default=1.0, gt=0, description="Fallback poll; new work wakes the scheduler at once."
    )
    batch_size: int = Field(default=20, ge=1)


class NurtureConfig(StrictModel):
    """The `nurture` section."""

    public_url: str = Field(
        default="",
        description="Base of open-pixel, click, unsubscribe and confirm links "
        "(default: LEADFLOW_PUBLIC_URL, else http://host:port).",
    )
    sender: str = Field(default="leadflow <hello@localhost>", alias="from")
    reply_to: str | None = None
    organization: str = Field(default="leadflow", description="Who the emails are from.")
    postal_address: str = Field(
        default="", description="Shown in every footer (CAN-SPAM asks for one)."
    )
    templates_dir: str | None = Field(
        default=None,
        description="Your templates (relative to the config file); the packaged ones "
        "are used for names not found there.",
    )
    nurture_test_leads: bool = Field(default=False, description="Enroll platform test leads too.")
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    delivery: Delivery = Field(default_factory=Delivery)
    quiet_hours: QuietHours | None = None
    frequency_cap: FrequencyCap | None = None
    double_opt_in: DoubleOptIn = Field(default_factory=DoubleOptIn)
    sequences: dict[str, SequenceConfig] = Field(default_factory=dict)

    @field_validator("sender", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _, address = parseaddr(value)
        if "@" not in address or any(c in value for c in "\r\n"):
            raise ValueError(f"{value!r} is not an email address ('Name <user@domain>')")
        return value

    @field_validator("sequences")
    @classmethod
    def _sequence_ids(cls, value: dict[str, SequenceConfig]) -> dict[str, SequenceConfig]:
        for key in value:
            check_name(key, "sequence id")
        return value

    @property
    def templates_path(self) -> Path | None:
        return Path(self.templates_dir) if self.templates_dir else None


def load(raw: RawConfig) -> NurtureConfig:
    """Validate nurture's section of the config file; every mistake names its line."""
    section = raw.section("nurture")
    try:
        config = NurtureConfig.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(raw.problems_from(exc, prefix=("nurture",))) from None
    if config.templates_dir:
        base = Path(raw.file).resolve().parent
        resolved = (base / config.templates_dir).resolve()
        config = config.model_copy(update={"templates_dir": str(resolved)})
        if not resolved.is_dir():
            raise ConfigError(
                [
                    ConfigProblem(
                        raw.file,
                        raw.line_of(("nurture", "templates_dir")),
                        "nurture.templates_dir",
                        f"no such directory: {resolved}",
                    )
                ]
            )
    from services.nurture.rendering import template_problems

    problems = [
        ConfigProblem(
            raw.file,
            raw.line_of(("nurture", *path)),
            ".".join(str(p) for p in ("nurture", *path)),
            message,
        )
        for path, message in template_problems(config)
    ]
    if problems:
        raise ConfigError(problems)
    return config
