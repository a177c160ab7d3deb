"""Capture's config (forms, the reserved `platforms` key) and platform leads as capture commands."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from services.capture.domain import InvalidLead, check_limits, normalize_submission
from services.capture.platforms import backoff_seconds, command_from_inbound
from services.capture.settings import FormConfig, load
from services.capture.sources import InboundLead, RetrievalError
from shared.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[3]


def _load(tmp_path: Path, text: str):
    path = tmp_path / "leadflow.yaml"
    path.write_text(text)
    return load(load_config(path, environ={}))


def test_the_shipped_example_is_valid_and_links_platform_forms():
    config = load(load_config(ROOT / "leadflow.example.yaml", environ={}))
    assert "platforms" not in config.forms
    assert config.platforms.meta.app_secret == "dev-meta-secret"
    assert config.google_key_for("18698608977") == "dev-google-key"
    assert config.google_key_for("1") is None
    assert config.form_for("linkedin", "5236798") == "demo-request"
    assert config.form_for("meta", "unknown-form") == "demo-request"  # the default form
    assert config.form_for("google", "unknown-form") is None
    assert config.platforms.webhooks["acme-leads"].form == "guide-download"


def test_mistakes_name_their_line(tmp_path):
    text = """\
forms:
  platforms:
    meta:
      app_secret: s
      default_form: nowhere
    webhooks:
      vendor: {secrets: [x], form: missing}
  a:
    sources:
      meta: {form_ids: [111]}
  b:
    sources:
      meta: {form_ids: ["111"]}
      google: {form_ids: ["9"]}
"""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    problems = {p.path: p.line for p in caught.value.problems}
    assert problems == {"forms.b.sources": 12}
    fixed = text.replace('      google: {form_ids: ["9"]}\n', "")
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, fixed)
    problems = {p.path: (p.line, p.message) for p in caught.value.problems}
    assert problems["forms.platforms.meta.default_form"][0] == 5
    assert problems["forms.platforms.webhooks.vendor.form"][0] == 7
    assert "already linked to form 'a'" in problems["forms.b.sources.meta.form_ids.0"][1]


def test_webhook_names_cannot_shadow_platforms(tmp_path):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "forms:\n  platforms:\n    webhooks:\n      google: {secrets: [x]}\n")
    assert "built-in platform" in str(caught.value)


def test_platform_lead_becomes_a_command_with_exact_ids(tmp_path):
    config = load(load_config(ROOT / "leadflow.example.yaml", environ={}))
    lead = InboundLead(
        source="google",
        external_id="TeSter-1",
        fields={"email": "a@example.com", "full_name": "Ada L"},
        form_id="18698608977",
        campaign_id="120211234567890123",
        ad_id="30000000000",
        adgroup_id="20000000000",
        is_test=True,
        created_at=datetime(2026, 11, 22, tzinfo=UTC),
        raw_platform={"gcl_id": "Cj0", "api_version": "1.0"},
    )
    command = command_from_inbound(lead, config)
    assert (command.source, command.form_id, command.dedupe_key) == (
        "google",
        "demo-request",
        "TeSter-1",
    )
    assert command.is_test and command.from_platform
    assert command.attribution == {
        "gclid": "Cj0",
        "campaign_id": "120211234567890123",
        "ad_id": "30000000000",
    }
    assert command.platform["adgroup_id"] == "20000000000"
    assert command.platform["api_version"] == "1.0"

    vendor = InboundLead(
        source="webhook",
        external_id="v1",
        fields={"email": "b@example.com"},
        raw_platform={"utm_campaign": "list", "hidden_utm_medium": "email"},
    )
    command = command_from_inbound(vendor, config, vendor="acme-leads")
    assert command.dedupe_key == "acme-leads:v1"
    assert command.cost == Decimal("12.5")
    assert command.attribution == {
        "utm_campaign": "list",
        "utm_medium": "email",
        "utm_source": "acme-leads",
    }


def test_platform_leads_skip_required_and_keep_an_unparseable_phone_aside():
    form = FormConfig(fields={"work_email": "email"}, required=["work_email"])
    lead = normalize_submission({"email": "a@example.com", "phone": "12"}, form, from_platform=True)
    assert lead.contact.phone is None and lead.fields["phone_unverified"] == "12"
    with pytest.raises(InvalidLead):
        normalize_submission({"phone": "12"}, form, from_platform=True)
    with pytest.raises(InvalidLead) as caught:
        normalize_submission({"phone": "+14155550123"}, form)
    assert caught.value.field == "work_email"
    assert normalize_submission({"phone": "+14155550123"}, form, from_platform=True).contact.phone


def test_limits_on_field_count_and_names():
    with pytest.raises(InvalidLead) as caught:
        check_limits({f"f{i}": "x" for i in range(101)})
    assert (caught.value.code, caught.value.field) == ("too_many_fields", "body")
    with pytest.raises(InvalidLead) as caught:
        check_limits({"x" * 101: "y"})
    assert caught.value.code == "field_too_long"


def test_backoff_grows_to_its_cap_and_honours_retry_after():
    config = load(load_config(ROOT / "leadflow.example.yaml", environ={}))
    policy = config.platforms.retrieval
    delays = [
        backoff_seconds(n, config, RetrievalError("x", retryable=True)) for n in (1, 2, 3, 20)
    ]
    assert delays[0] == pytest.approx(policy.initial_backoff_seconds, rel=0.11)
    assert delays[1] == pytest.approx(2 * policy.initial_backoff_seconds, rel=0.11)
    assert delays[3] <= policy.max_backoff_seconds * 1.1
    throttled = RetrievalError("x", retryable=True, retry_after=120)
    assert backoff_seconds(1, config, throttled) == 120
    permanent = RetrievalError("x", retryable=False)
    assert backoff_seconds(1, config, permanent) == policy.max_backoff_seconds


def test_a_webhook_cost_per_lead_keeps_four_decimals_and_refuses_more(tmp_path):
    hook = "forms:\n  platforms:\n    webhooks:\n      vendor: {secrets: [x], cost_per_lead: %s}\n"
    config = _load(tmp_path, hook % "2.4575")
    lead = InboundLead(source="webhook", external_id="v1", fields={"email": "b@example.com"})
    assert command_from_inbound(lead, config, vendor="vendor").cost == Decimal("2.4575")
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, hook % "2.45755")
    [problem] = caught.value.problems
    assert (problem.path, problem.line) == ("forms.platforms.webhooks.vendor.cost_per_lead", 4)
    assert "4 decimal places" in problem.message
