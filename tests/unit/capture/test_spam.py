"""Spam rules: honeypot, fill time, throwaway domains, token buckets, captcha verification."""

from __future__ import annotations

import httpx
import pytest

from services.capture.captcha import captcha_token, verify_captcha
from services.capture.settings import CaptchaConfig, FormConfig, RateLimitConfig
from services.capture.spam import (
    RateLimiter,
    control_fields,
    fill_seconds,
    form_spam_reason,
    is_disposable,
)

FORM = FormConfig(min_fill_seconds=3)


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"email": "a@example.com"}, None),
        ({"email": "a@example.com", "website": "  "}, None),
        ({"email": "a@example.com", "website": "http://spam.example"}, "honeypot"),
        ({"email": "a@example.com", "lf_elapsed_ms": "900"}, "too_fast"),
        ({"email": "a@example.com", "lf_elapsed_ms": "4000"}, None),
        ({"email": "a@example.com", "lf_rendered_at": "99000"}, "too_fast"),  # 1 s before "now"
        ({"email": "a@example.com", "lf_rendered_at": "90000"}, None),
        ({"email": "a@example.com", "lf_elapsed_ms": "nan"}, None),  # unknown timing passes
    ],
)
def test_form_spam_signals(data, reason):
    assert form_spam_reason(FORM, data, now_ms=100_000) == reason


def test_fill_time_prefers_the_pages_own_measure_over_clocks():
    assert fill_seconds({"lf_elapsed_ms": "2500", "lf_rendered_at": "1"}, 100_000) == 2.5
    assert fill_seconds({}, 100_000) is None


def test_control_fields_include_the_forms_honeypot():
    assert {"website", "lf_rendered_at", "idempotency_key", "cf-turnstile-response"} <= (
        control_fields(FORM)
    )
    assert "trap" in control_fields(FormConfig(honeypot_field="trap"))


def test_disposable_domains_with_allow_and_block_lists():
    assert is_disposable("x@mailinator.com", FORM)
    assert is_disposable("x@eu.mailinator.com", FORM)  # subdomain of a throwaway domain
    assert not is_disposable("x@example.com", FORM)
    assert not is_disposable(None, FORM)
    allowing = FormConfig(allowed_email_domains=["mailinator.com"])
    assert not is_disposable("x@mailinator.com", allowing)
    blocking = FormConfig(blocked_email_domains=["rival.example"], block_disposable_emails=False)
    assert is_disposable("x@rival.example", blocking)
    assert not is_disposable("x@mailinator.com", blocking)


def test_token_bucket_allows_a_burst_then_refills():
    limiter = RateLimiter()
    assert [limiter.acquire("k", 3, now=0.0) for _ in range(3)] == [0, 0, 0]
    wait = limiter.acquire("k", 3, now=0.0)
    assert wait == pytest.approx(20.0)  # 3 a minute: one token every 20 s
    assert limiter.acquire("k", 3, now=20.0) == 0
    assert limiter.acquire("other", 3, now=20.0) == 0


def test_form_limits_per_ip_and_per_form_and_bounded_memory():
    form = FormConfig(rate_limit=RateLimitConfig(per_ip_per_minute=2, per_form_per_minute=3))
    limiter = RateLimiter(max_keys=10)
    assert limiter.check_form("f", form, "1.1.1.1", 0) == 0
    assert limiter.check_form("f", form, "1.1.1.1", 0) == 0
    assert limiter.check_form("f", form, "1.1.1.1", 0) > 0  # this address is done
    assert limiter.check_form("f", form, "2.2.2.2", 0) == 0  # the form's third
    assert limiter.check_form("f", form, "3.3.3.3", 0) > 0  # the form is done
    for i in range(50):
        limiter.acquire(("ip", i), 1, 0)
    assert len(limiter._buckets) <= 10
    assert limiter.check_form("f", FormConfig(), "1.1.1.1", 0) == 0  # no limits configured


def _client(answer: httpx.Response | Exception, seen: list[httpx.Request]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


TURNSTILE = CaptchaConfig(provider="turnstile", secret="s3cret")
RECAPTCHA = CaptchaConfig(provider="recaptcha", secret="r", min_score=0.5)


@pytest.mark.parametrize(
    "config, answer, reason",
    [
        (TURNSTILE, httpx.Response(200, json={"success": True}), None),
        (
            TURNSTILE,
            httpx.Response(200, json={"success": False, "error-codes": ["x"]}),
            "captcha_failed",
        ),
        (TURNSTILE, httpx.Response(503, text="down"), "captcha_unverified"),
        (TURNSTILE, httpx.ConnectError("refused"), "captcha_unverified"),
        (RECAPTCHA, httpx.Response(200, json={"success": True, "score": 0.9}), None),
        (RECAPTCHA, httpx.Response(200, json={"success": True, "score": 0.1}), "captcha_low_score"),
    ],
)
async def test_captcha_verification(config, answer, reason):
    seen: list[httpx.Request] = []
    async with _client(answer, seen) as client:
        assert await verify_captcha(config, "tok", "203.0.113.7", client) == reason
    body = seen[0].content.decode()
    assert "secret=" in body and "response=tok" in body and "remoteip=203.0.113.7" in body
    assert str(seen[0].url) == config.url


async def test_missing_captcha_token_needs_no_call():
    seen: list[httpx.Request] = []
    async with _client(httpx.Response(200, json={"success": True}), seen) as client:
        assert await verify_captcha(TURNSTILE, None, None, client) == "captcha_missing"
    assert seen == []
    assert captcha_token(TURNSTILE, {"cf-turnstile-response": " t "}) == "t"
    assert captcha_token(RECAPTCHA, {"g-recaptcha-response": "g"}) == "g"
