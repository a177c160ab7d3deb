"""API-key and admin endpoints refuse without valid credentials and never tell keys apart.

Without credentials: 401 and a WWW-Authenticate challenge. With credentials that are not
valid (unknown, revoked, a prefix or an extension of a real one, another case, the wrong
kind of secret): one answer, byte for byte, so a caller learns nothing about which keys
exist. Credentials are checked before the body is read (no validation oracle), a refused
request stores nothing, and with no admin token configured (outside development) admin
endpoints stay shut even for an empty bearer token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from services.capture import store as capture_store
from tests.hostile.support import (
    ADMIN,
    ADMIN_TOKEN,
    create_api_key,
    hostile_config,
    hostile_settings,
    row_counts,
)

pytestmark = pytest.mark.broker


@dataclass(frozen=True)
class Protected:
    """An endpoint behind a key, a valid request to it, and the answer that request gets."""

    method: str
    path: str
    body: Any
    key: str  # "admin" or "api-key"
    ok: tuple[int, ...]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def impostors(real: str, other_kind: str) -> dict[str, dict[str, str]]:
    """Credentials that look like `real` but are not valid for the endpoint."""
    return {
        "unknown key": _bearer(f"lf_{uuid.uuid4().hex}"),
        "prefix of the real one": _bearer(real[:-1]),
        "real one plus a character": _bearer(real + "x"),
        "real one in upper case": _bearer(real.upper()),
        "the other kind of secret": _bearer(other_kind),
        "non-ASCII": {"Authorization": b"Bearer \xe9\xe9\xe9"},  # type: ignore[dict-item]
    }


async def _check(
    client: Any,
    endpoint: Protected,
    real: str,
    other_kind: str,
    extra_impostors: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    problems: list[str] = []
    name = f"{endpoint.method} {endpoint.path}"

    async def send(headers: dict[str, Any], body: Any = endpoint.body) -> Any:
        return await client.request(endpoint.method, endpoint.path, json=body, headers=headers)

    for headers in ({}, {"Authorization": "Basic " + real}, {"Authorization": "Bearer "}):
        answer = await send(headers)
        if (
            answer.status_code != 401
            or "bearer" not in answer.headers.get("www-authenticate", "").lower()
        ):
            problems.append(f"{name} {headers}: {answer.status_code} {answer.text[:160]}")
    # No credentials and a body that would not validate: still 401, checked first.
    invalid = await send({}, {"unexpected": ["field"], "email": 7})
    if invalid.status_code != 401:
        problems.append(f"{name} without credentials, invalid body: {invalid.status_code}")

    answers = {
        label: await send(headers)
        for label, headers in {**impostors(real, other_kind), **(extra_impostors or {})}.items()
    }
    shapes = {(r.status_code, r.content) for r in answers.values()}
    if len(shapes) != 1:
        problems.append(f"{name}: impostors told apart: {shapes}")
    if any(r.status_code not in (401, 403) for r in answers.values()):
        problems.append(f"{name}: an impostor got {[r.status_code for r in answers.values()]}")

    granted = await send(ADMIN if endpoint.key == "admin" else _bearer(real))
    if granted.status_code not in endpoint.ok:
        problems.append(f"{name} with {endpoint.key}: {granted.status_code} {granted.text[:200]}")
    return problems


async def test_capture_api_keys_and_admin_token(
    broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    settings = hostile_settings(settings_factory, broker, tmp_path, "sqlite")
    tag = uuid.uuid4().hex[:8]
    lead = {"email": f"auth-{tag}@example.com", "first_name": "Ada", "external_id": f"a-{tag}"}
    api_endpoints = [
        Protected("POST", "/v1/leads", lead, "api-key", (202,)),
        Protected("POST", "/v1/erasure", {"email": f"nobody-{tag}@example.com"}, "api-key", (404,)),
    ]
    admin_endpoints = [
        Protected("GET", "/v1/quarantine", None, "admin", (200,)),
        Protected("POST", "/v1/quarantine/nope/release", None, "admin", (404,)),
        Protected("POST", "/v1/quarantine/nope/reject", None, "admin", (404,)),
        Protected("GET", "/v1/leads/nope/consents", None, "admin", (404,)),
    ]
    problems: list[str] = []
    async with running_service("capture", settings) as capture:
        key = await create_api_key(capture.runtime)
        revoked = await create_api_key(capture.runtime)
        async with capture.runtime.uow() as uow:
            await uow.session.execute(
                sa.update(capture_store.api_keys)
                .where(capture_store.api_keys.c.key_hash == _hash(revoked))
                .values(revoked_at=datetime.now(UTC))
            )
            await uow.commit()
        before = await row_counts(capture.runtime, "capture")
        revoked_too = {
            "a revoked key": _bearer(revoked),
            "a revoked key as X-API-Key": {"X-API-Key": revoked},
            "an unknown key as X-API-Key": {"X-API-Key": f"lf_{uuid.uuid4().hex}"},
        }
        for endpoint in api_endpoints[:1]:
            problems += await _check(capture.client, endpoint, key, ADMIN_TOKEN, revoked_too)
        # Erasure also takes the admin token, so the admin token is no impostor there.
        problems += await _check(
            capture.client, api_endpoints[1], key, f"lf_{uuid.uuid4().hex}", revoked_too
        )
        for endpoint in admin_endpoints:
            problems += await _check(capture.client, endpoint, ADMIN_TOKEN, key)
        after = await row_counts(capture.runtime, "capture")
    assert not problems, "\n".join(problems)
    # Only the granted requests wrote: one lead (submission, lead, outbox or sent).
    assert after["api_keys"] == before["api_keys"]
    assert after["submissions"] == before["submissions"] + 1


def _hash(key: str) -> str:
    from services.capture.accounts import hash_api_key

    return hash_api_key(key)


ADMIN_ENDPOINTS = {
    "router": [
        Protected("GET", "/v1/dlq", None, "admin", (200,)),
        Protected("POST", "/v1/dlq/nope/redrive", None, "admin", (404,)),
        Protected(
            "POST",
            "/v1/outcomes",
            {"lead_id": "auth-lead", "outcome": "converted", "value": "1.00"},
            "admin",
            (202,),
        ),
    ],
    "insights": [
        Protected(
            "POST",
            "/v1/channels/facebook_ads/spend",
            {"date": "2026-11-03", "amount": "12.50"},
            "admin",
            (200,),
        )
    ],
}


@pytest.mark.parametrize("service", sorted(ADMIN_ENDPOINTS))
async def test_admin_endpoints_refuse_impostors(
    service: str, broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    settings = hostile_settings(settings_factory, broker, tmp_path, "sqlite")
    problems: list[str] = []
    async with running_service(service, settings) as svc:
        before = await row_counts(svc.runtime, service)
        for endpoint in ADMIN_ENDPOINTS[service]:
            # Refused requests first: nothing they send may be stored.
            problems += await _check(svc.client, endpoint, ADMIN_TOKEN, "lf_" + "0" * 32)
        after = await row_counts(svc.runtime, service)
    assert not problems, "\n".join(problems)
    changed = {table for table in before if before[table] != after[table]}
    # Only the granted request wrote (router: the outcome and its event; insights: the day).
    assert changed <= {"outcomes", "outbox", "channel_spend", "spend"}, changed


@pytest.mark.parametrize("service", ["capture", "router", "insights"])
async def test_without_a_configured_admin_token_admin_endpoints_stay_shut(
    service: str, broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    # settings_factory runs as env=test with no admin token.
    settings = settings_factory(
        "sqlite", kafka_bootstrap=broker.bootstrap, config=hostile_config(tmp_path)
    )
    endpoints = ADMIN_ENDPOINTS.get(service) or [
        Protected("GET", "/v1/quarantine", None, "admin", ()),
        Protected("GET", "/v1/leads/nope/consents", None, "admin", ()),
    ]
    answers = []
    async with running_service(service, settings) as svc:
        for endpoint in endpoints:
            for headers in ({}, _bearer(""), ADMIN, _bearer("x")):
                answer = await svc.client.request(
                    endpoint.method, endpoint.path, json=endpoint.body, headers=headers
                )
                code = answer.json().get("error", {}).get("code")
                answers.append((endpoint.path, headers, answer.status_code, code))
    opened = [a for a in answers if a[2:] != (403, "admin_disabled")]
    assert not opened, opened
