"""Spam rules for landing-page forms: honeypot, fill time, throwaway domains, rate limits. No I/O.

A suspected bot is quarantined (stored, flagged, not published) rather than refused,
so a false positive costs a click on "release", never a lost lead. Rate limits are
the exception: they answer 429 before anything is stored.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from functools import lru_cache
from typing import Any

from services.capture.settings import FormConfig

log = logging.getLogger(__name__)

RENDERED_AT_FIELD = "lf_rendered_at"  # epoch milliseconds when the page showed the form
ELAPSED_FIELD = "lf_elapsed_ms"  # milliseconds between render and submit, measured by the page
IDEMPOTENCY_FIELD = "idempotency_key"  # hidden input: one value per rendered form
CAPTCHA_FIELDS = {"turnstile": "cf-turnstile-response", "recaptcha": "g-recaptcha-response"}
CONTROL_FIELDS = frozenset(
    {RENDERED_AT_FIELD, ELAPSED_FIELD, IDEMPOTENCY_FIELD, *CAPTCHA_FIELDS.values()}
)


def control_fields(form: FormConfig) -> frozenset[str]:
    """Inputs that steer intake and are never stored as lead fields."""
    return CONTROL_FIELDS | ({form.honeypot_field} if form.honeypot_field else set())


def honeypot_filled(form: FormConfig, data: Mapping[str, Any]) -> bool:
    """A person never sees the honeypot input; a bot filling every input does."""
    if not form.honeypot_field:
        return False
    return bool(str(data.get(form.honeypot_field) or "").strip())


def fill_seconds(data: Mapping[str, Any], now_ms: float) -> float | None:
    """How long the visitor took to fill the form; None when the page did not say."""
    elapsed = _number(data.get(ELAPSED_FIELD))
    if elapsed is not None and elapsed >= 0:
        return elapsed / 1000
    rendered = _number(data.get(RENDERED_AT_FIELD))
    if rendered is not None and rendered > 0:
        return max(now_ms - rendered, 0) / 1000
    return None


def too_fast(form: FormConfig, data: Mapping[str, Any], now_ms: float) -> bool:
    """Filled faster than the form's minimum fill time (unknown timing passes)."""
    if form.min_fill_seconds <= 0:
        return False
    seconds = fill_seconds(data, now_ms)
    return seconds is not None and seconds < form.min_fill_seconds


def form_spam_reason(form: FormConfig, data: Mapping[str, Any], now_ms: float) -> str | None:
    """The first spam signal in a raw submission, as a bounded reason label."""
    if honeypot_filled(form, data):
        return "honeypot"
    if too_fast(form, data, now_ms):
        return "too_fast"
    return None


# The most common throwaway-mailbox services, used only if the maintained list is missing.
_FALLBACK_DISPOSABLE = frozenset(
    {
        "10minutemail.com",
        "discard.email",
        "dispostable.com",
        "fakeinbox.com",
        "getnada.com",
        "guerrillamail.com",
        "maildrop.cc",
        "mailinator.com",
        "mailnesia.com",
        "mintemail.com",
        "mohmal.com",
        "sharklasers.com",
        "spamgourmet.com",
        "temp-mail.org",
        "tempmail.com",
        "throwawaymail.com",
        "trashmail.com",
        "yopmail.com",
    }
)


@lru_cache(maxsize=1)
def _disposable_domains() -> frozenset[str]:
    try:
        from disposable_email_domains import blocklist
    except ImportError:
        log.warning("disposable-email-domains is not installed: using a short built-in list")
        return _FALLBACK_DISPOSABLE
    return frozenset(blocklist) | _FALLBACK_DISPOSABLE


def is_disposable(email: str | None, form: FormConfig) -> bool:
    """The address is at a throwaway-mailbox domain (or a parent of one) the form refuses."""
    if not email or "@" not in email:
        return False
    domain = email.rsplit("@", 1)[1].lower()
    candidates = _parents(domain)
    allowed = {d.lower() for d in form.allowed_email_domains}
    if any(c in allowed for c in candidates):
        return False
    blocked = {d.lower() for d in form.blocked_email_domains}
    if any(c in blocked for c in candidates):
        return True
    return form.block_disposable_emails and any(c in _disposable_domains() for c in candidates)


def _parents(domain: str) -> list[str]:
    parts = domain.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1)] or [domain]


def _number(value: Any) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class RateLimiter:
    """Token buckets in this process's memory: a replica's limit, not the fleet's.

    Each bucket holds up to `per_minute` tokens and refills at `per_minute` a minute.
    The least recently used buckets are forgotten past `max_keys`, which bounds memory
    under an address-spraying flood (a forgotten bucket starts full again).
    """

    def __init__(self, max_keys: int = 50_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def acquire(self, key: Hashable, per_minute: int, now: float) -> float:
        """Take a token: 0 when allowed, else the seconds until one is available."""
        capacity = float(per_minute)
        rate = per_minute / 60.0
        tokens, at = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def check_form(self, form_id: str, form: FormConfig, ip: str | None, now: float) -> float:
        """Apply a form's per-IP and per-form limits; the seconds to wait, 0 when allowed."""
        limits = form.rate_limit
        if limits.per_ip_per_minute and ip:
            wait = self.acquire(("ip", form_id, ip), limits.per_ip_per_minute, now)
            if wait:
                return wait
        if limits.per_form_per_minute:
            return self.acquire(("form", form_id), limits.per_form_per_minute, now)
        return 0.0
