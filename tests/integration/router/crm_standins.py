"""Local stand-ins for the CRMs the router delivers to, speaking their documented shapes.

Each is a real HTTP server (FastAPI on uvicorn, in a background thread, on a free
127.0.0.1 port) that records every request and can be told to fail for a while:
`fail(429, times=2, retry_after=1)`, `fail(503)` (until `recover()`), `fail(400, ...)`.

- HubSpot: `POST /crm/v3/objects/contacts/batch/upsert` (idProperty email; contacts kept
  by email, so an upsert never creates a second one), the X-HubSpot-RateLimit-* headers
  with a rolling 190 requests / 10 s window, and `GET /crm/v3/objects/deals/{id}`.
- Salesforce: `POST /services/data/vXX.X/sobjects/Lead` with a duplicate rule on Email
  (400 DUPLICATES_DETECTED with the matched record), `PATCH .../Lead/{id}`.
- Pipedrive: `x-api-token` header; `GET /v1/persons/search`, `POST /v1/persons`,
  `GET /v1/leads`, `POST /v1/leads`.
- Slack: an incoming webhook (`ok`, `invalid_payload`).
- Webhook: verifies `Leadflow-Signature` (t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorded:
    """One request the stand-in received, and the status it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


class StandIn:
    """A FastAPI app on a free local port, recording requests, failing on demand."""

    def __init__(self, port: int | None = None) -> None:
        self.app = FastAPI()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._failures: list[tuple[int, str | None, bytes]] = []
        self._fail_forever: tuple[int, str | None, bytes] | None = None
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

        @self.app.middleware("http")
        async def record_and_fail(request: Request, call_next: Any) -> Response:
            body = await request.body()
            failure = self._next_failure()
            if failure is not None:
                status, retry_after, payload = failure
                headers = {"Retry-After": retry_after} if retry_after else {}
                response: Response = Response(
                    payload, status_code=status, headers=headers, media_type="application/json"
                )
            else:
                response = await call_next(request)
            self._record(request, body, response.status_code)
            return response

    # control ----------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        """Answer `status` to the next `times` requests (None: until `recover()`)."""
        payload = orjson.dumps(body if body is not None else {"message": f"stand-in {status}"})
        entry = (status, None if retry_after is None else str(retry_after), payload)
        with self._lock:
            if times is None:
                self._fail_forever = entry
            else:
                self._failures.extend([entry] * times)

    def recover(self) -> None:
        with self._lock:
            self._fail_forever = None
            self._failures.clear()

    def _next_failure(self) -> tuple[int, str | None, bytes] | None:
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
            return self._fail_forever

    def _record(self, request: Request, body: bytes, status: int) -> None:
        with self._lock:
            self.requests.append(
                Recorded(
                    request.method,
                    request.url.path,
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                    status,
                )
            )

    def calls(self, method: str | None = None, path_contains: str = "") -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and path_contains in r.path
            ]

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> StandIn:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HubSpotStandIn(StandIn):
    """HubSpot CRM v3: contacts batch upsert by email, deals, rate-limit headers."""

    LIMIT, WINDOW = 190, 10.0

    def __init__(self, token: str = "hs-token") -> None:
        super().__init__()
        self.token = token
        self.contacts: dict[str, dict[str, Any]] = {}  # email → {"id", "properties"}
        self.deals: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(501)
        self._sent: list[float] = []
        # Set to report a quota used up by other apps of the account (header only).
        self.remaining_header: int | None = None

        @self.app.post("/crm/v3/objects/contacts/batch/upsert")
        async def upsert(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse(
                    {
                        "status": "error",
                        "message": "Authentication credentials not found.",
                        "category": "INVALID_AUTHENTICATION",
                    },
                    status_code=401,
                )
            limited = self._rate_limit()
            if limited is not None:
                return limited
            body = orjson.loads(await request.body())
            inputs = body.get("inputs")
            if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
                return self._error("inputs must hold 1 to 100 objects")
            ids = [i.get("id") for i in inputs]
            if len(set(ids)) != len(ids):
                return self._error("Duplicate IDs found in batch input")
            results = []
            for item in inputs:
                if item.get("idProperty") != "email" or not item.get("id"):
                    return self._error("idProperty must be email")
                email = str(item["id"]).lower()
                new = email not in self.contacts
                contact = self.contacts.setdefault(
                    email, {"id": str(next(self._ids)), "properties": {}}
                )
                contact["properties"].update(item.get("properties") or {})
                contact["properties"]["email"] = email
                results.append(
                    {
                        "id": contact["id"],
                        "properties": dict(contact["properties"]),
                        "createdAt": "2026-11-22T09:00:00Z",
                        "updatedAt": "2026-11-22T09:00:00Z",
                        "archived": False,
                        "new": new,
                    }
                )
            return JSONResponse(
                {
                    "status": "COMPLETE",
                    "results": results,
                    "startedAt": "2026-11-22T09:00:00Z",
                    "completedAt": "2026-11-22T09:00:00Z",
                },
                headers=self._headers(),
            )

        @self.app.get("/crm/v3/objects/deals/{deal_id}")
        async def deal(deal_id: str, request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"status": "error"}, status_code=401)
            found = self.deals.get(deal_id)
            if found is None:
                return JSONResponse(
                    {
                        "status": "error",
                        "message": "Object not found.",
                        "category": "OBJECT_NOT_FOUND",
                    },
                    status_code=404,
                )
            return JSONResponse(
                {
                    "id": deal_id,
                    "properties": found["properties"],
                    "associations": {
                        "contacts": {
                            "results": [
                                {"id": c, "type": "deal_to_contact"} for c in found["contacts"]
                            ]
                        }
                    },
                }
            )

    def _error(self, message: str) -> Response:
        return JSONResponse(
            {"status": "error", "message": message, "category": "VALIDATION_ERROR"},
            status_code=400,
        )

    def _rate_limit(self) -> Response | None:
        now = time.monotonic()
        self._sent = [t for t in self._sent if t > now - self.WINDOW]
        if len(self._sent) >= self.LIMIT:
            return JSONResponse(
                {
                    "status": "error",
                    "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT",
                    "policyName": "TEN_SECONDLY_ROLLING",
                },
                status_code=429,
                headers=self._headers(),
            )
        self._sent.append(now)
        return None

    def _headers(self) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Max": str(self.LIMIT),
            "X-HubSpot-RateLimit-Remaining": str(
                self.remaining_header
                if self.remaining_header is not None
                else max(self.LIMIT - len(self._sent), 0)
            ),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.WINDOW * 1000)),
        }

    def upsert_requests(self) -> list[Recorded]:
        return self.calls("POST", "/batch/upsert")


class SalesforceStandIn(StandIn):
    """Salesforce REST: Lead create with a duplicate rule on Email, Lead update."""

    def __init__(self, token: str = "sf-token") -> None:
        super().__init__()
        self.token = token
        self.leads: dict[str, dict[str, Any]] = {}  # id → fields
        self._ids = itertools.count(1)

        def authorized(request: Request) -> bool:
            return request.headers.get("authorization") == f"Bearer {self.token}"

        unauthorized = [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]

        @self.app.post("/services/data/{version}/sobjects/Lead")
        @self.app.post("/services/data/{version}/sobjects/Lead/")
        async def create(version: str, request: Request) -> Response:
            if not authorized(request):
                return JSONResponse(unauthorized, status_code=401)
            fields = orjson.loads(await request.body())
            missing = [f for f in ("LastName", "Company") if not fields.get(f)]
            if missing:
                return JSONResponse(
                    [
                        {
                            "message": f"Required fields are missing: {missing}",
                            "errorCode": "REQUIRED_FIELD_MISSING",
                            "fields": missing,
                        }
                    ],
                    status_code=400,
                )
            email = str(fields.get("Email") or "").lower()
            for lead_id, existing in self.leads.items():
                if email and str(existing.get("Email", "")).lower() == email:
                    return JSONResponse(_duplicate_error(version, lead_id), status_code=400)
            lead_id = f"00Q{next(self._ids):015d}"
            self.leads[lead_id] = fields
            return JSONResponse({"id": lead_id, "success": True, "errors": []}, status_code=201)

        @self.app.patch("/services/data/{version}/sobjects/Lead/{lead_id}")
        async def update(version: str, lead_id: str, request: Request) -> Response:
            if not authorized(request):
                return JSONResponse(unauthorized, status_code=401)
            if lead_id not in self.leads:
                return JSONResponse(
                    [
                        {
                            "errorCode": "NOT_FOUND",
                            "message": "The requested resource does not exist",
                        }
                    ],
                    status_code=404,
                )
            self.leads[lead_id].update(orjson.loads(await request.body()))
            return Response(status_code=204)


def _duplicate_error(version: str, lead_id: str) -> list[dict[str, Any]]:
    """Salesforce's answer when a duplicate rule blocks a Lead create."""
    record = {
        "attributes": {"type": "Lead", "url": f"/services/data/{version}/sobjects/Lead/{lead_id}"},
        "Id": lead_id,
    }
    match = {
        "entityType": "Lead",
        "errors": [],
        "matchEngine": "ExactMatchEngine",
        "matchRecords": [
            {
                "additionalInformation": [],
                "fieldDiffs": [],
                "matchConfidence": 100.0,
                "record": record,
            }
        ],
        "rule": "Standard_Lead_Match_Rule_v1_0",
        "size": 1,
        "success": True,
    }
    return [
        {
            "message": "Use one of these records?",
            "errorCode": "DUPLICATES_DETECTED",
            "fields": [],
            "duplicateResult": {
                "allowSave": False,
                "duplicateRule": "Standard_Lead_Duplicate_Rule",
                "duplicateRuleEntityType": "Lead",
                "errorMessage": "You're creating a duplicate record.",
                "matchResults": [match],
            },
        }
    ]


class PipedriveStandIn(StandIn):
    """Pipedrive v1: persons (search, add) and leads (list, add); token in x-api-token."""

    def __init__(self, token: str = "pd-token") -> None:
        super().__init__()
        self.token = token
        self.persons: dict[int, dict[str, Any]] = {}
        self.leads: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

        def denied(request: Request) -> Response | None:
            if request.headers.get("x-api-token") != self.token or "api_token" in str(
                request.url.query
            ):
                return JSONResponse(
                    {"success": False, "error": "unauthorized access", "errorCode": 401},
                    status_code=401,
                )
            return None

        @self.app.get("/v1/persons/search")
        async def search(request: Request, term: str, fields: str = "", exact_match: bool = False):
            if (refused := denied(request)) is not None:
                return refused
            items = [
                {"result_score": 1, "item": {"id": pid, "type": "person", "name": p["name"]}}
                for pid, p in self.persons.items()
                if any(e["value"].lower() == term.lower() for e in p.get("email", []))
            ]
            return {"success": True, "data": {"items": items}}

        @self.app.post("/v1/persons", status_code=201)
        async def add_person(request: Request) -> Response:
            if (refused := denied(request)) is not None:
                return refused
            person = orjson.loads(await request.body())
            if not person.get("name"):
                return JSONResponse(
                    {"success": False, "error": "Name must be given.", "errorCode": 400},
                    status_code=400,
                )
            pid = next(self._ids)
            self.persons[pid] = person
            return JSONResponse({"success": True, "data": {"id": pid, **person}}, status_code=201)

        @self.app.get("/v1/leads")
        async def list_leads(request: Request, person_id: int | None = None):
            if (refused := denied(request)) is not None:
                return refused
            data = [
                {"id": lid, **lead}
                for lid, lead in self.leads.items()
                if person_id is None or lead.get("person_id") == person_id
            ]
            return {"success": True, "data": data}

        @self.app.post("/v1/leads", status_code=201)
        async def add_lead(request: Request) -> Response:
            if (refused := denied(request)) is not None:
                return refused
            lead = orjson.loads(await request.body())
            if not lead.get("title") or lead.get("person_id") not in self.persons:
                return JSONResponse(
                    {
                        "success": False,
                        "error": "title and an existing person_id are required",
                        "errorCode": 400,
                    },
                    status_code=400,
                )
            lid = str(uuid.uuid4())
            self.leads[lid] = lead
            return JSONResponse({"success": True, "data": {"id": lid, **lead}}, status_code=201)


class SlackStandIn(StandIn):
    """A Slack incoming webhook: `ok`, or `invalid_payload` without text or blocks."""

    PATH = "/services/T0000/B0000/XXXXXXXX"

    def __init__(self) -> None:
        super().__init__()
        self.webhook_url = self.url + self.PATH

        @self.app.post(self.PATH)
        async def incoming(request: Request) -> Response:
            try:
                message = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                return PlainTextResponse("invalid_payload", status_code=400)
            if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
                return PlainTextResponse("no_text", status_code=400)
            return PlainTextResponse("ok")

    def messages(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.calls("POST") if r.status == 200]


class WebhookReceiver(StandIn):
    """A generic webhook endpoint that verifies the Leadflow-Signature header."""

    def __init__(self, secret: str = "test-webhook-secret", tolerance: float = 300) -> None:
        super().__init__()
        self.secret = secret
        self.hook_url = self.url + "/hook"
        self.bad_signatures = 0

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            if not self.signature_ok(
                request.headers.get("leadflow-signature", ""), body, tolerance
            ):
                self.bad_signatures += 1
                return JSONResponse({"error": "bad signature"}, status_code=401)
            return JSONResponse({"received": True})

    def signature_ok(self, header: str, body: bytes, tolerance: float) -> bool:
        try:
            parts = dict(p.split("=", 1) for p in header.split(","))
            if abs(time.time() - int(parts["t"])) > tolerance:
                return False
            expected = hmac.new(
                self.secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
            ).hexdigest()
            return hmac.compare_digest(expected, parts["v1"])
        except (KeyError, ValueError):
            return False

    def accepted(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.calls("POST", "/hook") if r.status == 200]

    def lead_counts(self) -> Counter[str]:
        return Counter(str(d.get("lead_id")) for d in self.accepted())


async def wait_started(*stand_ins: StandIn) -> None:
    """Start stand-ins without blocking the event loop."""
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in stand_ins))
