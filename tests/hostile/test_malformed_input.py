"""Malformed bodies and URLs at every door, on SQLite and PostgreSQL.

Each door gets a valid request (the baseline) and hostile variants of it: malformed
UTF-8, JSON nested 10,000 deep, a body over the limit (declared and streamed), wrong
content types, NUL characters in each text field, overlong values, 1e400 in ids and
numbers. Every variant is answered 4xx with leadflow's error shape naming the problem,
nothing is stored and nothing reaches Kafka; the baseline, sent last, is accepted (and
stores), so the refusals are not an accident of a request that could never pass.
Every path and query parameter of every operation refuses a NUL character too.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from services.router.domain import ack_token
from tests.hostile.support import (
    ADMIN,
    BASE_URL,
    SERVICES,
    create_api_key,
    error_problem,
    hostile_settings,
    published,
    row_counts,
    signatures,
)
from tests.integration.capture.support import GOOGLE_FORM, GOOGLE_KEY

pytestmark = pytest.mark.broker

JsonPath = tuple[str | int, ...]
BODY_CODES = {"invalid_json", "malformed_json", "invalid_encoding", "invalid_body"}
MAX_BODY = 64 * 1024
FORM = "application/x-www-form-urlencoded"
OVERLONG = "x" * 20_000
DEEP = "[" * 10_000 + "]" * 10_000


@dataclass(frozen=True)
class Door:
    """One way in that takes a body: a valid request and where to attack it."""

    service: str
    method: str
    path: str
    body: Any
    credential: str = "none"  # none | admin | api-key | signed
    ok: tuple[int, ...] = (200, 202)
    stores: bool = True
    texts: tuple[JsonPath, ...] = ()  # NUL goes into each
    bounded: tuple[JsonPath, ...] = ()  # overlong values are refused here
    numbers: tuple[JsonPath, ...] = ()  # 1e400 goes into each
    accepts: tuple[str, ...] = ("application/json",)


@dataclass(frozen=True)
class Variant:
    """A hostile request: bytes, content type, and what the answer must say."""

    name: str
    content: bytes
    content_type: str = "application/json"
    status: int | None = None  # exact status expected, else any 4xx
    codes: frozenset[str] = frozenset()  # error.code must be one of these, if given
    names: str | None = None  # error.field (or a detail's field) must mention this
    streamed: bool = False


def known_doors(tag: str, secret: str) -> list[Door]:
    """The doors whose valid requests are known, one per body-taking operation."""
    number = str(10**15 + random.randrange(10**14))
    assignment = f"a-{tag}"
    return [
        Door(
            "capture",
            "POST",
            "/v1/forms/demo-request",
            {
                "work_email": f"form-{tag}@example.com",
                "name": "Ada Lovelace",
                "title": "CTO",
                "idempotency_key": f"k-{tag}",
            },
            ok=(202,),
            accepts=("application/json", FORM, "multipart/form-data"),
            texts=(("work_email",), ("name",), ("title",), ("idempotency_key",)),
            bounded=(("work_email",), ("name",), ("title",), ("idempotency_key",)),
            numbers=(("idempotency_key",),),
        ),
        Door(
            "capture",
            "POST",
            "/v1/leads",
            {
                "email": f"api-{tag}@example.com",
                "first_name": "Ada",
                "company": "Analytical Engines",
                "external_id": f"v-{tag}",
            },
            credential="api-key",
            ok=(202,),
            texts=(("email",), ("first_name",), ("company",), ("external_id",)),
            bounded=(("email",), ("first_name",), ("company",), ("external_id",)),
            numbers=(("external_id",),),
        ),
        Door(
            "capture",
            "POST",
            "/v1/erasure",
            {"email": f"nobody-{tag}@example.com"},
            credential="admin",
            ok=(404,),
            stores=False,
            texts=(("email",),),
            bounded=(("email",),),
            numbers=(("email",),),
        ),
        Door(
            "capture",
            "POST",
            "/v1/webhooks/meta",
            {
                "object": "page",
                "entry": [
                    {
                        "id": "112233445566778",
                        "time": 1733870100,
                        "changes": [
                            {"field": "leadgen", "value": {"leadgen_id": number, "page_id": "1"}}
                        ],
                    }
                ],
            },
            credential="signed",
            ok=(200,),
            texts=(("entry", 0, "changes", 0, "value", "leadgen_id"),),
            bounded=(("entry", 0, "changes", 0, "value", "leadgen_id"),),
            numbers=(("entry", 0, "changes", 0, "value", "leadgen_id"),),
        ),
        Door(
            "capture",
            "POST",
            "/v1/webhooks/google",
            {
                "lead_id": f"TeSter-{tag}",
                "api_version": "1.0",
                "form_id": int(GOOGLE_FORM),
                "campaign_id": 991214827,
                "google_key": GOOGLE_KEY,
                "is_test": True,
                "user_column_data": [
                    {"column_id": "EMAIL", "string_value": f"g-{tag}@example.com"},
                    {"column_id": "FULL_NAME", "string_value": "Gee Lead"},
                ],
            },
            ok=(200,),
            texts=(("lead_id",), ("google_key",), ("user_column_data", 1, "string_value")),
            bounded=(("lead_id",),),
            numbers=(("lead_id",), ("campaign_id",)),
        ),
        Door(
            "capture",
            "POST",
            "/v1/webhooks/linkedin",
            {
                "type": "LEAD_ACTION",
                "leadGenFormResponse": f"urn:li:leadGenFormResponse:{uuid.uuid4()}-4",
                "leadGenForm": "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:5236798,1)",
                "leadAction": "CREATED",
                "occurredAt": 1686182358881,
            },
            credential="signed",
            ok=(200,),
            texts=(("leadGenFormResponse",), ("leadAction",)),
            bounded=(("leadGenFormResponse",),),
            numbers=(("occurredAt",),),
        ),
        Door(
            "capture",
            "POST",
            "/v1/webhooks/tiktok",
            {
                "lead_id": number,
                "create_time": 1733870000,
                "fields": {"email": f"tt-{tag}@example.com", "name": "Tee Tok"},
            },
            credential="signed",
            ok=(200,),
            texts=(("lead_id",), ("fields", "email"), ("fields", "name")),
            bounded=(("lead_id",),),
            numbers=(("lead_id",), ("create_time",)),
        ),
        Door(
            "capture",
            "POST",
            "/v1/webhooks/acme-leads",
            {"external_id": f"acme-{tag}", "email": f"vendor-{tag}@example.com", "first_name": "V"},
            credential="signed",
            ok=(200,),
            texts=(("external_id",), ("email",), ("first_name",)),
            bounded=(("external_id",),),
            numbers=(("external_id",),),
        ),
        Door(
            "router",
            "POST",
            "/v1/outcomes",
            {
                "lead_id": f"lead-{tag}",
                "outcome": "converted",
                "value": "4800.00",
                "reason": "signed the order",
                "outcome_id": f"deal-{tag}",
            },
            credential="admin",
            ok=(202,),
            texts=(("lead_id",), ("reason",), ("outcome_id",), ("currency",)),
            bounded=(("lead_id",), ("reason",), ("outcome_id",)),
            numbers=(("value",), ("lead_id",)),
        ),
        Door(
            "router",
            "POST",
            f"/v1/assignments/{assignment}/ack",
            {"token": ack_token(secret, assignment)},
            ok=(404,),
            stores=False,
            texts=(("token",),),
            bounded=(("token",),),
            numbers=(("token",),),
        ),
        Door(
            "router",
            "POST",
            "/v1/webhooks/hubspot",
            [
                {
                    "eventId": 1,
                    "subscriptionType": "deal.propertyChange",
                    "objectId": 7,
                    "propertyName": "dealstage",
                    "propertyValue": "appointmentscheduled",
                    "occurredAt": 1733870000000,
                }
            ],
            credential="signed",
            ok=(200,),
            stores=False,
        ),
        Door(
            "insights",
            "POST",
            "/v1/channels/facebook_ads/spend",
            {"date": "2026-11-03", "amount": "12.50", "impressions": 1000, "clicks": 20},
            credential="admin",
            ok=(200,),
            texts=(("date",), ("amount",)),
            bounded=(("date",), ("amount",)),
            numbers=(("amount",), ("impressions",), ("clicks",)),
        ),
    ]


def generic_door(service: str, method: str, path: str) -> Door:
    """An operation without a known valid request: only whole-body attacks, and no baseline."""
    concrete = path.replace("{", "hostile-").replace("}", "")
    return Door(
        service,
        method.upper(),
        concrete,
        {"email": "generic@example.com", "name": "Generic"},
        credential="admin",
        ok=(),
        stores=False,
        texts=(("email",), ("name",)),
    )


def render(body: Any, at: JsonPath | None = None, raw: bytes | None = None) -> bytes:
    """The body as JSON bytes; with `at`, the value there replaced by the raw bytes `raw`."""
    if at is None:
        return json.dumps(body).encode()
    marker = f"hostile-marker-{uuid.uuid4().hex}"
    return json.dumps(_set(body, at, marker)).encode().replace(f'"{marker}"'.encode(), raw or b"")


def _set(body: Any, at: JsonPath, value: Any) -> Any:
    copy = json.loads(json.dumps(body))
    target = copy
    for step in at[:-1]:
        target = target[step]
    target[at[-1]] = value
    return copy


def variants(door: Door) -> list[Variant]:
    """Every hostile request for `door`.

    A door whose valid request is unknown (an operation added since, or one that reads no
    body) may refuse for another reason first: it must still answer 4xx and store nothing.
    """
    first = door.texts[0] if door.texts else None
    known = bool(door.ok)
    unparsable = (400 if known else None, frozenset(BODY_CODES) if known else frozenset())
    found: list[Variant] = [
        Variant(
            "malformed UTF-8",
            render(door.body, first, b'"\xff\xfe\xc3\x28"') if first else b'{"x": "\xff\xfe"}',
            status=unparsable[0],
            codes=unparsable[1],
        ),
        Variant(
            "JSON nested 10,000 deep",
            render(door.body, first, DEEP.encode()) if first else DEEP.encode(),
            status=unparsable[0],
            codes=unparsable[1],
        ),
        Variant(
            "over the body limit",
            render({"pad": "x" * (MAX_BODY + 1)}),
            status=413,
            codes=frozenset({"payload_too_large"}),
        ),
        # Streamed, the limit bites when the body is read: a route that reads none answers
        # whatever it answers without it.
        Variant(
            "over the body limit, streamed without Content-Length",
            render({"pad": "x" * (MAX_BODY + 1)}),
            status=413 if known else None,
            codes=frozenset({"payload_too_large"}) if known else frozenset(),
            streamed=True,
        ),
    ]
    wrong_types = [
        ("JSON sent as text/plain", render(door.body), "text/plain"),
        ("XML", b"<lead><email>x@example.com</email></lead>", "application/xml"),
        ("a urlencoded form", b"email=form%40example.com&outcome=converted", FORM),
    ]
    found += [
        Variant(name, content, content_type)
        for name, content, content_type in wrong_types
        if content_type not in door.accepts
    ]
    for at in door.texts:
        found.append(
            Variant(
                f"NUL in {_name(at)}",
                render(_set(door.body, at, "Ada\x00Lovelace")),
                names=str(at[-1]) if known else None,
            )
        )
    for at in door.bounded:
        found.append(
            Variant(f"overlong {_name(at)}", render(_set(door.body, at, OVERLONG)), names=None)
        )
    for at in door.numbers:
        found.append(Variant(f"1e400 as {_name(at)}", render(door.body, at, b"1e400")))
    return found


def _name(at: JsonPath) -> str:
    return ".".join(str(step) for step in at)


def _fields_of(body: dict[str, Any]) -> list[str]:
    error = body.get("error", {})
    found = [str(error.get("field", ""))]
    found += [str(d.get("field", "")) for d in error.get("details", []) if isinstance(d, dict)]
    return found


class Attacker:
    """Sends a door's requests with the credential it needs."""

    def __init__(self, svc: Any, api_key: str | None) -> None:
        self.svc = svc
        self.api_key = api_key

    def headers(self, door: Door, variant: Variant | None, content: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        headers["content-type"] = variant.content_type if variant else "application/json"
        if door.credential == "admin":
            headers.update(ADMIN)
        elif door.credential == "api-key" and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        elif door.credential == "signed":
            headers.update(signatures(door.method, BASE_URL + door.path, content))
        return headers

    async def send(self, door: Door, variant: Variant | None, content: bytes) -> Any:
        headers = self.headers(door, variant, content)
        if variant is not None and variant.streamed:

            async def chunks() -> AsyncIterator[bytes]:
                for start in range(0, len(content), 8192):
                    yield content[start : start + 8192]

            return await self.svc.client.request(
                door.method, door.path, content=chunks(), headers=headers
            )
        return await self.svc.client.request(
            door.method, door.path, content=content, headers=headers
        )


@dataclass
class Problems:
    items: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.items.append(what)


async def attack(
    door: Door, attacker: Attacker, counts: Callable[[], Any], problems: Problems
) -> None:
    """Every variant of `door`: refused, named, nothing stored."""
    for variant in variants(door):
        before = await counts()
        response = await attacker.send(door, variant, variant.content)
        label = f"{door.method} {door.path} [{variant.name}] -> {response.status_code}"
        shown = f"{label} {response.text[:200]}"
        problems.check(400 <= response.status_code < 500, f"not a 4xx: {shown}")
        problem = error_problem(response)
        problems.check(problem is None, f"error shape ({problem}): {shown}")
        if variant.status is not None:
            problems.check(response.status_code == variant.status, f"status: {shown}")
        if problem is None:
            body = response.json()
            if variant.codes:
                problems.check(body["error"]["code"] in variant.codes, f"code: {shown}")
            if variant.names:
                problems.check(
                    any(variant.names in name for name in _fields_of(body)),
                    f"error.field does not name {variant.names}: {shown}",
                )
        after = await counts()
        problems.check(after == before, f"stored something: {label} {before} -> {after}")


async def nul_in_urls(document: dict[str, Any], svc: Any, problems: Problems) -> int:
    """NUL in each path and query parameter of every operation: 400 naming it."""
    sent = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = [
                p for p in operation.get("parameters", []) if p["in"] in ("path", "query")
            ]
            for attacked in parameters:
                url = path
                for p in parameters:
                    if p["in"] == "path":
                        value = "a\x00b" if p is attacked else "hostile-id"
                        url = url.replace("{" + p["name"] + "}", quote(value, safe=""))
                query = {attacked["name"]: "a\x00b"} if attacked["in"] == "query" else {}
                response = await svc.client.request(
                    method.upper(), url, params=query, headers=ADMIN
                )
                sent += 1
                expected = "path" if attacked["in"] == "path" else attacked["name"]
                answer = f"{response.status_code} {response.text[:200]}"
                shown = f"{method.upper()} {url} {query!r} -> {answer}"
                problems.check(response.status_code == 400, f"NUL in URL not a 400: {shown}")
                problem = error_problem(response)
                problems.check(problem is None, f"error shape ({problem}): {shown}")
                if problem is None:
                    error = response.json()["error"]
                    problems.check(
                        (error["code"], error.get("field")) == ("invalid_character", expected),
                        f"NUL in URL not named: {shown}",
                    )
    return sent


@pytest.mark.parametrize("service", SERVICES)
async def test_hostile_bodies_and_urls_are_refused_by_name_and_store_nothing(
    service: str,
    backend: str,
    broker: Any,
    settings_factory: Any,
    running_service: Any,
    tmp_path: Any,
) -> None:
    settings = hostile_settings(settings_factory, broker, tmp_path, backend)
    tag = uuid.uuid4().hex[:10]
    problems = Problems()
    async with running_service(service, settings) as svc:
        api_key = await create_api_key(svc.runtime) if service == "capture" else None
        attacker = Attacker(svc, api_key)
        document = (await svc.client.get("/openapi.json")).json()
        doors = [
            d
            for d in known_doors(tag, settings.secret_key.get_secret_value())
            if d.service == service
        ]
        known = {(d.method, _template(document, d.path)) for d in doors}
        doors += [
            generic_door(service, method, path)
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
            if method.upper() in ("POST", "PUT", "PATCH") and (method.upper(), path) not in known
        ]

        async def counts() -> dict[str, int]:
            return await row_counts(svc.runtime, service)

        events_before = await published(broker.bootstrap)
        for door in doors:
            await attack(door, attacker, counts, problems)
        url_requests = await nul_in_urls(document, svc, problems)
        # The outbox relay polls every 0.2 s: anything stored would have reached Kafka by now.
        await asyncio.sleep(1.0)
        events_after = await published(broker.bootstrap)

        # The baselines: valid requests at the same doors get through (and store).
        for door in (d for d in doors if d.ok):
            before = await counts()
            content = render(door.body)
            response = await attacker.send(door, None, content)
            problems.check(
                response.status_code in door.ok,
                f"baseline {door.method} {door.path} -> {response.status_code} {response.text}",
            )
            if door.stores:
                problems.check(
                    await counts() != before, f"baseline {door.method} {door.path} stored nothing"
                )

    assert not problems.items, "\n".join(problems.items)
    assert events_after == events_before, "a refused request reached Kafka"
    assert url_requests > 0 or service not in ("capture", "router")


def _template(document: dict[str, Any], concrete: str) -> str:
    """The OpenAPI path template a concrete path belongs to (a literal path first)."""
    if concrete in document["paths"]:
        return concrete
    parts = concrete.strip("/").split("/")
    for template in document["paths"]:
        pattern = template.strip("/").split("/")
        if len(pattern) == len(parts) and all(
            p == c or p.startswith("{") for p, c in zip(pattern, parts, strict=True)
        ):
            return template
    return concrete


async def test_ids_past_64_bits_are_kept_exact_or_refused_never_rounded(
    broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    """2**70 and 2**70 + 1 are one float: as ids they would collide and lose a lead."""
    settings = hostile_settings(settings_factory, broker, tmp_path, "sqlite")
    tag = uuid.uuid4().hex[:8]
    big = 2**70

    def lead(n: int) -> bytes:
        return f'{{"external_id": {big + n}, "email": "big{n}-{tag}@example.com"}}'.encode()

    async with running_service("capture", settings) as capture:
        key = await create_api_key(capture.runtime)
        api = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
        refused = [
            await capture.client.post("/v1/leads", content=lead(n), headers=api) for n in (0, 1)
        ]
        form = await capture.client.post(
            "/v1/forms/guide-download",
            content=f'{{"email": "f-{tag}@example.com", "idempotency_key": {big}}}'.encode(),
            headers={"content-type": "application/json"},
        )
        # Signed webhooks parse numbers as their exact text: both leads arrive, distinct.
        vendor = []
        for n in (0, 1):
            body = lead(n)
            vendor.append(
                await capture.client.post(
                    "/v1/webhooks/acme-leads",
                    content=body,
                    headers={"content-type": "application/json", **signatures("POST", "", body)},
                )
            )
        stored = await row_counts(capture.runtime, "capture")
    for response in refused:
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "external_id"
    assert form.status_code == 422 and form.json()["error"]["field"] == "idempotency_key"
    results = [r.json()["results"][0] for r in vendor]
    assert [r["external_id"] for r in results] == [str(big), str(big + 1)]
    assert [r["status"] for r in results] == ["accepted", "accepted"]
    assert stored["submissions"] == 2
