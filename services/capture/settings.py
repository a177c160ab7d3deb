"""Capture's configuration: the `forms` section (and the shared `channels` section).

`forms` maps form ids to landing-page forms. One key in it is reserved:
`forms.platforms` holds the ad-platform and lead-vendor credentials (Meta, Google,
LinkedIn, TikTok, signed webhooks) and the retrieval retry policy. A form links the
platform lead forms that feed it with its own `sources:` block, so a Meta or Google
lead gets that form's field mapping, consent wording and default phone region.

The file is over 300 lines because each setting carries its description (they are the
config reference) and the cross-checks between forms and platforms live with them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, HttpUrl, RootModel, ValidationError, model_validator

from services.capture.sources.common import LEAD_FIELDS
from shared.config import (
    ChannelsConfig,
    ConfigError,
    ConfigProblem,
    RawConfig,
    StrictModel,
    validate_sections,
)

PLATFORMS_KEY = "platforms"
PLATFORMS = ("meta", "google", "linkedin", "tiktok")
CAPTCHA_VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
}


class ConsentConfig(StrictModel):
    """How a form asks for marketing consent."""

    field: str = Field(default="marketing_consent", description="Checkbox input name.")
    text: str = Field(default="", description="The consent wording shown next to the box.")
    version: str = Field(default="v1")
    double_opt_in: bool = Field(
        default=False, description="Consent counts only after the confirmation email is clicked."
    )
    implied: bool = Field(default=False, description="Submitting the form is consent.")


class RateLimitConfig(StrictModel):
    """Token buckets per replica: a burst of N, refilled at N per minute."""

    per_ip_per_minute: int | None = Field(
        default=None, ge=1, description="Submissions one IP address may make to this form."
    )
    per_form_per_minute: int | None = Field(
        default=None, ge=1, description="Submissions this form accepts from everyone together."
    )


class CaptchaConfig(StrictModel):
    """Cloudflare Turnstile or Google reCAPTCHA, verified server-side."""

    provider: Literal["turnstile", "recaptcha"]
    secret: str = Field(description="The provider's secret key (use ${ENV}).")
    verify_url: HttpUrl | None = Field(
        default=None, description="Siteverify endpoint (default: the provider's own)."
    )
    min_score: float = Field(
        default=0.5, ge=0, le=1, description="reCAPTCHA v3: scores below this are spam."
    )
    timeout_seconds: float = Field(default=5, gt=0)

    @property
    def url(self) -> str:
        return str(self.verify_url) if self.verify_url else CAPTCHA_VERIFY_URLS[self.provider]


class SourceLink(StrictModel):
    """The lead forms of one ad platform that feed a leadflow form."""

    form_ids: list[str] = Field(
        min_length=1, description="The platform's lead form ids (strings: they exceed 2^53)."
    )
    google_key: str | None = Field(
        default=None, description="Google Ads only: the key typed into the lead form's webhook."
    )

    @model_validator(mode="before")
    @classmethod
    def _ids_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("form_ids"), list):
            data = {**data, "form_ids": [str(v) for v in data["form_ids"]]}
        return data


class FormSources(StrictModel):
    """Which platform lead forms land in this form."""

    meta: SourceLink | None = None
    google: SourceLink | None = None
    linkedin: SourceLink | None = None
    tiktok: SourceLink | None = None

    @model_validator(mode="after")
    def _google_needs_a_key(self) -> FormSources:
        if self.google is not None and not self.google.google_key:
            raise ValueError("google needs a google_key")
        return self


class FormConfig(StrictModel):
    """One landing-page form."""

    type: str = Field(
        default="contact",
        description="The form's purpose, for scoring rules: "
        "demo_request, contact_me, newsletter, download...",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description=f"input name → lead field ({', '.join(LEAD_FIELDS)}) or any custom field name.",
    )
    required: list[str] = Field(default_factory=lambda: ["email"])
    allowed_origins: list[str] = Field(default_factory=list)
    thank_you_url: HttpUrl | None = None
    error_url: HttpUrl | None = None
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    default_region: str = Field(default="US", min_length=2, max_length=2)
    honeypot_field: str | None = Field(default="website")
    min_fill_seconds: float = Field(default=0, ge=0)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    block_disposable_emails: bool = Field(
        default=True, description="Quarantine addresses at throwaway-mailbox domains."
    )
    blocked_email_domains: list[str] = Field(default_factory=list)
    allowed_email_domains: list[str] = Field(
        default_factory=list, description="Never treated as disposable."
    )
    captcha: CaptchaConfig | None = None
    sources: FormSources = Field(default_factory=FormSources)


class FormsConfig(RootModel[dict[str, FormConfig]]):
    """The forms of the `forms` section: form id → form."""


class MetaConfig(StrictModel):
    """Meta (Facebook / Instagram) Lead Ads."""

    app_secret: str = Field(default="", description="Signs X-Hub-Signature-256.")
    verify_token: str = Field(default="", description="Echoed in the subscription handshake.")
    page_access_token: str = Field(
        default="", description="Page token with leads_retrieval (default for every page)."
    )
    page_tokens: dict[str, str] = Field(
        default_factory=dict, description="Page id → its own Page access token."
    )
    graph_url: str = Field(default="https://graph.facebook.com/v21.0")
    default_form: str | None = Field(
        default=None, description="leadflow form for Meta forms no form links."
    )


class GoogleConfig(StrictModel):
    """Google Ads lead form extensions and lead forms."""

    google_key: str = Field(
        default="", description="Key of Google lead forms no leadflow form links (optional)."
    )
    default_form: str | None = None


class LinkedInConfig(StrictModel):
    """LinkedIn Lead Sync."""

    client_secret: str = Field(default="", description="Signs X-LI-Signature and the challenge.")
    access_token: str = Field(default="", description="Token with r_marketing_leadgen_automation.")
    api_url: str = Field(default="https://api.linkedin.com/rest")
    api_version: str = Field(default="202601")
    default_form: str | None = None


class TikTokConfig(StrictModel):
    """TikTok Lead Generation (Instant Forms)."""

    client_secret: str = Field(default="", description="Signs TikTok-Signature.")
    tolerance_seconds: int = Field(default=300, ge=1)
    default_form: str | None = None


class SignedWebhookConfig(StrictModel):
    """A lead vendor or tool posting signed webhooks to /v1/webhooks/<name>."""

    secrets: list[str] = Field(
        min_length=1, description="Shared secrets; several during a rotation."
    )
    tolerance_seconds: int = Field(default=300, ge=1, description="Replay window.")
    form: str | None = Field(default=None, description="leadflow form the leads belong to.")
    cost_per_lead: Decimal | None = Field(
        default=None, ge=0, decimal_places=4, description="Price per lead (up to 4 decimals)."
    )


class RetrievalConfig(StrictModel):
    """How leads that arrive as ids (Meta, LinkedIn) are fetched: retries never give up."""

    initial_backoff_seconds: float = Field(default=2, gt=0)
    max_backoff_seconds: float = Field(default=900, gt=0)
    poll_seconds: float = Field(default=5, gt=0, description="Fallback scan for due jobs.")
    timeout_seconds: float = Field(default=10, gt=0)
    batch_size: int = Field(default=20, ge=1)


class PlatformsConfig(StrictModel):
    """`forms.platforms`: ad-platform credentials, signed webhooks, retrieval policy."""

    meta: MetaConfig = Field(default_factory=MetaConfig)
    google: GoogleConfig = Field(default_factory=GoogleConfig)
    linkedin: LinkedInConfig = Field(default_factory=LinkedInConfig)
    tiktok: TikTokConfig = Field(default_factory=TikTokConfig)
    webhooks: dict[str, SignedWebhookConfig] = Field(default_factory=dict)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    accept_test_leads: bool = Field(
        default=True, description="Store platform test leads (flagged is_test, never routed)."
    )

    @model_validator(mode="after")
    def _webhook_names(self) -> PlatformsConfig:
        for name in self.webhooks:
            if name in PLATFORMS:
                raise ValueError(f"webhooks: {name!r} is a built-in platform, pick another name")
        return self


class CaptureConfig(StrictModel):
    """What capture reads from the config file."""

    forms: dict[str, FormConfig] = Field(default_factory=dict)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    platforms: PlatformsConfig = Field(default_factory=PlatformsConfig)

    def form_for(self, platform: str, platform_form_id: str | None) -> str | None:
        """The leadflow form a platform lead form feeds (or the platform's default form)."""
        if platform_form_id is not None:
            for form_id, form in self.forms.items():
                link = getattr(form.sources, platform, None)
                if link is not None and platform_form_id in link.form_ids:
                    return form_id
        default = getattr(self.platforms, platform, None)
        return getattr(default, "default_form", None)

    def google_key_for(self, platform_form_id: str) -> str | None:
        """The google_key of a Google lead form: its linked form's, else the platform default."""
        for form in self.forms.values():
            link = form.sources.google
            if link is not None and platform_form_id in link.form_ids:
                return link.google_key
        return self.platforms.google.google_key or None


def load(raw: RawConfig) -> CaptureConfig:
    """Validate capture's sections of the config file."""
    section = raw.section("forms")
    if not isinstance(section, dict):
        section = {}
    forms_raw = {k: v for k, v in section.items() if k != PLATFORMS_KEY}
    problems: list[ConfigProblem] = []
    forms: dict[str, FormConfig] = {}
    platforms = PlatformsConfig()
    try:
        forms = FormsConfig.model_validate(forms_raw).root
    except ValidationError as exc:
        problems.extend(raw.problems_from(exc, prefix=("forms",)))
    try:
        platforms = PlatformsConfig.model_validate(section.get(PLATFORMS_KEY) or {})
    except ValidationError as exc:
        problems.extend(raw.problems_from(exc, prefix=("forms", PLATFORMS_KEY)))
    try:
        channels = validate_sections(raw, {"channels": ChannelsConfig})["channels"]
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    problems.extend(_cross_check(raw, forms, platforms))
    if problems:
        raise ConfigError(problems)
    return CaptureConfig(forms=forms, channels=channels, platforms=platforms)


def _cross_check(
    raw: RawConfig, forms: dict[str, FormConfig], platforms: PlatformsConfig
) -> list[ConfigProblem]:
    """Links between forms and platforms: known form names, each platform form linked once."""
    problems: list[ConfigProblem] = []

    def problem(path: tuple[str | int, ...], message: str) -> None:
        problems.append(
            ConfigProblem(raw.file, raw.line_of(path), ".".join(map(str, path)), message)
        )

    for platform in (*PLATFORMS, "webhooks"):
        settings = getattr(platforms, platform)
        targets = (
            {name: hook.form for name, hook in settings.items()}
            if platform == "webhooks"
            else {"default_form": settings.default_form}
        )
        for key, target in targets.items():
            if target is not None and target not in forms:
                path = ("forms", PLATFORMS_KEY, platform, key)
                problem((*path, "form") if platform == "webhooks" else path, f"no form {target!r}")
    seen: dict[tuple[str, str], str] = {}
    for form_id, form in forms.items():
        for platform in PLATFORMS:
            link = getattr(form.sources, platform)
            for index, platform_form in enumerate(link.form_ids if link else ()):
                owner = seen.setdefault((platform, platform_form), form_id)
                if owner != form_id:
                    problem(
                        ("forms", form_id, "sources", platform, "form_ids", index),
                        f"{platform} form {platform_form} is already linked to form {owner!r}",
                    )
    return problems
