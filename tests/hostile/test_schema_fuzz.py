"""Schemathesis against every service's OpenAPI document, on the real app with its lifespan.

At least 1,000 generated cases per service (positive and negative data, every credential),
and not one server error, undocumented status, undocumented content type, response that
breaks its documented schema, or error without leadflow's error shape. A failure names the
seed: `LEADFLOW_FUZZ_SEED=<seed> .venv/bin/pytest tests/hostile/test_schema_fuzz.py` replays it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import pytest

from services.nurture import tokens
from tests.hostile.fuzz import Credential, Fuzzer, Target, fixed
from tests.hostile.support import (
    ADMIN,
    SERVICES,
    create_api_key,
    hostile_settings,
    signatures,
)

pytestmark = [
    pytest.mark.broker,
    # Schemathesis' own strategies draw from `random`; Hypothesis warns about it.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

MIN_CASES = 1000
CASES = 1100
SEED = int(os.environ.get("LEADFLOW_FUZZ_SEED") or random.SystemRandom().randrange(2**32))


def credentials_for(api_key: str | None) -> list[Credential]:
    """No credentials, the admin token, a wrong one, valid webhook signatures, API keys."""
    credentials = [
        fixed("anonymous", {}),
        fixed("admin", ADMIN),
        fixed("wrong-token", {"Authorization": "Bearer not-the-admin-token"}),
        Credential("signed", signatures),
    ]
    if api_key:
        credentials += [
            fixed("api-key", {"Authorization": f"Bearer {api_key}"}),
            fixed("x-api-key", {"X-API-Key": api_key}),
        ]
    return credentials


def targets_for(service: str, fuzzer: Fuzzer, app: Any) -> list[Target]:
    """Every operation, plus capture's forms and vendor webhook pinned to configured names."""
    targets = [Target(label) for label in fuzzer.operations]
    if service == "capture":
        targets += [
            Target.pin("POST /v1/forms/{form_id}", path={"form_id": form_id})
            for form_id in app.state.config.forms
        ]
        targets += [
            Target.pin("POST /v1/webhooks/{source}", path={"source": name})
            for name in app.state.config.platforms.webhooks
        ]
        meta = app.state.config.platforms.meta
        targets.append(
            Target.pin(
                "GET /v1/webhooks/meta",
                query={"hub.mode": "subscribe", "hub.verify_token": meta.verify_token},
            )
        )
    if service == "nurture":
        # Tracking and consent links are signed: pin genuine tokens (for a send and a lead
        # nurture does not know) so the fuzzer reaches past the signature check.
        secret = app.state.runtime.settings.secret_key.get_secret_value()
        ids = {"s": "00000000-0000-4000-8000-000000000000", "d": "unknown-lead"}
        for label, purpose, payload in (
            ("GET /v1/track/open/{token}", tokens.OPEN, {"s": ids["s"]}),
            ("GET /v1/track/click/{token}", tokens.CLICK, {"s": ids["s"], "l": "l1"}),
            ("GET /v1/unsubscribe/{token}", tokens.UNSUBSCRIBE, ids),
            ("POST /v1/unsubscribe/{token}", tokens.UNSUBSCRIBE, ids),
            ("GET /v1/confirm/{token}", tokens.CONFIRM, {**ids, "t": int(time.time())}),
            ("POST /v1/confirm/{token}", tokens.CONFIRM, {**ids, "t": int(time.time())}),
        ):
            token = tokens.sign(secret, purpose, payload)
            targets.append(Target.pin(label, path={"token": token}))
    return targets


@pytest.mark.parametrize("service", SERVICES)
async def test_generated_requests_get_documented_answers_and_never_a_5xx(
    service: str, broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    settings = hostile_settings(settings_factory, broker, tmp_path, "sqlite")
    async with running_service(service, settings) as svc:
        api_key = await create_api_key(svc.runtime) if service == "capture" else None
        document = (await svc.client.get("/openapi.json")).json()
        fuzzer = Fuzzer(
            svc.app, asyncio.get_running_loop(), document, credentials_for(api_key), SEED
        )
        try:
            report = await asyncio.to_thread(
                fuzzer.run, targets_for(service, fuzzer, svc.app), CASES
            )
        finally:
            await fuzzer.aclose()

    assert not report.findings, f"{service}, seed {SEED}:\n{report.describe()}"
    assert report.cases >= MIN_CASES, (report.cases, report.unsendable)
    protected = {label for (label, _, status) in report.credentials if status == 401}
    for label in fuzzer.operations:
        answers = {(name, status) for (op, name, status) in report.credentials if op == label}
        # Every operation was reached past its authentication at least once...
        assert {status for _, status in answers} - {401, 403}, (label, answers)
        if label in protected:
            # ...and a protected one never let in anyone without valid credentials.
            intruders = {
                (name, status)
                for name, status in answers
                if name in ("anonymous", "wrong-token") and status < 300
            }
            assert not intruders, (label, intruders)
