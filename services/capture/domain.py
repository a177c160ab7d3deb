"""Capture's rules: normalize a contact, resolve the channel, decide consent. No I/O.

The module is over 300 lines because the contact's normalisation (email with its
cached domain check, phone, names) and the channel and consent rules that read the
normalised contact are read together.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, EMAIL_MAX_LENGTH

from services.capture.settings import LEAD_FIELDS, FormConfig
from shared.config import AttributionRule, ChannelsConfig
from shared.events import Attribution, Contact

ATTRIBUTION_KEYS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "gclid",
    "fbclid",
    "msclkid",
    "ttclid",
    "li_fat_id",
    "promo_code",
    "referrer",
    "landing_page",
    "campaign_id",
    "ad_id",
)
CLICK_IDS = ("gclid", "fbclid", "msclkid", "ttclid", "li_fat_id")
MONEY_QUANTUM = Decimal("0.0001")  # money is kept in ten-thousandths wherever it is stored
MAX_COST = Decimal(10) ** 10  # api_keys.cost_per_lead is Numeric(14, 4)
MAX_FIELD_LENGTH = 2000
MAX_FIELDS = 100
MAX_FIELD_NAME_LENGTH = 100


class InvalidLead(ValueError):
    """The submission cannot become a lead; `field` names the culprit."""

    def __init__(self, field: str, message: str, code: str = "invalid_field") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code


def check_limits(data: Mapping[str, Any]) -> None:
    """Refuse submissions with too many fields or overlong names and values."""
    if len(data) > MAX_FIELDS:
        raise InvalidLead("body", f"more than {MAX_FIELDS} fields", code="too_many_fields")
    for key, value in data.items():
        if len(str(key)) > MAX_FIELD_NAME_LENGTH:
            raise InvalidLead(
                str(key)[:MAX_FIELD_NAME_LENGTH],
                f"field names are at most {MAX_FIELD_NAME_LENGTH} characters",
                code="field_too_long",
            )
        if isinstance(value, str) and len(value) > MAX_FIELD_LENGTH:
            raise InvalidLead(
                str(key), f"longer than {MAX_FIELD_LENGTH} characters", code="field_too_long"
            )


def parse_cost(text: str) -> Decimal:
    """A price per lead: a non-negative amount with at most four decimals, never rounded."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount (e.g. 12.50)") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not a non-negative amount (e.g. 12.50)")
    if value >= MAX_COST:
        raise ValueError(f"{text} is too large (at most {MAX_COST - MONEY_QUANTUM})")
    if value != value.quantize(MONEY_QUANTUM):
        raise ValueError(f"{text} has more than four decimals (amounts are kept to 0.0001)")
    return value


@dataclass(frozen=True)
class NormalizedLead:
    """A submission after mapping and normalization."""

    contact: Contact
    fields: dict[str, Any] = field(default_factory=dict)
    attribution: dict[str, str] = field(default_factory=dict)


def normalize_email(value: str) -> str:
    """A syntactically valid email, lower-cased (no DNS lookups)."""
    text = value.strip()
    local, at, domain = text.partition("@")
    # Most addresses are a plain ASCII local part at a domain seen before: for those,
    # email-validator's answer is the local part as written at the domain's normal form
    # (it checks such a local part with this same pattern and only the lengths below
    # besides), so only the domain's check is worth keeping, once per domain.
    if at and DOT_ATOM_TEXT.match(local):
        names = _domain_names(domain)
        if names is not None:
            normalized = f"{local}@{names[0]}"
            longest = max(len(text.encode()), len(normalized.encode()), len(local) + 1 + names[1])
            if longest <= EMAIL_MAX_LENGTH:
                return normalized.lower()
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidLead("email", str(exc)) from None
    return result.normalized.lower()


@functools.lru_cache(maxsize=4096)
def _domain_names(domain: str) -> tuple[str, int] | None:
    """A valid domain's normal form and the length of its ASCII form; None when it is
    not valid (the whole address is then checked, for the exact error)."""
    try:
        result = validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return result.domain, len(result.ascii_domain.encode())


def normalize_phone(value: str, region: str) -> tuple[str, str | None]:
    """The number in E.164 and the country it belongs to."""
    try:
        number = phonenumbers.parse(value.strip(), region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidLead("phone", f"not a phone number ({exc})") from None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise InvalidLead("phone", "not a valid phone number")
    country = phonenumbers.region_code_for_number(number)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), (
        country if country and country != "ZZ" else None
    )


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def normalize_submission(
    data: Mapping[str, Any],
    form: FormConfig | None,
    default_region: str = "US",
    *,
    from_platform: bool = False,
) -> NormalizedLead:
    """Map raw input through the form's field mapping and normalize the contact.

    Ad-platform leads skip the form's `required` list (the platform's own form decided
    what to ask), and a phone number the platform let through but that does not parse
    is kept as the custom field `phone_unverified` when an email identifies the person:
    nobody is there to correct it.
    """
    mapping = form.fields if form else {}
    region = form.default_region if form else default_region
    check_limits(data)
    try:
        return _normalize(data, mapping, None if from_platform else form, region, from_platform)
    except InvalidLead as exc:
        # Name the input the visitor filled in, not the lead field it maps to.
        inputs = [name for name, target in mapping.items() if target == exc.field]
        if inputs and exc.field not in data:
            raise InvalidLead(inputs[0], exc.message) from None
        raise


def _normalize(
    data: Mapping[str, Any],
    mapping: Mapping[str, str],
    form: FormConfig | None,
    region: str,
    lenient_phone: bool = False,
) -> NormalizedLead:
    mapped: dict[str, Any] = {}
    attribution: dict[str, str] = {}
    for key, raw_value in data.items():
        if isinstance(raw_value, dict | list):
            raise InvalidLead(key, "must be a single value")
        target = mapping.get(key, key)
        if target in ATTRIBUTION_KEYS:
            text = _clean(raw_value)
            if text:
                attribution[target] = text[:500]
            continue
        mapped[target] = raw_value
    if form:
        for name in form.required:
            target = mapping.get(name, name)
            if _clean(mapped.get(target)) is None:
                raise InvalidLead(name, "is required")
    first, last = _clean(mapped.pop("first_name", None)), _clean(mapped.pop("last_name", None))
    full = _clean(mapped.pop("full_name", None)) or _clean(mapped.pop("name", None))
    if full and not (first or last):
        first, _, rest = full.partition(" ")
        last = rest.strip() or None
    email_raw, phone_raw = _clean(mapped.pop("email", None)), _clean(mapped.pop("phone", None))
    if not email_raw and not phone_raw:
        raise InvalidLead("email", "an email or a phone number is required")
    email = normalize_email(email_raw) if email_raw else None
    try:
        phone, phone_country = normalize_phone(phone_raw, region) if phone_raw else (None, None)
    except InvalidLead:
        if not (lenient_phone and email):
            raise
        phone, phone_country = None, None
        mapped["phone_unverified"] = phone_raw
    country = _clean(mapped.pop("country", None))
    if country:
        country = country.upper() if len(country) == 2 else country
    contact = Contact(
        email=email,
        phone=phone,
        first_name=first,
        last_name=last,
        company=_clean(mapped.pop("company", None)),
        job_title=_clean(mapped.pop("job_title", None)),
        country=country or phone_country,
    )
    extra = {k: _scalar(v) for k, v in mapped.items() if k not in LEAD_FIELDS}
    return NormalizedLead(contact=contact, fields=extra, attribution=attribution)


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value).strip()
    return text or None


def _matches(expected: str | list[str] | None, actual: str | None) -> bool:
    if expected is None:
        return True
    if actual is None:
        return False
    options = [expected] if isinstance(expected, str) else expected
    return actual.lower() in {o.lower() for o in options}


def rule_matches(
    rule: AttributionRule, source: str, form_id: str | None, attribution: Mapping[str, str]
) -> bool:
    """True when every condition the rule sets holds for this touch."""
    if rule.source is not None and rule.source != source:
        return False
    if rule.click_id is not None and not attribution.get(rule.click_id):
        return False
    if (
        rule.referrer_contains is not None
        and rule.referrer_contains.lower() not in (attribution.get("referrer") or "").lower()
    ):
        return False
    return (
        _matches(rule.utm_source, attribution.get("utm_source"))
        and _matches(rule.utm_medium, attribution.get("utm_medium"))
        and _matches(rule.utm_campaign, attribution.get("utm_campaign"))
        and _matches(rule.promo_code, attribution.get("promo_code"))
        and _matches(rule.form_id, form_id)
    )


def resolve_channel(
    channels: ChannelsConfig, source: str, form_id: str | None, attribution: Mapping[str, str]
) -> str:
    """The first matching rule's channel, else the default."""
    for rule in channels.rules:
        if rule_matches(rule, source, form_id, attribution):
            return rule.channel
    return channels.default


def build_attribution(
    channels: ChannelsConfig, source: str, form_id: str | None, attribution: Mapping[str, str]
) -> Attribution:
    """The touch's attribution with its resolved channel."""
    channel = resolve_channel(channels, source, form_id, attribution)
    return Attribution(
        channel=channel,
        source=source,
        **{k: v for k, v in attribution.items() if k in ATTRIBUTION_KEYS},
    )


def marketing_consent(form: FormConfig | None, data: Mapping[str, Any]) -> bool:
    """Whether this submission gives marketing consent."""
    if form is None:
        return _truthy(data.get("marketing_consent"))
    if form.consent.implied:
        return True
    return _truthy(data.get(form.consent.field))


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in {"1", "true", "yes", "on", "y", "checked"}
