"""The console over HTTP: login, signed sessions, CSRF and cross-site refusals, 4xx on bad input.

(The pages in a real browser: tests/e2e/test_console_browser.py.)
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.insights.console.auth import (
    COOKIE,
    Authenticator,
    ConsoleSettings,
    Session,
    SessionCodec,
    hash_password,
    parse_users,
    verify_password,
)
from services.insights.console.lead_pages import routing_summary
from tests.integration.insights.campaign import CONFIG_YAML

pytestmark = pytest.mark.broker
TOKEN = "console-admin-token"
PAGES = [
    "/console",
    "/console/funnel",
    "/console/funnel.csv",
    "/console/leads",
    "/console/leads/some-lead",
    "/console/quarantine",
    "/console/dead-letters",
    "/console/dead-letters/leads.captured/0/0",
    "/console/health",
]
POSTS = [
    "/console/quarantine/abc/release",
    "/console/quarantine/abc/reject",
    "/console/deliveries/abc/redrive",
    "/console/dead-letters/leads.captured/0/0/redrive",
    "/console/logout",
]


@pytest.fixture
async def insights(broker: Any, settings_factory: Any, running_service: Any, tmp_path: Path) -> Any:
    config = tmp_path / "leadflow.yaml"
    config.write_text(CONFIG_YAML)
    settings = settings_factory(
        "sqlite", kafka_bootstrap=broker.bootstrap, config=config, admin_token=TOKEN
    )
    async with running_service("insights", settings) as svc:
        yield svc


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


async def login(client: Any, password: str = TOKEN) -> Any:
    page = await client.get("/console/login")
    return await client.post(
        "/console/login",
        data={
            "csrf": _csrf(page.text),
            "username": "admin",
            "password": password,
            "next": "/console/leads",
        },
    )


async def test_every_page_redirects_to_login_without_a_session(insights: Any) -> None:
    for path in PAGES:
        response = await insights.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login"), path
    forged = {COOKIE: SessionCodec("another-key").encode(Session("admin", "x", 2**40))}
    client_class = insights.client.__class__
    transport = insights.client._transport
    async with client_class(
        transport=transport, base_url="http://testserver", cookies=forged
    ) as forger:
        assert (await forger.get("/console/funnel")).status_code == 303
    login_page = await insights.client.get("/console/login")
    assert login_page.status_code == 200
    assert "frame-ancestors 'none'" in login_page.headers["content-security-policy"]
    cookie = login_page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


async def test_login_then_pages_then_logout(insights: Any) -> None:
    client = insights.client
    wrong = await login(client, "nope")
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    ok = await login(client)
    assert ok.status_code == 303 and ok.headers["location"] == "/console/leads"
    for path in ("/console/funnel", "/console/leads", "/console/health"):
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
    funnel = await client.get("/console/funnel", params={"since": "2024-11-01"})
    assert "<svg" in funnel.text and 'id="funnel-table"' in funnel.text
    csv = await client.get("/console/funnel.csv", params={"since": "2024-11-01"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.startswith("channel,label,")
    # Bad input is a clear 4xx, never a 500.
    for path, params, status in [
        ("/console/funnel", {"since": "yesterday"}, 422),
        ("/console/funnel.csv", {"until": "2024-13-40"}, 422),
        ("/console/leads", {"grade": "lukewarm"}, 400),
        ("/console/leads", {"since": "11/01/2024"}, 400),
        ("/console/leads", {"after": "garbage"}, 400),
        ("/console/leads", {"sort": "random"}, 400),
        ("/console/leads/bad%20id!", {}, 404),
        ("/console/leads/never-seen", {}, 404),
        ("/console/dead-letters/not-a-topic/0/0", {}, 404),
        ("/console/dead-letters/leads.captured/x/0", {}, 422),
    ]:
        response = await client.get(path, params=params)
        assert response.status_code == status, (path, params, response.text[:300])
    page = await client.get("/console/funnel")
    bye = await client.post("/console/logout", data={"csrf": _csrf(page.text)})
    assert bye.status_code == 303
    assert (await client.get("/console/funnel")).status_code == 303


async def test_posts_without_the_token_or_from_another_site_are_refused(insights: Any) -> None:
    client = insights.client
    await login(client)
    token = _csrf((await client.get("/console/funnel")).text)
    for path in POSTS:
        missing = await client.post(path, data={})
        wrong = await client.post(path, data={"csrf": "not-the-token"})
        cross_origin = await client.post(
            path, data={"csrf": token}, headers={"origin": "https://evil.example"}
        )
        cross_site = await client.post(
            path, data={"csrf": token}, headers={"sec-fetch-site": "cross-site"}
        )
        for response in (missing, wrong, cross_origin, cross_site):
            assert response.status_code == 403, (path, response.status_code)
            assert "Refused" in response.text
    # Logging in needs the login page's token too (no login CSRF).
    fresh = insights.client.__class__(transport=client._transport, base_url="http://testserver")
    async with fresh:
        blind = await fresh.post("/console/login", data={"username": "admin", "password": TOKEN})
        assert blind.status_code == 403
    # The session survived every refusal.
    assert (await client.get("/console/funnel")).status_code == 200


async def test_five_failed_logins_then_429_with_retry_after(insights: Any) -> None:
    """Per user name and per client address, whatever the password of the sixth."""
    client_class = insights.client.__class__
    app = insights.app

    def from_address(host: str) -> Any:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        return client_class(transport=transport, base_url="http://testserver")

    async def sign_in(client: Any, name: str, password: str) -> Any:
        page = await client.get("/console/login")
        data = {"csrf": _csrf(page.text), "username": name, "password": password}
        return await client.post("/console/login", data=data)

    async with (
        from_address("198.51.100.1") as first,
        from_address("198.51.100.2") as second,
        from_address("198.51.100.3") as third,
    ):
        for _ in range(5):
            assert (await sign_in(first, "admin", "guess")).status_code == 401
        # The name is throttled from any address, even with the right password.
        for client in (first, second):
            refused = await sign_in(client, "admin", TOKEN)
            assert refused.status_code == 429, refused.text[:300]
            assert 290 <= int(refused.headers["retry-after"]) <= 300
            assert "Too many failed sign-ins: try again in 5 minutes." in refused.text
            assert COOKIE not in refused.cookies
        # The first address is throttled for every name; another name elsewhere is not.
        assert (await sign_in(first, "alice", "guess")).status_code == 429
        assert (await sign_in(third, "alice", "guess")).status_code == 401


def test_password_hashes_users_and_sessions() -> None:
    encoded = hash_password("correct horse")
    assert verify_password("correct horse", encoded)
    assert not verify_password("wrong", encoded)
    assert not verify_password("x", "scrypt$garbage")
    users = parse_users(f"alice:{encoded}, bob:{hash_password('other pass')}")
    auth = Authenticator("", ConsoleSettings(console_users=f"alice:{encoded}"), "test")
    assert set(users) == {"alice", "bob"}
    assert auth.check("alice", "correct horse") and not auth.check("alice", "nope")
    assert not auth.check("mallory", "correct horse") and not auth.check("admin", "")
    codec = SessionCodec("k")
    cookie = codec.encode(Session("alice", "t", int(time.time()) + 60))
    assert codec.decode(cookie) == Session("alice", "t", int(time.time()) + 60)
    payload, signature = cookie.split(".")
    assert codec.decode(payload[:-2] + "xx." + signature) is None
    assert codec.decode(codec.encode(Session("alice", "t", int(time.time()) - 1))) is None


def test_routing_summary_names_rule_pool_and_who_was_skipped() -> None:
    reason = {
        "rule_id": "emea-enterprise",
        "strategy": "round_robin",
        "pool": ["alice", "bob"],
        "candidates": [
            {"rep_id": "alice", "eligible": False, "reason": "out of office"},
            {"rep_id": "bob", "eligible": True, "reason": "available"},
        ],
        "chosen": "bob",
    }
    assert routing_summary(reason) == (
        "matched rule emea-enterprise, round robin among alice, bob; alice out of office → bob"
    )
