"""Insights' configuration: the shared `channels` section (currency, spend, reach).

Capture reads the same section for its attribution rules; insights reads each
channel's label, `monthly_spend` and per-day `spend` entries (with optional
impressions and clicks) and the report `currency`.
"""

from __future__ import annotations

from pydantic import Field

from shared.config import ChannelsConfig, RawConfig, StrictModel, validate_sections


class InsightsConfig(StrictModel):
    """What insights reads from the config file."""

    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)


def load(raw: RawConfig) -> InsightsConfig:
    """Validate insights' sections of the config file."""
    parsed = validate_sections(raw, {"channels": ChannelsConfig})
    return InsightsConfig(channels=parsed["channels"])
