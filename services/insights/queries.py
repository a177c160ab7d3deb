"""Insights' reads: the per-channel report.

Plain functions, not bus messages: each opens one unit of work on the factory it is
given, reads, and commits nothing.
"""

from __future__ import annotations

from services.insights import report_queries
from services.insights.report import ChannelReport, build_report
from services.insights.settings import InsightsConfig
from services.insights.spend_repository import SpendRepository
from services.insights.window import make_window
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.db.uow import UowFactory


async def channel_report(
    uows: UowFactory,
    config: InsightsConfig,
    since: str | None = None,
    until: str | None = None,
    clock: Clock = utc_now,
) -> ChannelReport:
    """The per-channel funnel of leads captured between `since` and `until`
    (raises InvalidWindow for a bad since/until)."""
    async with uows() as uow:
        return await build_channel_report(uow, config, since, until, clock)


async def build_channel_report(
    uow: UnitOfWork,
    config: InsightsConfig,
    since: str | None = None,
    until: str | None = None,
    clock: Clock = utc_now,
) -> ChannelReport:
    """The per-channel funnel, read in the unit of work `uow`."""
    today = clock().date()
    window = make_window(since, until, today)
    facts = await report_queries.channel_facts(uow.session, window, config.channels.currency)
    posted = await SpendRepository(uow, clock).posted(window.first_day, window.last_day)
    return build_report(window, config.channels, facts, posted, today)
