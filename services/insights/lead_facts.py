"""One lead's facts, merged from its events in any order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# How sure we are of a lead's channel: a lead belongs to the channel of its first touch.
RANK_NONE = 0
RANK_OTHER_EVENT = 1  # lead.scored / lead.routed name a channel before capture is seen
RANK_REPEAT_TOUCH = 2  # a repeat touch carries the person's first touch
RANK_FIRST_TOUCH = 3  # the lead.captured that created the lead


def _milestone(name: str, doc: str) -> Callable[[LeadFacts, datetime], LeadFacts]:
    """A `LeadFacts` method reaching the milestone `name` at a given time."""

    def reached(self: LeadFacts, at: datetime) -> LeadFacts:
        return self.reached(name, at)

    reached.__doc__ = doc
    return reached


@dataclass(frozen=True)
class LeadFacts:
    """What the read model knows of one lead: ids, channel, grade, milestones. No PII.

    Every merge is order-independent (earliest time wins, newest score wins, a
    surer channel source wins), so events of one lead may arrive across topics
    in any order and the result is the same.
    """

    channel: str | None = None
    channel_rank: int = RANK_NONE
    captured_at: datetime | None = None
    is_test: bool = False
    grade: str | None = None
    graded_at: datetime | None = None
    sales_ready_at: datetime | None = None
    routed_at: datetime | None = None
    speed_to_lead_ms: int | None = None
    converted_at: datetime | None = None
    disqualified_at: datetime | None = None
    engaged_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    delivery_failed_at: datetime | None = None
    erased_at: datetime | None = None

    def _with(self, **changes: Any) -> LeadFacts:
        # dataclasses.replace without running __init__ again (a tenth of its cost): the
        # consumer folds every event of every lead through these merges.
        facts = object.__new__(LeadFacts)
        facts.__dict__.update(self.__dict__, **changes)
        return facts

    def with_channel(self, channel: str, rank: int) -> LeadFacts:
        """Take `channel` if its source is surer than the one we have."""
        if rank <= self.channel_rank:
            return self
        return self._with(channel=channel, channel_rank=rank)

    def captured(
        self,
        *,
        first_touch_channel: str,
        is_new_lead: bool,
        is_test: bool,
        captured_at: datetime,
    ) -> LeadFacts:
        """A submission of this person (the first, or a repeat touch)."""
        facts = self.with_channel(
            first_touch_channel, RANK_FIRST_TOUCH if is_new_lead else RANK_REPEAT_TOUCH
        )
        if is_new_lead:
            facts = facts._with(is_test=is_test)
        return facts._with(captured_at=_earliest(facts.captured_at, captured_at))

    def scored(
        self,
        *,
        channel: str,
        grade: str,
        sales_ready: bool,
        is_test: bool,
        captured_at: datetime,
        scored_at: datetime,
    ) -> LeadFacts:
        """A (re)score: the newest grade is the lead's grade; sales-ready once is enough."""
        facts = self.with_channel(channel, RANK_OTHER_EVENT)
        if facts.channel_rank < RANK_FIRST_TOUCH:
            facts = facts._with(is_test=is_test)
        if facts.graded_at is None or scored_at >= facts.graded_at:
            facts = facts._with(grade=grade, graded_at=scored_at)
        if sales_ready:
            facts = facts._with(sales_ready_at=_earliest(facts.sales_ready_at, scored_at))
        return facts._with(captured_at=_earliest(facts.captured_at, captured_at))

    def routed(self, *, channel: str, captured_at: datetime, routed_at: datetime) -> LeadFacts:
        """An assignment to a rep; the first one sets speed-to-lead. Routed implies sales-ready."""
        facts = self.with_channel(channel, RANK_OTHER_EVENT)
        facts = facts._with(
            captured_at=_earliest(facts.captured_at, captured_at),
            sales_ready_at=_earliest(facts.sales_ready_at, routed_at),
        )
        if facts.routed_at is None or routed_at < facts.routed_at:
            elapsed = routed_at - captured_at
            facts = facts._with(
                routed_at=routed_at,
                speed_to_lead_ms=max(0, round(elapsed.total_seconds() * 1000)),
            )
        return facts

    def reached(self, milestone: str, at: datetime) -> LeadFacts:
        """A milestone (`converted_at`, `engaged_at`, ...): the earliest time wins."""
        return self._with(**{milestone: _earliest(getattr(self, milestone), at)})

    converted = _milestone("converted_at", "The CRM reports the lead as won.")
    disqualified = _milestone("disqualified_at", "The CRM says the lead will not buy.")
    engaged = _milestone("engaged_at", "The lead opened, clicked, replied or came back.")
    unsubscribed = _milestone("unsubscribed_at", "The lead asked for no more marketing email.")
    delivery_failed = _milestone("delivery_failed_at", "A destination could not take the lead.")
    erased = _milestone("erased_at", "The person was forgotten (the lead stays counted).")


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current
