"""Insights' reads: the per-channel report (plain functions, not bus messages)."""

from __future__ import annotations

from services.insights import report_queries
from services.insights.report import ChannelReport, build_report
from services.insights.settings import InsightsConfig
from services.insights.spend_repository import SpendRepository
from services.insights.window import make_window
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.reads import own_unit_of_work


async def build_channel_report(
    uow: UnitOfWork,
    config: InsightsConfig,
    since: str | None = None,
    until: str | None = None,
    clock: Clock = utc_now,
) -> ChannelReport:
    """The per-channel funnel of leads captured between `since` and `until`, read in
    `uow` (raises InvalidWindow for a bad since/until)."""
    today = clock().date()
    window = make_window(since, until, today)
    facts = await report_queries.channel_facts(uow.session, window, config.channels.currency)
    posted = await SpendRepository(uow, clock).posted(window.first_day, window.last_day)
    return build_report(window, config.channels, facts, posted, today)


# The doors' read: the same report in a unit of work of its own.
channel_report = own_unit_of_work(build_channel_report)
