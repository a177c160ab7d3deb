"""Conditions compiled for testing lead facts: what a fit or engagement rule matches."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from services.scoring.rule_settings import Condition
from shared.events.contracts import FieldValue

_TRUE = frozenset({"true", "yes", "on", "1", "y"})
_FALSE = frozenset({"false", "no", "off", "0", "n", ""})


def present(value: FieldValue) -> bool:
    """Given and not blank."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def number(value: FieldValue) -> float | None:
    """A number from a field value: 120, "120", "1,200", "500+"; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        result = float(value)
    else:
        text = value.strip().replace(",", "").replace("_", "").replace(" ", "").rstrip("+")
        try:
            result = float(text)
        except ValueError:
            return None
    return result if math.isfinite(result) else None


def _equal(value: FieldValue, expected: str | int | float | bool) -> bool:
    if isinstance(expected, bool):
        if isinstance(value, bool):
            return value is expected
        text = str(value).strip().lower()
        return text in (_TRUE if expected else _FALSE)
    if isinstance(expected, int | float):
        got = number(value)
        return got is not None and math.isclose(got, float(expected))
    return str(value).strip().casefold() == expected.strip().casefold()


class Matcher:
    """A compiled condition: expected values normalized once, not on every test."""

    def __init__(self, condition: Condition) -> None:
        self.condition = condition
        self.field = condition.field or ""
        self.exists = condition.exists
        self.pattern = re.compile(condition.regex, re.IGNORECASE) if condition.regex else None
        contains = condition.contains
        texts = [contains] if isinstance(contains, str) else contains or []
        self.contains = tuple(t.casefold() for t in texts)
        expected: list[str | int | float | bool] = []
        if condition.equals is not None:
            expected.append(condition.equals)
        expected += condition.in_ or []
        self.equal_to = bool(expected)
        self.texts = frozenset(v.strip().casefold() for v in expected if isinstance(v, str))
        self.numbers = tuple(
            float(v) for v in expected if isinstance(v, int | float) and not isinstance(v, bool)
        )
        self.bools = tuple(v for v in expected if isinstance(v, bool))
        self.range = condition.range
        self._seen: dict[str, bool] = {}

    def __call__(self, facts: Mapping[str, FieldValue]) -> bool:
        value = facts.get(self.field)
        if type(value) is not str:
            return self._test(value)
        # The same texts come again and again (form types, channels, domains, titles):
        # each is tested once.
        found = self._seen.get(value)
        if found is None:
            if len(self._seen) >= 4096:
                self._seen.clear()
            found = self._seen[value] = self._test(value)
        return found

    def _test(self, value: FieldValue) -> bool:
        if self.exists is not None:
            return present(value) is self.exists
        if value is None or (isinstance(value, str) and not value.strip()):
            return False
        if self.equal_to:
            return self._equals(value)
        if self.contains:
            text = str(value).casefold()
            return any(t in text for t in self.contains)
        if self.pattern is not None:
            return self.pattern.search(str(value)) is not None
        if self.range is not None:
            got = number(value)
            return (
                got is not None
                and (self.range.min is None or got >= self.range.min)
                and (self.range.max is None or got <= self.range.max)
            )
        return True

    def _equals(self, value: str | int | float | bool) -> bool:
        if self.texts and str(value).strip().casefold() in self.texts:
            return True
        if self.numbers:
            got = number(value)
            if got is not None and any(math.isclose(got, n) for n in self.numbers):
                return True
        return any(_equal(value, expected) for expected in self.bools)
