"""Scoring's routes: the explanation of a lead's score."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from services.scoring import views
from services.scoring.scores import Reason
from shared.clock import utc_now
from shared.http import ApiError, BusDep
from shared.views import fields_of

router = APIRouter()

Grade = Literal["hot", "warm", "cold"]


class ReasonOut(BaseModel):
    """A rule that fired and the points it adds."""

    rule_id: str = Field(examples=["senior_title"])
    kind: Literal["fit", "engagement"] = Field(examples=["fit"])
    points: float = Field(examples=[15])
    detail: str = Field(examples=["job_title matches /director/"])


class ScoreNow(BaseModel):
    """The same lead scored as of now: engagement points fade between events."""

    as_of: datetime
    score: float
    fit: float
    engagement: float
    grade: Grade
    sales_ready: bool
    disqualified: bool
    model_version: str
    reasons: list[ReasonOut]


class Change(BaseModel):
    """One change of the lead's score, grade or sales-readiness, and what caused it."""

    at: datetime
    score: float
    fit: float
    engagement: float
    grade: Grade
    previous_grade: Grade | None
    sales_ready: bool
    became_sales_ready: bool
    disqualified: bool
    published: bool = Field(description="A lead.scored event went out for this change.")
    model_version: str
    cause_event_id: str = Field(description="The event (or decay / replay run) behind it.")
    cause_type: str = Field(examples=["leadflow.lead.engaged.v1"])
    reasons: list[ReasonOut]


class ScoreExplanation(BaseModel):
    """A lead's score as last published, every rule behind it, and its history."""

    lead_id: str
    score: float = Field(description="fit + engagement: the reasons' points add up to it.")
    fit: float
    engagement: float
    grade: Grade
    sales_ready: bool
    disqualified: bool
    model_version: str
    scored_at: datetime
    erased: bool = Field(description="The person was erased: no new events are scored.")
    reasons: list[ReasonOut]
    current: ScoreNow | None = Field(
        description="As of now, under the running model (null for an erased lead)."
    )
    history: list[Change] = Field(description="Changes, oldest first (the newest ones).")
    history_total: int


def _reasons(reasons: tuple[Reason, ...] | list[dict[str, object]]) -> list[ReasonOut]:
    out = []
    for reason in reasons:
        if isinstance(reason, Reason):
            out.append(ReasonOut(**reason.as_dict()))
        else:
            out.append(ReasonOut.model_validate(reason))
    return out


#: What every view of a score shows, read from a `Score` or a stored history row.
VERDICT = ("score", "fit", "engagement", "grade", "sales_ready", "disqualified", "model_version")
#: What a history row adds: when, what changed and what caused it.
CHANGE = ("at", "previous_grade", "became_sales_ready", "published", "cause_event_id", "cause_type")


def _view(source: Any, names: tuple[str, ...] = VERDICT) -> dict[str, Any]:
    """These fields of a `Score` or a history row, and its reasons as the API shows them."""
    return {**fields_of(source, *names), "reasons": _reasons(source.reasons or [])}


@router.get(
    "/v1/leads/{lead_id}/score",
    summary="A lead's score: the rules that fired and the history of changes",
    tags=["scores"],
    response_model=ScoreExplanation,
    responses={404: {"description": "Scoring has not scored this lead"}},
)
async def explain_score(
    request: Request,
    bus: BusDep,
    lead_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9._:-]+$",
            description="The lead id capture gave.",
        ),
    ],
    history_limit: Annotated[
        int, Query(ge=1, le=1000, description="At most this many of the newest changes.")
    ] = 100,
) -> ScoreExplanation:
    """Every fit and engagement rule that fired with its points (they add up to the score),
    the score as of now after decay, and each change with the event that caused it."""
    found = await views.explain(
        bus.uow_factory, lead_id, utc_now(), history_limit, model=request.app.state.model
    )
    if found is None:
        raise ApiError(404, "not_found", "scoring has not scored this lead", field="lead_id")
    return ScoreExplanation(
        lead_id=lead_id,
        scored_at=found.last.at,
        erased=found.state.erased,
        current=ScoreNow(as_of=found.now.at, **_view(found.now)) if found.now else None,
        history=[Change(**_view(row, CHANGE + VERDICT)) for row in found.history],
        history_total=found.history_total,
        **_view(found.last),
    )
