"""Signed link tokens: genuine ones verify; altered, misused or expired ones do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.nurture import tokens

SECRET = "k" * 32


def test_a_token_carries_its_payload():
    token = tokens.sign(SECRET, tokens.CLICK, {"s": "abc", "l": "guide"})
    assert tokens.verify(SECRET, tokens.CLICK, token) == {"s": "abc", "l": "guide"}
    assert "@" not in token and "/" not in token


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: "eyJzIjoiZXZpbCIsImwiOiJndWlkZSJ9" + t[t.index(".") :],  # payload swapped
        lambda t: t.replace(".", ""),
        lambda t: "",
        lambda t: "." + t,
        lambda t: t + "." + t,
        lambda t: "!!!." + t.split(".")[1],
    ],
)
def test_an_altered_token_is_refused(mutate):
    token = tokens.sign(SECRET, tokens.CLICK, {"s": "abc", "l": "guide"})
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, tokens.CLICK, mutate(token))


def test_a_token_is_good_for_its_purpose_and_secret_only():
    token = tokens.sign(SECRET, tokens.OPEN, {"s": "abc"})
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, tokens.UNSUBSCRIBE, token)
    with pytest.raises(tokens.BadToken):
        tokens.verify("another secret", tokens.OPEN, token)


def test_confirm_tokens_expire():
    issued = datetime(2026, 11, 25, tzinfo=UTC)
    token = tokens.sign(SECRET, tokens.CONFIRM, {"d": "lead", "t": int(issued.timestamp())})
    week = timedelta(days=7).total_seconds()
    ok = tokens.verify(
        SECRET, tokens.CONFIRM, token, max_age_seconds=week, now=issued + timedelta(days=6)
    )
    assert ok["d"] == "lead"
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify(
            SECRET, tokens.CONFIRM, token, max_age_seconds=week, now=issued + timedelta(days=8)
        )
    undated = tokens.sign(SECRET, tokens.CONFIRM, {"d": "lead"})
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, tokens.CONFIRM, undated, max_age_seconds=week, now=issued)
