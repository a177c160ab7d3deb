"""Schemathesis against a service running in-process, on the test's own event loop.

Schemathesis generates cases (Hypothesis, positive and negative) from the service's
OpenAPI document; each case is sent with the next of the service's credentials in turn
(none, the admin token, a wrong token, an API key, valid webhook signatures...) through an httpx
client bound to the running app, and the answer goes through schemathesis' checks plus
the project's own: every error has leadflow's error shape. Hypothesis runs in a worker
thread; requests hop back to the loop the app, its database and its broker clients live on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.hostile.support import BASE_URL, error_problem

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credential:
    """A way of presenting oneself: headers computed from the final request."""

    name: str
    headers: Callable[[str, str, bytes], dict[str, str]]


def fixed(name: str, headers: dict[str, str]) -> Credential:
    return Credential(name, lambda _method, _url, _body: dict(headers))


@dataclass(frozen=True)
class Target:
    """An operation to fuzz, optionally with pinned path parameters (a configured form...)."""

    label: str
    path: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def pin(
        cls, label: str, path: dict[str, str] | None = None, query: dict[str, str] | None = None
    ) -> Target:
        return cls(label, tuple(sorted((path or {}).items())), tuple(sorted((query or {}).items())))


@dataclass
class Finding:
    """One distinct problem, with the first request that showed it."""

    operation: str
    problem: str
    request: str
    response: str
    count: int = 1


@dataclass
class Report:
    """What a run sent and what it found."""

    cases: int = 0
    unsendable: int = 0
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    credentials: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def add(self, operation: str, problem: str, request: str, response: str) -> None:
        key = (operation, problem.splitlines()[0][:160])
        if key in self.findings:
            self.findings[key].count += 1
        else:
            self.findings[key] = Finding(operation, problem, request, response)

    def describe(self) -> str:
        lines = []
        for finding in self.findings.values():
            lines.append(
                f"- {finding.operation} ({finding.count}x): {finding.problem.strip()[:1200]}\n"
                f"  request:  {finding.request[:600]}\n  response: {finding.response[:600]}"
            )
        return "\n".join(lines)


class Fuzzer:
    """Sends schemathesis cases of one service and collects findings."""

    def __init__(
        self,
        app: Any,
        loop: asyncio.AbstractEventLoop,
        document: dict[str, Any],
        credentials: Sequence[Credential],
        master_seed: int,
    ) -> None:
        self.loop = loop
        self.schema = schemathesis.openapi.from_dict(document)
        self.credentials = list(credentials)
        # Each operation takes the credentials in turn, so every one of them (the admin
        # token too) reaches every operation however few cases it gets.
        self._turns: Counter[str] = Counter()
        self.seeds = random.Random(master_seed)
        self.report = Report()
        # App exceptions come back as the 500 the app answers, so they are checked like any answer.
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url=BASE_URL,
            timeout=REQUEST_TIMEOUT,
        )
        self.operations = {
            result.ok().label: result.ok()
            for result in self.schema.get_all_operations()
            if isinstance(result, Ok)
        }
        self.html_operations = {
            label
            for label, operation in self.operations.items()
            if "text/html" in _success_media_types(document, operation)
        }

    async def aclose(self) -> None:
        await self.client.aclose()

    def run(self, targets: Sequence[Target], total: int, max_passes: int = 4) -> Report:
        """Send at least `total` cases over `targets` (both modes), more passes if some ran dry."""
        budget = {(t, mode): 1.0 for t in targets for mode in MODES}
        for _ in range(max_passes):
            missing = total - self.report.cases
            if missing <= 0 or not budget:
                break
            share = math.ceil(missing / sum(budget.values()))
            for (target, mode), weight in list(budget.items()):
                wanted = max(1, math.ceil(share * weight))
                sent = self._run_target(target, mode, wanted)
                # A target that ran dry (few distinct inputs) gets nothing more next pass.
                if sent < wanted * 0.8:
                    del budget[(target, mode)]
        return self.report

    def _run_target(self, target: Target, mode: GenerationMode, max_examples: int) -> int:
        operation = self.operations[target.label]
        strategy = operation.as_strategy(
            generation_mode=mode,
            path_parameters=dict(target.path) or None,
            query=dict(target.query) or None,
        )
        sent = 0

        @seed(self.seeds.randrange(2**64))
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
            report_multiple_bugs=False,
        )
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            nonlocal sent
            turn = self._turns[target.label]
            self._turns[target.label] += 1
            if self._send(case, self.credentials[turn % len(self.credentials)]):
                sent += 1

        # Unsatisfiable: nothing to negate (no parameters, no body).
        with contextlib.suppress(Unsatisfiable):
            fuzz()
        return sent

    def _send(self, case: Any, credential: Credential) -> bool:
        kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        prepared = requests.Request(
            method=kwargs["method"],
            url=kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            data=kwargs.get("data"),
            json=kwargs.get("json"),
            files=kwargs.get("files"),
        ).prepare()
        raw = prepared.body
        body = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else b""
        method, url = str(prepared.method), str(prepared.url)
        headers = {
            name: value if isinstance(value, str) else value.decode("latin-1")
            for name, value in prepared.headers.items()
        }
        headers.update(credential.headers(method, url, body))
        try:
            request = self.client.build_request(method, url, headers=headers, content=body)
        except (UnicodeEncodeError, httpx.InvalidURL):
            # Not expressible on the wire (a header outside latin-1...): no server sees it.
            self.report.unsendable += 1
            return False
        future = asyncio.run_coroutine_threadsafe(self.client.send(request), self.loop)
        response = future.result(timeout=REQUEST_TIMEOUT + 5)
        label = case.operation.label
        self.report.cases += 1
        self.report.statuses[(label, response.status_code)] += 1
        self.report.credentials[(label, credential.name, response.status_code)] += 1
        shown_request = f"{method} {url} [{credential.name}] {body[:300]!r}"
        shown_response = f"{response.status_code} {response.text[:300]}"
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                self.report.add(
                    label, f"{failure.title}: {failure.message}", shown_request, shown_response
                )
        if response.status_code >= 400 and not (
            label in self.html_operations
            and response.headers.get("content-type", "").startswith("text/html")
        ):
            problem = error_problem(response)
            if problem:
                self.report.add(label, f"error shape: {problem}", shown_request, shown_response)
        return True


def _success_media_types(document: dict[str, Any], operation: Any) -> set[str]:
    path_item = document["paths"][operation.path]
    responses = path_item[operation.method.lower()].get("responses", {})
    types: set[str] = set()
    for status, response in responses.items():
        if str(status).startswith("2"):
            types.update((response.get("content") or {}).keys())
    return types
