"""The `nurture` section's model: sender, SMTP, delivery, quiet hours, caps, sequences.

Sequences are tried in the order they are written; the first whose entry
conditions a lead meets enrolls it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from services.nurture.config_types import ClockTime, Duration, check_keys
from services.nurture.sequence_config import DoubleOptIn, SequenceConfig
from shared.config import StrictModel, TimeZoneName, check_timezone

PACKAGED_TEMPLATES = Path(__file__).parent / "templates"


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
    default_timezone: TimeZoneName = Field(
        default="UTC", description="For leads whose country is unknown."
    )
    countries: dict[str, str] = Field(
        default_factory=dict,
        description="Country (ISO 3166-1 alpha-2) → time zone, overriding the built-in map "
        "(which takes the most populous zone of countries that span several).",
    )

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
        return check_keys(value, "sequence id")

    @property
    def templates_path(self) -> Path | None:
        return Path(self.templates_dir) if self.templates_dir else None
