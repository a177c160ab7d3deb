"""Slack incoming webhook: tells the channel (and mentions the rep) about the lead.

Slack answers 200 `ok`; errors are plain-text codes (`invalid_payload` 400,
`channel_not_found` 404, `channel_is_archived` 410, `action_prohibited` 403) and
are permanent; 429 carries Retry-After. The message holds the acknowledgement
link: the rep's click starts the "acknowledged" clock.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.router.destinations.base import (
    Destination,
    Item,
    Outcome,
    outcome_of,
    render_text,
    transport_error,
)
from services.router.settings import SlackDestination

TEXTS = {
    "assigned": (
        "New sales-ready lead for {% if rep.owner_id %}<@{{ rep.owner_id }}>"
        "{% else %}{{ rep.name or rep.id or 'the queue' }}{% endif %}: "
        "{{ lead.full_name or 'someone' }}{% if lead.company %} at {{ lead.company }}{% endif %} "
        "(score {{ lead.score }}, {{ lead.channel }}). Reason: {{ assignment.explanation }}."
    ),
    "reassigned": (
        "Reassigned after the SLA passed: lead {{ document.lead_id }} now goes to "
        "{% if rep.owner_id %}<@{{ rep.owner_id }}>{% else %}{{ rep.name or rep.id }}{% endif %}."
    ),
    "escalation": (
        ":rotating_light: Lead {{ document.lead_id }} was not acknowledged within "
        "{{ assignment.sla_minutes }} minutes by {{ document.breached_rep or 'its rep' }}."
    ),
}


class Slack(Destination):
    kind = "slack"

    def __init__(self, name: str, config: SlackDestination, client: httpx.AsyncClient) -> None:
        super().__init__(name, config)
        self.client = client

    def message(self, item: Item) -> dict[str, Any]:
        if self.config.mapping is not None:
            return self.render({}, item.document)
        text = render_text(TEXTS.get(item.purpose, TEXTS["assigned"]), item.document, self.name)
        ack_url = item.document.get("ack_url")
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        ]
        if ack_url and item.purpose != "escalation":
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "I'm on it"},
                            "url": ack_url,
                            "style": "primary",
                        }
                    ],
                }
            )
        return {"text": text, "blocks": blocks}

    async def deliver_batch(self, items: list[Item]) -> list[Outcome]:
        outcomes = []
        for item in items:
            try:
                response = await self.client.post(self.config.webhook_url, json=self.message(item))
            except httpx.HTTPError as exc:
                outcomes.append(transport_error(exc))
                continue
            outcomes.append(outcome_of(response, self) or Outcome.delivered(None, 200))
        return outcomes
