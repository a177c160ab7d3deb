"""HTML, Slack markup, template syntax and header injection in lead fields come out inert.

A lead's name, company and title are whatever a visitor typed. The router renders them
into Slack messages (mrkdwn: `<!channel>`, `<https://evil|text>` and `<@U…>` are live
markup, so `&`, `<` and `>` must be escaped) and into rep emails (plain text, where HTML is
inert, but a line break in the subject would start a new header). Jinja2 renders values,
never evaluates them, so `{{7*7}}` and `{% … %}` must arrive as typed. Real broker, a
Slack stand-in and a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import socket
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import eventually
from tests.integration.router.crm_standins import SlackStandIn, wait_started
from tests.integration.router.support import publish, scored, settled, write_config

pytestmark = pytest.mark.broker

SCRIPT = "<script>alert(1)</script>"
TEMPLATE = "{{7*7}}"
STATEMENT = "{% for x in range(3) %}X{% endfor %}"
SLACK_MARKUP = "<!channel> <https://evil.example/login|Reset your password> <@U0ADMIN>"
HEADER_BREAK = "Lovelace\r\nBcc: victim@example.com\r\nX-Injected: yes"


class Inbox:
    """aiosmtpd handler keeping each message with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        # The default policy unfolds long headers, so a line break left is a real one.
        message = message_from_bytes(raw, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hostile_lead() -> Any:
    lead = scored(company=f"{SCRIPT} {TEMPLATE} {STATEMENT} & {SLACK_MARKUP}")
    contact = lead.contact.model_copy(
        # The name goes into the email subject, the title into its body.
        update={"first_name": SCRIPT, "last_name": HEADER_BREAK, "job_title": TEMPLATE}
    )
    return lead.model_copy(update={"contact": contact})


async def test_lead_fields_are_escaped_in_slack_and_inert_in_rep_email(
    broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    slack = SlackStandIn()
    await wait_started(slack)
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    lead = _hostile_lead()
    config = write_config(
        tmp_path,
        {
            "public_url": "https://router.example.com",
            "reps": {
                "rep-a": {
                    "name": "Alice",
                    "email": "alice@example.com",
                    "owner_ids": {"slack": "U1"},
                }
            },
            "rules": [{"id": "all", "reps": ["rep-a"], "destinations": ["slack", "mail"]}],
            "destinations": {
                "slack": {"type": "slack", "webhook_url": slack.webhook_url},
                "mail": {"type": "email", "port": smtp.port, "from": "leadflow <l@example.com>"},
            },
        },
    )
    settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=config)
    try:
        async with running_service("router", settings) as router:
            await publish(broker.bootstrap, [lead])
            await eventually(lambda: slack.messages() and inbox.messages, timeout=20)
            # The messages arrive before the worker records their answers: read once recorded.
            for _ in range(100):
                response = await router.client.get(f"/v1/leads/{lead.lead_id}/assignments")
                deliveries = response.json()["assignments"][0]["deliveries"]
                if all(d["status"] != "pending" for d in deliveries):
                    break
                await asyncio.sleep(0.1)
            await settled(router)
    finally:
        smtp.stop()
        slack.stop()

    assert {d["destination"]: d["status"] for d in deliveries} == {
        "slack": "delivered",
        "mail": "delivered",
    }

    [message] = slack.messages()
    texts = [message["text"], message["blocks"][0]["text"]["text"]]
    for text in texts:
        # Slack's control characters from the lead are escaped...
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "&lt;!channel&gt;" in text and "<!channel>" not in text
        assert "&lt;https://evil.example/login|Reset your password&gt;" in text
        assert "&lt;@U0ADMIN&gt;" in text and "<@U0ADMIN>" not in text
        assert " &amp; " in text
        # ...the router's own markup is not: the rep is still mentioned.
        assert "<@U1>" in text
        # Template syntax arrives as typed, never evaluated.
        assert f"{TEMPLATE} {STATEMENT} &amp; " in text and "XXX" not in text
        # A line break in the name forges no line of the message.
        assert "\n" not in text and "\r" not in text
    assert "<" not in message["text"].replace("<@U1>", "")

    [(recipients, email)] = inbox.messages
    # One recipient, no header smuggled in through the name.
    assert recipients == ["alice@example.com"]
    assert email["Bcc"] is None and email["X-Injected"] is None
    assert "\n" not in str(email["Subject"]) and "\r" not in str(email["Subject"])
    # Plain text only: markup there is shown, never run.
    assert not email.is_multipart() and email.get_content_type() == "text/plain"
    payload = email.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    lines = [line.strip() for line in body.splitlines()]
    assert f"Title:    {TEMPLATE}" in lines
    assert f"Company:  {lead.contact.company}" in lines
    assert f"Name:     {SCRIPT} Lovelace Bcc: victim@example.com X-Injected: yes" in lines
    # The name's line breaks do not forge lines of the message either.
    assert not [line for line in lines if line.startswith(("Bcc:", "X-Injected:"))]
