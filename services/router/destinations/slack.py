"""Slack incoming webhook: tells the channel (and mentions the rep) about the lead.

Slack answers 200 `ok`; errors are plain-text codes (`invalid_payload` 400,
`channel_not_found` 404, `channel_is_archived` 410, `action_prohibited` 403) and
are permanent; 429 carries Retry-After. The message holds the acknowledgement
link: the rep's click starts the "acknowledged" clock.
"""

from __future__ import annotations

from typing import Any

import httpx
from jinja2 import Undefined
from jinja2.sandbox import SandboxedEnvironment

from services.router.destinations.base import (
    DeliveryResult,
    HttpDestination,
    Item,
    one_line,
    render_mapping,
    result_of,
    template_context,
    transport_error,
)

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


def mrkdwn_escape(value: Any) -> Any:
    """Text a lead supplied, made inert in mrkdwn (and kept on one line).

    In mrkdwn `<!channel>` pings everyone and `<https://…|text>` disguises a link; Slack
    asks for `&`, `<` and `>` as `&amp;`, `&lt;` and `&gt;` in anything not meant as markup.
    """
    value = one_line(value)
    if not isinstance(value, str):
        return value
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Every `{{ value }}` is escaped; the templates' own markup (`<@{{ owner }}>`) stays live.
_mrkdwn = SandboxedEnvironment(undefined=Undefined, autoescape=False, finalize=mrkdwn_escape)


class Slack(HttpDestination):
    kind = "slack"

    def message(self, item: Item) -> dict[str, Any]:
        context = template_context(item.document, self.name)
        if self.config.mapping is not None:
            return render_mapping(self.config.mapping, context, _mrkdwn)
        template = TEXTS.get(item.purpose, TEXTS["assigned"])
        text = _mrkdwn.from_string(template).render(**context)
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

    async def deliver_one(self, item: Item) -> DeliveryResult:
        try:
            response = await self.client.post(self.config.webhook_url, json=self.message(item))
        except httpx.HTTPError as exc:
            return transport_error(exc)
        return result_of(response, self) or DeliveryResult.delivered(None, 200)
