"""Rendering: lead fields are hostile input; links are tracked; the footer unsubscribes."""

from __future__ import annotations

import html
import re
from email import message_from_bytes, policy
from types import SimpleNamespace

from services.nurture import tokens
from services.nurture.rendering import (
    Templates,
    Tracking,
    build_message,
    lead_context,
    message_id_for,
    to_bytes,
)
from services.nurture.settings import NurtureConfig

SECRET = "s3cret"
TRACKING = Tracking("https://t.example.com", SECRET)
SEND_ID = "a" * 32
HOSTILE = '<script>alert("x")</script>{{ 7*7 }}{% raw %}'


def config(templates_dir=None, **step) -> NurtureConfig:
    return NurtureConfig.model_validate(
        {
            "from": "Example <hello@example.com>",
            "organization": "Example & Co",
            "postal_address": "1 Main St",
            "templates_dir": templates_dir,
            "sequences": {
                "welcome": {
                    "steps": [
                        {
                            "template": "guide",
                            "subject": "Your guide, {{ lead.first_name }}",
                            "links": {
                                "guide": "https://c.example.com/guide.pdf",
                                "article": "https://c.example.com/a?x=1&y=2",
                            },
                            **step,
                        }
                    ]
                }
            },
        }
    )


def row(**contact) -> SimpleNamespace:
    base = {"first_name": "Ada", "last_name": "Lovelace", "company": "Engines", "country": "GB"}
    return SimpleNamespace(
        lead_id="lead-1",
        email="ada@example.com",
        contact={**base, **contact},
        fields={"note": HOSTILE},
        channel="google_ads",
        form_id="guide-download",
        form_type="download",
        grade="cold",
    )


def render(cfg: NurtureConfig, lead: SimpleNamespace):
    return Templates(cfg).render_step(
        "welcome", 1, lead_context(lead), send_id=SEND_ID, tracking=TRACKING
    )


def test_hostile_lead_fields_come_out_escaped_never_evaluated():
    rendered = render(config(), row(first_name=HOSTILE))
    assert "<script>" not in rendered.html
    assert html.escape(HOSTILE) in rendered.html or "&lt;script&gt;" in rendered.html
    assert "49" not in rendered.html and "{{ 7*7 }}" in rendered.text
    assert rendered.subject == f"Your guide, {HOSTILE}"  # a subject is text: no escaping needed


def test_a_company_name_cannot_break_out_of_an_attribute(tmp_path):
    (tmp_path / "guide.html.j2").write_text(
        '<p title="{{ lead.company }}">{{ lead.fields.note }}</p>'
        "{{ links.guide }}{{ links.article }}"
    )
    (tmp_path / "guide.txt.j2").write_text("{{ links.guide }} {{ links.article }}")
    rendered = render(config(str(tmp_path)), row(company='"><img src=x onerror=alert(1)>'))
    assert "<img src=x" not in rendered.html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in rendered.html
    assert "<script>" not in rendered.html


def test_newlines_in_lead_fields_cannot_inject_headers():
    lead = row(first_name="Ada\r\nBcc: victim@example.net", last_name="L\nX-Evil: 1")
    cfg = config()
    rendered = render(cfg, lead)
    message = build_message(
        cfg,
        rendered,
        to_email=lead.email,
        to_name=lead_context(lead)["full_name"],
        message_id=message_id_for(cfg, SEND_ID),
    )
    parsed = message_from_bytes(to_bytes(message), policy=policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert parsed["Subject"] == "Your guide, Ada Bcc: victim@example.net"
    assert len(parsed.get_all("To")) == 1


def test_links_are_tracked_and_lead_only_to_the_emails_own_urls(tmp_path):
    (tmp_path / "guide.html.j2").write_text(
        '<a href="{{ links.guide }}">Guide</a> '
        '<a class="x" href="https://other.example.com/p?a=1&amp;b=2">Other</a> '
        "<a href='mailto:team@example.com'>Mail us</a> "
        '<a href="https://c.example.com/a?x=1&amp;y=2">Article, written out</a>'
    )
    (tmp_path / "guide.txt.j2").write_text("Guide: {{ links.guide }}")
    rendered = render(config(str(tmp_path)), row())
    assert rendered.links == {
        "guide": "https://c.example.com/guide.pdf",
        "article": "https://c.example.com/a?x=1&y=2",
        "href-3": "https://other.example.com/p?a=1&b=2",
    }
    targets = re.findall(r'href=["\'](.*?)["\']', rendered.html)
    clicks = [t for t in targets if t.startswith("https://t.example.com/v1/track/click/")]
    payloads = [tokens.verify(SECRET, tokens.CLICK, t.rsplit("/", 1)[1]) for t in clicks]
    assert [p["l"] for p in payloads] == ["guide", "href-3", "article"]
    assert {p["s"] for p in payloads} == {SEND_ID}
    assert "mailto:team@example.com" in targets
    assert "other.example.com" not in rendered.html and "c.example.com" not in rendered.html
    assert "https://t.example.com/v1/track/click/" in rendered.text


def test_every_email_has_a_footer_with_the_unsubscribe_link_and_an_open_pixel():
    rendered = render(config(), row())
    assert rendered.unsubscribe_url is not None
    payload = tokens.verify(SECRET, tokens.UNSUBSCRIBE, rendered.unsubscribe_url.rsplit("/", 1)[1])
    assert payload == {"d": "lead-1", "s": SEND_ID}
    assert rendered.unsubscribe_url in rendered.html and rendered.unsubscribe_url in rendered.text
    assert "Example &amp; Co" in rendered.html and "1 Main St" in rendered.text
    pixel = re.search(r'<img src="(https://t\.example\.com/v1/track/open/[^"]+)"', rendered.html)
    assert pixel is not None
    assert rendered.html.index(pixel.group(0)) < rendered.html.index("</body>")


def test_the_message_has_one_click_unsubscribe_headers_and_both_parts():
    cfg = config()
    rendered = render(cfg, row())
    message = build_message(
        cfg,
        rendered,
        to_email="ada@example.com",
        to_name="Ada Lovelace",
        message_id=message_id_for(cfg, SEND_ID),
    )
    wire = to_bytes(message)
    parsed = message_from_bytes(wire, policy=policy.default)
    assert parsed["List-Unsubscribe"] == f"<{rendered.unsubscribe_url}>"
    assert f"List-Unsubscribe: <{rendered.unsubscribe_url}>".encode() in wire  # not encoded
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Message-ID"] == f"<{SEND_ID}@example.com>"
    assert parsed["To"] == "Ada Lovelace <ada@example.com>"
    assert parsed.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in parsed.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert b"\r\n" in wire and max(len(line) for line in wire.split(b"\r\n")) <= 998


def test_the_confirmation_email_has_no_tracking_and_no_unsubscribe():
    cfg = config()
    rendered = Templates(cfg).render_confirmation(
        lead_context(row(first_name=HOSTILE)),
        confirm_url="https://t.example.com/v1/confirm/tok",
        valid_days=7,
    )
    assert rendered.unsubscribe_url is None and rendered.links == {}
    assert "https://t.example.com/v1/confirm/tok" in rendered.text
    assert "/v1/track/" not in rendered.html and "<script>" not in rendered.html
    assert "7 days" in rendered.text
