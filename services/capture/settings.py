"""Capture's configuration: the `forms` section (and the shared `channels` section)."""

from __future__ import annotations

from pydantic import Field, HttpUrl, RootModel

from shared.config import ChannelsConfig, RawConfig, StrictModel, validate_sections

LEAD_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "full_name",
    "company",
    "job_title",
    "country",
)


class ConsentConfig(StrictModel):
    """How a form asks for marketing consent."""

    field: str = Field(default="marketing_consent", description="Checkbox input name.")
    text: str = Field(default="", description="The consent wording shown next to the box.")
    version: str = Field(default="v1")
    double_opt_in: bool = Field(
        default=False, description="Consent counts only after the confirmation email is clicked."
    )
    implied: bool = Field(default=False, description="Submitting the form is consent.")


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


class FormsConfig(RootModel[dict[str, FormConfig]]):
    """The `forms` section: form id → form."""


class CaptureConfig(StrictModel):
    """What capture reads from the config file."""

    forms: dict[str, FormConfig] = Field(default_factory=dict)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)


def load(raw: RawConfig) -> CaptureConfig:
    """Validate capture's sections of the config file."""
    parsed = validate_sections(raw, {"forms": FormsConfig, "channels": ChannelsConfig})
    return CaptureConfig(forms=parsed["forms"].root, channels=parsed["channels"])
