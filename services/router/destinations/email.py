"""Email to the assigned rep over SMTP (aiosmtplib), with the acknowledgement link.

Temporary SMTP failures (4xx replies, connection errors) are retried; a
permanent 5xx reply (unknown mailbox) is not.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
from jinja2 import Undefined
from jinja2.sandbox import SandboxedEnvironment

from services.router.destinations.base import (
    FAILED,
    DeliveryResult,
    Destination,
    Item,
    one_line,
    template_context,
    transport_error,
)
from services.router.settings import EmailDestination

SUBJECTS = {
    "assigned": "New lead: {{ lead.full_name or lead.company or document.lead_id }}",
    "reassigned": "Lead reassigned to you: {{ lead.full_name or document.lead_id }}",
    "escalation": "SLA missed: lead {{ document.lead_id }} not acknowledged",
}
BODY = """Hello {{ rep.name or rep.id or 'team' }},

{% if event == 'lead.sla_breached' -%}
Lead {{ document.lead_id }} was not acknowledged within {{ assignment.sla_minutes }} minutes.
{%- else -%}
A sales-ready lead is yours
{%- if event == 'lead.reassigned' %} (reassigned after the SLA){% endif %}:

  Name:     {{ lead.full_name }}
  Company:  {{ lead.company }}
  Title:    {{ lead.job_title }}
  Email:    {{ lead.email }}
  Phone:    {{ lead.phone }}
  Country:  {{ lead.country }}
  Channel:  {{ lead.channel }}
  Score:    {{ lead.score }} ({{ lead.grade }})

Why you: {{ assignment.explanation }}

Take it (starts your speed-to-lead clock): {{ ack_url }}
{%- endif %}
"""


# Plain text, where markup a lead typed is shown, never run; each value stays on its line.
_plain = SandboxedEnvironment(undefined=Undefined, autoescape=False, finalize=one_line)


def _render(template: str, item: Item, destination: str) -> str:
    return _plain.from_string(template).render(**template_context(item.document, destination))


class Email(Destination):
    kind = "email"

    def build(self, item: Item) -> EmailMessage | None:
        config: EmailDestination = self.config
        rep = item.document.get("rep") or {}
        recipients = list(config.to) or ([rep["email"]] if rep.get("email") else [])
        if not recipients:
            return None
        mapping = config.mapping or {}
        message = EmailMessage()
        message["From"] = config.sender
        message["To"] = ", ".join(recipients)
        subject = mapping.get("subject") or SUBJECTS.get(item.purpose, SUBJECTS["assigned"])
        # One line: a line break must not start a new header.
        message["Subject"] = " ".join(_render(subject, item, self.name).split())
        message["Message-ID"] = f"<{item.delivery_id}@leadflow>"
        message.set_content(_render(mapping.get("body") or BODY, item, self.name))
        return message

    async def deliver_one(self, item: Item) -> DeliveryResult:
        config: EmailDestination = self.config
        message = self.build(item)
        if message is None:
            return DeliveryResult(FAILED, "no recipient: the rep has no email and `to` is empty")
        try:
            await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.username or None,
                password=config.password or None,
                start_tls=config.starttls,
                timeout=10,
            )
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                return DeliveryResult(FAILED, f"SMTP {exc.code}: {exc.message}"[:300], exc.code)
            return DeliveryResult("retry", f"SMTP {exc.code}: {exc.message}"[:300], exc.code)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return transport_error(exc)
        return DeliveryResult.delivered(message["Message-ID"])
