"""Capture's rules: normalization, channel resolution, consent."""

from __future__ import annotations

import pytest

from services.capture.domain import (
    InvalidLead,
    marketing_consent,
    normalize_submission,
    resolve_channel,
)
from services.capture.settings import ConsentConfig, FormConfig
from shared.config import AttributionRule, ChannelsConfig

FORM = FormConfig(
    fields={"work_email": "email", "name": "full_name", "tel": "phone"},
    required=["work_email"],
    default_region="GB",
)


def test_email_lower_cased_phone_e164_and_names_split():
    lead = normalize_submission(
        {
            "work_email": " Ada@Example.COM ",
            "name": "Ada King Lovelace",
            "tel": "020 7946 0958",
            "company_size": "120",
            "utm_source": "google",
        },
        FORM,
    )
    assert lead.contact.email == "ada@example.com"
    assert lead.contact.phone == "+442079460958"
    assert lead.contact.country == "GB"
    assert (lead.contact.first_name, lead.contact.last_name) == ("Ada", "King Lovelace")
    assert lead.fields == {"company_size": "120"}
    assert lead.attribution == {"utm_source": "google"}


@pytest.mark.parametrize(
    "data, field",
    [
        ({}, "work_email"),
        ({"work_email": "not-an-email"}, "work_email"),
        ({"work_email": "a@example.com", "tel": "12"}, "tel"),
        ({"work_email": "a@example.com", "x": "y" * 3000}, "x"),
        ({"work_email": "a@example.com", "x": {"nested": 1}}, "x"),
    ],
)
def test_invalid_input_names_the_input_field(data, field):
    with pytest.raises(InvalidLead) as info:
        normalize_submission(data, FORM)
    assert info.value.field == field


def test_an_email_or_a_phone_is_required_without_a_form():
    with pytest.raises(InvalidLead):
        normalize_submission({"first_name": "Ada"}, None)
    assert normalize_submission({"phone": "+1 415 555 0132"}, None).contact.phone == "+14155550132"


CHANNELS = ChannelsConfig(
    default="direct",
    rules=[
        AttributionRule(channel="meta_lead_ads", source="meta"),
        AttributionRule(channel="facebook_ads", utm_source=["facebook", "fb"], utm_medium="cpc"),
        AttributionRule(channel="google_ads", click_id="gclid"),
        AttributionRule(channel="radio", promo_code="SPRING26"),
    ],
)


@pytest.mark.parametrize(
    "source, attribution, channel",
    [
        ("meta", {}, "meta_lead_ads"),
        ("form", {"utm_source": "Facebook", "utm_medium": "cpc"}, "facebook_ads"),
        ("form", {"utm_source": "facebook", "utm_medium": "email"}, "direct"),
        ("form", {"gclid": "abc"}, "google_ads"),
        ("api", {"promo_code": "spring26"}, "radio"),
        ("form", {}, "direct"),
    ],
)
def test_first_matching_rule_wins(source, attribution, channel):
    assert resolve_channel(CHANNELS, source, None, attribution) == channel


def test_consent_from_the_forms_checkbox_or_implied():
    form = FormConfig(consent=ConsentConfig(field="optin"))
    assert marketing_consent(form, {"optin": "on"}) is True
    assert marketing_consent(form, {"optin": ""}) is False
    assert marketing_consent(form, {}) is False
    assert marketing_consent(FormConfig(consent=ConsentConfig(implied=True)), {}) is True
