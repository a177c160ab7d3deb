"""Server-side verification of Cloudflare Turnstile and Google reCAPTCHA tokens.

Both providers take a form post of `secret`, `response` (the widget's token) and
`remoteip` at their siteverify URL and answer JSON with `success` (reCAPTCHA v3 adds
`score`). A failed or unverifiable token quarantines the submission rather than
refusing it: a person behind a flaky network is released, not lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from services.capture.settings import CaptchaConfig
from services.capture.spam import CAPTCHA_FIELDS

log = logging.getLogger(__name__)


def captcha_token(config: CaptchaConfig, data: Mapping[str, Any]) -> str | None:
    """The widget's token from the submitted form."""
    value = data.get(CAPTCHA_FIELDS[config.provider]) or data.get("captcha_token")
    return str(value).strip() or None if value is not None else None


async def verify_captcha(
    config: CaptchaConfig, token: str | None, remote_ip: str | None, client: httpx.AsyncClient
) -> str | None:
    """None when the visitor passed; otherwise the quarantine reason."""
    if not token:
        return "captcha_missing"
    form = {"secret": config.secret, "response": token}
    if remote_ip:
        form["remoteip"] = remote_ip
    try:
        response = await client.post(config.url, data=form, timeout=config.timeout_seconds)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("%s verification unavailable: %s", config.provider, type(exc).__name__)
        return "captcha_unverified"
    if not isinstance(body, dict):
        log.warning("%s verification answered %s", config.provider, response.status_code)
        return "captcha_unverified"
    if body.get("success") is not True:
        return "captcha_failed"
    score = body.get("score")
    low = isinstance(score, int | float) and score < config.min_score
    if config.provider == "recaptcha" and low:
        return "captcha_low_score"
    return None
