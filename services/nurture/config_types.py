"""Field types of the `nurture` section: durations, clock times, names."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, PlainSerializer

V = TypeVar("V")

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


def check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be letters, digits, '-' or '_' (at most 100 characters)"
        )
    return value


def check_keys(value: dict[str, V], what: str) -> dict[str, V]:
    """`value`, once every key is a valid name (`check_name`)."""
    for key in value:
        check_name(key, what)
    return value
