"""Destinations: one module per type, built from the `routing.destinations` config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from services.router.destinations.base import DeliveryResult, Destination, Item
from services.router.destinations.email import Email
from services.router.destinations.file import FileSink
from services.router.destinations.hubspot import HubSpot
from services.router.destinations.pipedrive import Pipedrive
from services.router.destinations.salesforce import Salesforce
from services.router.destinations.slack import Slack
from services.router.destinations.webhook import Webhook
from services.router.settings import (
    EmailDestination,
    FileDestination,
    HubSpotDestination,
    PipedriveDestination,
    RoutingConfig,
    SalesforceDestination,
    SlackDestination,
    WebhookDestination,
)

__all__ = ["DeliveryResult", "Destination", "Item", "build_destination", "build_destinations"]


# Destinations reached over the shared HTTP client, and the others, by config type.
_HTTP: dict[type, Callable[[str, Any, httpx.AsyncClient], Destination]] = {
    WebhookDestination: Webhook,
    HubSpotDestination: HubSpot,
    SalesforceDestination: Salesforce,
    PipedriveDestination: Pipedrive,
    SlackDestination: Slack,
}
_LOCAL: dict[type, Callable[[str, Any], Destination]] = {
    FileDestination: FileSink,
    EmailDestination: Email,
}


def build_destination(name: str, config: object, client: httpx.AsyncClient) -> Destination:
    """The destination object for one config entry."""
    for kind, remote in _HTTP.items():
        if isinstance(config, kind):
            return remote(name, config, client)
    for kind, local in _LOCAL.items():
        if isinstance(config, kind):
            return local(name, config)
    raise ValueError(f"unknown destination type {type(config).__name__}")


def build_destinations(config: RoutingConfig, client: httpx.AsyncClient) -> dict[str, Destination]:
    """Every enabled destination of the config, by name."""
    return {
        name: build_destination(name, entry, client)
        for name, entry in config.destinations.items()
        if config.destination_enabled(name)
    }
