"""A score and its reasons: a model's verdict on a lead at one moment. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

import orjson

from shared.events.contracts import ScoreReason

Grade = Literal["hot", "warm", "cold"]


@dataclass(frozen=True)
class Reason:
    """One rule that fired and what it adds to the score now."""

    rule_id: str
    kind: Literal["fit", "engagement"]
    points: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reason:
        detail = data.get("detail") or ""
        return cls.of(data["rule_id"], data["kind"], float(data["points"]), detail)

    @classmethod
    def of(
        cls, rule_id: str, kind: Literal["fit", "engagement"], points: float, detail: str
    ) -> Reason:
        """The reason with these values, shared: rules fire with the same points and
        wording lead after lead, so their contract model and JSON are made once."""
        # -0.0 equals 0.0 but is written differently, and an int equals its float: such
        # values are never shared.
        if type(points) is not float or points == 0.0:
            return cls(rule_id, kind, points, detail)
        key = (rule_id, kind, points, detail)
        found = _REASONS.get(key)
        if found is None:
            if len(_REASONS) >= 10_000:
                _REASONS.clear()
            found = _REASONS[key] = cls(rule_id, kind, points, detail)
        return found

    @cached_property
    def contract(self) -> ScoreReason:
        """The reason as `lead.scored` carries it."""
        return ScoreReason.model_validate(self.as_dict())

    @cached_property
    def as_json(self) -> str:
        """`as_dict` as JSON text."""
        return orjson.dumps(self.as_dict()).decode()


_REASONS: dict[tuple[str, str, float, str], Reason] = {}


@dataclass(frozen=True)
class Score:
    """A model's verdict on a lead at one moment; the reasons add up to `score`."""

    score: float
    fit: float
    engagement: float
    grade: Grade
    sales_ready: bool
    disqualified: bool
    reasons: tuple[Reason, ...]
    model_version: str
    at: datetime
    due_at: datetime | None = None
    """When decay alone would next change the grade or sales-readiness (None: never)."""

    @cached_property
    def reasons_json(self) -> str:
        """The reasons as JSON text (what the lead's row and its history keep), encoded once
        however many rows carry them."""
        # orjson writes no whitespace: the list is its items' JSON joined by commas.
        return "[" + ",".join([r.as_json for r in self.reasons]) + "]"

    def same_verdict(self, other: Score | None) -> bool:
        """Same verdict: grade, sales-readiness and disqualification."""
        return (
            other is not None
            and other.grade == self.grade
            and other.sales_ready == self.sales_ready
            and other.disqualified == self.disqualified
        )

    def same_numbers(self, other: Score | None) -> bool:
        """Same verdict and the same points."""
        return (
            self.same_verdict(other)
            and other is not None
            and (other.score, other.fit, other.engagement)
            == (self.score, self.fit, self.engagement)
        )
