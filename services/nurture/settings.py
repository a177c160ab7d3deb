"""Nurture's configuration: loading and checking the `nurture` section.

The section's model lives in config.py (sender, SMTP, delivery, quiet hours,
caps) and sequence_config.py (sequences, steps, double opt-in). Templates are
checked when the config is loaded (`leadflow config check` renders every step
with a sample lead), so a typo in a template name or a Jinja error names its
line instead of failing at send time.
"""

from __future__ import annotations

from pathlib import Path

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
from shared.config import ConfigError, RawConfig, load_checked

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
    "load",
    "parse_clock_time",
    "parse_duration",
]


def load(raw: RawConfig) -> NurtureConfig:
    """Validate nurture's section of the config file; every mistake names its line."""
    config = load_checked(raw, "nurture", NurtureConfig)
    if config.templates_dir:
        base = Path(raw.file).resolve().parent
        resolved = (base / config.templates_dir).resolve()
        config = config.model_copy(update={"templates_dir": str(resolved)})
        if not resolved.is_dir():
            missing = (("templates_dir",), f"no such directory: {resolved}")
            raise ConfigError(raw.problems_at("nurture", [missing]))
    problems = raw.problems_at("nurture", template_problems(config))
    if problems:
        raise ConfigError(problems)
    return config
