"""Emails from Jinja2 templates: autoescaped HTML and a text part, tracked links, a footer.

Lead fields are data, never template source: they are passed to templates as
values, so `{{ 7*7 }}` in a first name stays those characters, and HTML in a
company name comes out escaped. Templates run in Jinja's sandbox.

A step's template is a fragment: `<name>.html.j2` and `<name>.txt.j2` give the
body, and `_layout.html.j2` / `_layout.txt.j2` wrap it with the footer and its
unsubscribe link. `{{ links.<id> }}` is the click-tracked URL of one of the
step's links; other `<a href="http...">` in the HTML are rewritten for
tracking too. The click redirect goes only to the links recorded for the send.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
)
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from services.nurture import tokens
from services.nurture.config import PACKAGED_TEMPLATES, NurtureConfig
from shared.clock import utc_now

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
HTML_LAYOUT, TEXT_LAYOUT = "_layout.html.j2", "_layout.txt.j2"
# Headers are not folded below RFC 5322's 998 characters: folding a long unbroken
# List-Unsubscribe URI would turn it into encoded words no mail client can use.
# Bodies are encoded when built (quoted-printable, 76-character lines), not here.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)

SAMPLE_LEAD: dict[str, Any] = {
    "lead_id": "00000000-0000-4000-8000-000000000000",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "full_name": "Ada Lovelace",
    "email": "ada@example.com",
    "company": "Analytical Engines",
    "job_title": "Director of Engineering",
    "country": "GB",
    "channel": "google_ads",
    "form_id": "guide-download",
    "form_type": "download",
    "grade": "cold",
    "fields": {},
}


@dataclass(frozen=True)
class Tracking:
    """Builds the signed URLs that point back at nurture."""

    base_url: str
    secret: str

    def open_url(self, send_id: str) -> str:
        token = tokens.sign(self.secret, tokens.OPEN, {"s": send_id})
        return f"{self.base_url}/v1/track/open/{token}"

    def click_url(self, send_id: str, link_id: str) -> str:
        token = tokens.sign(self.secret, tokens.CLICK, {"s": send_id, "l": link_id})
        return f"{self.base_url}/v1/track/click/{token}"

    def unsubscribe_url(self, lead_id: str, send_id: str) -> str:
        token = tokens.sign(self.secret, tokens.UNSUBSCRIBE, {"d": lead_id, "s": send_id})
        return f"{self.base_url}/v1/unsubscribe/{token}"

    def confirm_url(self, lead_id: str, send_id: str, issued: datetime) -> str:
        payload = {"d": lead_id, "s": send_id, "t": int(issued.timestamp())}
        token = tokens.sign(self.secret, tokens.CONFIRM, payload)
        return f"{self.base_url}/v1/confirm/{token}"


@dataclass(frozen=True)
class Rendered:
    """One email, ready to become a MIME message."""

    subject: str
    html: str
    text: str
    links: dict[str, str] = field(default_factory=dict)
    unsubscribe_url: str | None = None


def lead_context(row: Any) -> dict[str, Any]:
    """What templates see as `lead`, from a stored lead row."""
    contact = dict(row.contact or {})
    first, last = contact.get("first_name"), contact.get("last_name")
    full = " ".join(p for p in (first, last) if p) or None
    return {
        "lead_id": row.lead_id,
        "first_name": first,
        "last_name": last,
        "full_name": full,
        "email": row.email,
        "company": contact.get("company"),
        "job_title": contact.get("job_title"),
        "country": contact.get("country"),
        "channel": row.channel,
        "form_id": row.form_id,
        "form_type": row.form_type,
        "grade": row.grade,
        "fields": dict(row.fields or {}),
    }


def clean_header(value: str, limit: int = 250) -> str:
    """One line, no control characters (no header injection), at most `limit` characters."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


class Templates:
    """The template set of a config: your directory first, then the packaged templates."""

    def __init__(self, config: NurtureConfig) -> None:
        self.config = config
        search = [str(config.templates_path)] if config.templates_path else []
        loader = ChoiceLoader([FileSystemLoader([*search, str(PACKAGED_TEMPLATES)])])
        self.html_env = SandboxedEnvironment(loader=loader, autoescape=True)
        self.text_env = SandboxedEnvironment(
            loader=loader, autoescape=False, keep_trailing_newline=True
        )
        self._subjects = SandboxedEnvironment(autoescape=False)

    def _subject(self, source: str, context: dict[str, Any]) -> str:
        rendered = self._subjects.from_string(source).render(context)
        return clean_header(rendered) or self.config.organization

    def _base_context(self, lead: dict[str, Any], subject: str | None = None) -> dict[str, Any]:
        return {
            "lead": lead,
            "organization": self.config.organization,
            "postal_address": self.config.postal_address,
            "subject": subject,
        }

    def render_step(
        self,
        sequence_id: str,
        step_number: int,
        lead: dict[str, Any],
        *,
        send_id: str,
        tracking: Tracking,
    ) -> Rendered:
        """A sequence step for one lead, links tracked under `send_id`."""
        sequence = self.config.sequences[sequence_id]
        step = sequence.steps[step_number - 1]
        links = {key: link.url for key, link in step.links.items()}
        tracked = {key: tracking.click_url(send_id, key) for key in links}
        unsubscribe_url = tracking.unsubscribe_url(lead["lead_id"], send_id)
        context = self._base_context(lead)
        context.update(
            links=tracked,
            content=[
                {"id": key, "title": link.title or key, "url": tracked[key]}
                for key, link in step.links.items()
            ],
            sequence={"id": sequence_id, "name": sequence.name or sequence_id},
            step={"number": step_number, "id": sequence.step_id(step_number)},
            unsubscribe_url=unsubscribe_url,
            preheader=None,
        )
        subject = self._subject(step.subject, context)
        context["subject"] = subject
        if step.preheader:
            context["preheader"] = self._subject(step.preheader, context)
        body_html = self.html_env.get_template(f"{step.template}.html.j2").render(context)
        page = self.html_env.get_template(HTML_LAYOUT).render(context, body=Markup(body_html))
        page = self._track_anchors(page, links, send_id, tracking)
        page = _add_pixel(page, tracking.open_url(send_id))
        body_text = self.text_env.get_template(f"{step.template}.txt.j2").render(context)
        text = self.text_env.get_template(TEXT_LAYOUT).render(context, body=body_text)
        return Rendered(subject, page, text, links, unsubscribe_url)

    def render_confirmation(
        self, lead: dict[str, Any], *, confirm_url: str, valid_days: float
    ) -> Rendered:
        """The double opt-in email (no tracking, no unsubscribe: nothing is subscribed yet)."""
        doi = self.config.double_opt_in
        context = self._base_context(lead)
        context.update(confirm_url=confirm_url, valid_days=valid_days, preheader=None)
        subject = self._subject(doi.subject, context)
        context["subject"] = subject
        body_html = self.html_env.get_template(f"{doi.template}.html.j2").render(context)
        page = self.html_env.get_template(HTML_LAYOUT).render(
            context, body=Markup(body_html), unsubscribe_url=None
        )
        body_text = self.text_env.get_template(f"{doi.template}.txt.j2").render(context)
        text = self.text_env.get_template(TEXT_LAYOUT).render(
            context, body=body_text, unsubscribe_url=None
        )
        return Rendered(subject, page, text)

    def _track_anchors(
        self, page: str, links: dict[str, str], send_id: str, tracking: Tracking
    ) -> str:
        """Rewrite `<a href="http...">` the template wrote out directly into tracked links."""
        by_url = {url: key for key, url in links.items()}
        own = tracking.base_url + "/"

        def replace(match: re.Match[str]) -> str:
            url = html.unescape(match.group(3)).strip()
            if not url.lower().startswith(("http://", "https://")) or url.startswith(own):
                return match.group(0)
            key = by_url.get(url)
            if key is None:
                key = f"href-{len(links) + 1}"
                while key in links:
                    key += "x"
                links[key] = url
                by_url[url] = key
            quote = match.group(2)
            return f"{match.group(1)}{quote}{html.escape(tracking.click_url(send_id, key))}{quote}"

        return _HREF.sub(replace, page)


def _add_pixel(page: str, url: str) -> str:
    pixel = (
        f'<img src="{html.escape(url)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )
    index = page.lower().rfind("</body>")
    return page[:index] + pixel + page[index:] if index >= 0 else page + pixel


def build_message(
    config: NurtureConfig,
    rendered: Rendered,
    *,
    to_email: str,
    to_name: str | None,
    message_id: str,
    now: datetime | None = None,
) -> EmailMessage:
    """The MIME message: text and HTML alternatives, RFC 8058 one-click unsubscribe."""
    address = to_email.strip()
    if not address or "@" not in address or _CONTROL.search(address):
        raise ValueError("the lead's email address cannot be used")
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = formataddr((clean_header(to_name or "", 100), address))
    if config.reply_to:
        message["Reply-To"] = config.reply_to
    message["Subject"] = rendered.subject
    message["Date"] = formatdate((now or utc_now()).timestamp(), usegmt=True)
    message["Message-ID"] = message_id
    if rendered.unsubscribe_url:
        message["List-Unsubscribe"] = f"<{rendered.unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def to_bytes(message: EmailMessage) -> bytes:
    """The message as it goes over the wire (CRLF line ends, headers unfolded)."""
    return message.as_bytes(policy=WIRE_POLICY)


def message_id_for(config: NurtureConfig, send_id: str) -> str:
    """A Message-ID for one send (the same on every retry of it)."""
    _, address = parseaddr(config.sender)
    domain = address.rpartition("@")[2] or "leadflow.invalid"
    return f"<{send_id}@{domain}>"
