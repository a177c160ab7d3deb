"""The report's reads: counted facts per channel of the leads captured in a window."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.report import GRADES, ChannelFacts
from services.insights.store import conversions, leads, touches
from services.insights.window import Window


def _in_window(column: Any, window: Window) -> Any:
    return sa.and_(column >= window.start, column < window.end)


def _count_if(condition: Any) -> Any:
    return sa.func.sum(sa.case((condition, 1), else_=0))


async def channel_facts(
    session: AsyncSession, window: Window, currency: str
) -> dict[str, ChannelFacts]:
    """Counted facts per channel for leads captured in the window (test leads left out).

    Revenue in `currency` is summed; won value in other currencies is kept apart.
    """
    counted = sa.and_(
        leads.c.channel.is_not(None),
        leads.c.is_test.is_(False),
        _in_window(leads.c.captured_at, window),
    )
    query = (
        sa.select(
            leads.c.channel,
            sa.func.count().label("leads"),
            *(_count_if(leads.c.grade == grade).label(grade) for grade in GRADES),
            _count_if(leads.c.sales_ready_at.is_not(None)).label("sales_ready"),
            _count_if(leads.c.routed_at.is_not(None)).label("routed"),
            _count_if(leads.c.converted_at.is_not(None)).label("converted"),
            _count_if(leads.c.disqualified_at.is_not(None)).label("disqualified"),
            _count_if(leads.c.engaged_at.is_not(None)).label("engaged"),
            _count_if(leads.c.unsubscribed_at.is_not(None)).label("unsubscribed"),
            _count_if(leads.c.delivery_failed_at.is_not(None)).label("delivery_failed"),
            _count_if(leads.c.erased_at.is_not(None)).label("erased"),
        )
        .where(counted)
        .group_by(leads.c.channel)
    )
    facts: dict[str, ChannelFacts] = defaultdict(ChannelFacts)
    for row in (await session.execute(query)).all():
        facts[row.channel] = ChannelFacts(
            leads=row.leads,
            grades={grade: int(getattr(row, grade) or 0) for grade in GRADES},
            sales_ready=int(row.sales_ready or 0),
            routed=int(row.routed or 0),
            converted=int(row.converted or 0),
            disqualified=int(row.disqualified or 0),
            engaged=int(row.engaged or 0),
            unsubscribed=int(row.unsubscribed or 0),
            delivery_failed=int(row.delivery_failed or 0),
            erased=int(row.erased or 0),
        )

    real_touches = sa.and_(touches.c.is_test.is_(False), _in_window(touches.c.captured_at, window))
    touch_query = (
        sa.select(
            touches.c.channel,
            _count_if(touches.c.is_new_lead.is_(False)).label("repeats"),
            sa.func.coalesce(sa.func.sum(touches.c.cost_units), 0).label("cost_units"),
        )
        .where(real_touches)
        .group_by(touches.c.channel)
    )
    for row in (await session.execute(touch_query)).all():
        facts[row.channel].repeat_touches = int(row.repeats or 0)
        facts[row.channel].lead_cost_units = int(row.cost_units or 0)

    revenue_query = (
        sa.select(
            leads.c.channel,
            conversions.c.currency,
            sa.func.sum(conversions.c.value_units).label("units"),
        )
        .join(conversions, conversions.c.lead_id == leads.c.lead_id)
        .where(counted)
        .group_by(leads.c.channel, conversions.c.currency)
    )
    for row in (await session.execute(revenue_query)).all():
        units = int(row.units or 0)
        if row.currency.upper() == currency.upper():
            facts[row.channel].revenue_units += units
        else:
            others = facts[row.channel].other_revenue_units
            others[row.currency.upper()] = others.get(row.currency.upper(), 0) + units

    durations_query = (
        sa.select(leads.c.channel, leads.c.speed_to_lead_ms)
        .where(counted, leads.c.speed_to_lead_ms.is_not(None))
        .order_by(leads.c.channel, leads.c.speed_to_lead_ms)
    )
    for row in (await session.execute(durations_query)).all():
        facts[row.channel].speed_to_lead_ms.append(int(row.speed_to_lead_ms))
    return dict(facts)
