"""Every service's HTTP basics: error shape, body limit, load shedding, health."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from fastapi import APIRouter

from shared.http import ApiError, create_app

router = APIRouter()
release = asyncio.Event()


@router.post("/echo")
async def echo(payload: dict[str, int]) -> dict[str, int]:
    return payload


@router.get("/slow")
async def slow() -> dict[str, str]:
    await release.wait()
    return {"status": "done"}


@router.get("/boom")
async def boom() -> None:
    raise ApiError(409, "conflict_here", "explained", field="thing")


@router.get("/database-down")
async def database_down() -> None:
    raise ConnectionResetError(104, "Connection reset by peer")


@router.get("/bug")
async def bug() -> None:
    raise RuntimeError("secret internals")


async def _ready() -> dict[str, str]:
    return {"database": "ok", "broker": "unreachable: KafkaConnectionError"}


@contextlib.asynccontextmanager
async def _lifespan(_app):
    yield


def app(**kwargs):
    return create_app(
        service="test",
        title="t",
        description="d",
        version="0",
        routers=[router],
        lifespan=_lifespan,
        readiness=_ready,
        **kwargs,
    )


def client(application) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application, raise_app_exceptions=False),
        base_url="http://t",
    )


async def test_errors_share_one_shape_and_name_the_field():
    async with client(app()) as c:
        invalid = await c.post("/echo", json={"a": "not a number"})
        bad_json = await c.post("/echo", content=b"{", headers={"content-type": "application/json"})
        missing = await c.get("/nowhere")
        conflict = await c.get("/boom")
        crash = await c.get("/bug")
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "a"
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert conflict.json() == {
        "error": {"code": "conflict_here", "message": "explained", "field": "thing"}
    }
    assert crash.status_code == 500 and "secret" not in crash.text


async def test_oversized_bodies_get_413_before_the_route_runs():
    async with client(app(max_body_bytes=100)) as c:
        response = await c.post(
            "/echo", content=b"{" + b" " * 200 + b"}", headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_a_streamed_body_past_the_limit_gets_413_too():
    async def chunks():
        for _ in range(4):
            yield b" " * 60

    async with client(app(max_body_bytes=100)) as c:
        response = await c.post(
            "/echo", content=chunks(), headers={"content-type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_a_nul_in_the_query_is_refused_naming_the_parameter():
    async with client(app()) as c:
        response = await c.get("/boom", params={"who": "a\x00b"})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_character",
        "message": "NUL characters are not allowed",
        "field": "who",
    }


async def test_requests_are_counted_per_route_template_and_status():
    from shared import metrics

    def count(status: str) -> float:
        value = metrics.http_requests_total.labels("test", "GET", "/boom", status)
        return float(value._value.get())

    def seconds() -> float:
        histogram = metrics.http_request_duration_seconds.labels("test", "GET", "/boom")
        return float(histogram._sum.get())

    before, spent = count("409"), seconds()
    async with client(app()) as c:
        await c.get("/boom")
        await c.get("/boom")
    assert count("409") == before + 2
    assert 0 < seconds() - spent < 5


async def test_health_is_never_shed_but_still_guarded():
    async with client(app(max_in_flight=0)) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/healthz", params={"x": "\x00"})).status_code == 400


async def test_past_the_in_flight_limit_requests_are_shed_with_retry_after():
    release.clear()
    application = app(max_in_flight=2)
    async with client(application) as c:
        waiting = [asyncio.create_task(c.get("/slow")) for _ in range(2)]
        await asyncio.sleep(0.05)
        shed = await c.get("/slow")
        health = await c.get("/healthz")
        release.set()
        done = await asyncio.gather(*waiting)
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert health.status_code == 200
    assert [r.status_code for r in done] == [200, 200]


async def test_readiness_reports_each_dependency():
    async with client(app()) as c:
        ready = await c.get("/readyz")
        metrics = await c.get("/metrics")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("unreachable")
    assert "leadflow_http_requests_total" in metrics.text


async def test_opentelemetry_providers_are_looked_up_per_request_only_when_asked(monkeypatch):
    from fastapi.telemetry import _asgi

    lookups = []
    real = _asgi.trace.get_tracer_provider

    def counted():
        lookups.append(1)
        return real()

    monkeypatch.setattr(_asgi.trace, "get_tracer_provider", counted)
    async with client(app()) as c:
        assert (await c.post("/echo", json={"a": 1})).status_code == 200
    assert lookups == []  # the default: Prometheus and the logs are the telemetry
    async with client(app(opentelemetry=True)) as c:
        assert (await c.post("/echo", json={"a": 1})).status_code == 200
    assert lookups  # FastAPI's own instrumentation looks for a configured provider


async def test_a_database_outage_is_a_503_counted_as_such_and_logged_once(caplog):
    from shared import metrics

    def count(status: str) -> float:
        value = metrics.http_requests_total.labels("test", "GET", "/database-down", status)
        return float(value._value.get())

    before_503, before_500 = count("503"), count("500")
    with caplog.at_level("WARNING"):
        async with client(app()) as c:
            answers = [await c.get("/database-down") for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert answers[0].headers["retry-after"] == "5"
    assert answers[0].json()["error"]["code"] == "unavailable"
    assert count("503") == before_503 + 3 and count("500") == before_500
    unavailable = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(unavailable) == 1 and not any(r.exc_info for r in caplog.records)
