"""The ceiling: a bare FastAPI endpoint of the same shape as capture's form intake.

It parses the same JSON body and answers the same 202 JSON, with no database, no
validation and no outbox, under the same uvicorn settings.
"""

from __future__ import annotations

import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()


@app.post("/v1/forms/{form_id}", status_code=202)
async def submit(form_id: str, request: Request) -> Response:
    data = orjson.loads(await request.body())
    if not isinstance(data, dict):
        return Response(status_code=422)
    body = {"lead_id": str(uuid.uuid4()), "submission_id": str(uuid.uuid4()), "status": "accepted"}
    return Response(orjson.dumps(body), status_code=202, media_type="application/json")
