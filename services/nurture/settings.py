"""Nurture's configuration: loading and checking the `nurture` section.

The section's model lives in config.py (sender, SMTP, delivery, quiet hours,
caps) and sequence_config.py (sequences, steps, double opt-in). Templates are
checked when the config is loaded (`leadflow config check` renders every step
with a sample lead), so a typo in a template name or a Jinja error names its
line instead of failing at send time.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from services.nurture.config import (
    PACKAGED_TEMPLATES,
    Delivery,
    FrequencyCap,
    NurtureConfig,
    QuietHours,
    RateLimit,
    SmtpConfig,
)
from services.nurture.config_types import (
    ClockTime,
    Duration,
    check_name,
    check_timezone,
    parse_clock_time,
    parse_duration,
)
from services.nurture.sequence_config import (
    ALWAYS_EXIT,
    EXIT_REASONS,
    DoubleOptIn,
    Entry,
    ExitReason,
    Link,
    Reentry,
    SequenceConfig,
    Step,
)
from services.nurture.template_check import template_problems
from shared.config import ConfigError, ConfigProblem, RawConfig

__all__ = [
    "ALWAYS_EXIT",
    "EXIT_REASONS",
    "PACKAGED_TEMPLATES",
    "ClockTime",
    "Delivery",
    "DoubleOptIn",
    "Duration",
    "Entry",
    "ExitReason",
    "FrequencyCap",
    "Link",
    "NurtureConfig",
    "QuietHours",
    "RateLimit",
    "Reentry",
    "SequenceConfig",
    "SmtpConfig",
    "Step",
    "check_name",
    "check_timezone",
    "load",
    "parse_clock_time",
    "parse_duration",
]


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
            missing = (("templates_dir",), f"no such directory: {resolved}")
            raise ConfigError(_problems(raw, [missing]))
    problems = _problems(raw, template_problems(config))
    if problems:
        raise ConfigError(problems)
    return config


def _problems(
    raw: RawConfig, found: Iterable[tuple[tuple[str | int, ...], str]]
) -> list[ConfigProblem]:
    """Mistakes found in the section (path under `nurture`, message), each at its line."""
    return [
        ConfigProblem(
            raw.file,
            raw.line_of(("nurture", *path)),
            ".".join(str(p) for p in ("nurture", *path)),
            message,
        )
        for path, message in found
    ]
