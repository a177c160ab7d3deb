"""shared.cli.redrive_failed: named ids, --all-failed, refusals and the report."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import typer

from shared.cli import Nouns, redrive_failed
from shared.messagebus import Refused

NOUNS = Nouns("send", "email", "emails")


@dataclass(frozen=True)
class Redrive:
    item_id: str


class FakeBus:
    """Re-drives `ok` ids, refuses `refused` ones, knows nothing of the others."""

    def __init__(self, ok: set[str], refused: set[str]) -> None:
        self.ok, self.refused = ok, refused
        self.handled: list[str] = []

    async def handle(self, message: Redrive) -> Any:
        self.handled.append(message.item_id)
        if message.item_id in self.refused:
            raise Refused(409, "not_failed", "the email is sent, not failed")
        return object() if message.item_id in self.ok else None


def runner(bus: FakeBus) -> Callable[[Callable[[Any], Awaitable[Any]]], Any]:
    return lambda work: asyncio.run(work(bus))


async def no_failed(bus: Any) -> list[str]:
    raise AssertionError("only asked with --all-failed")


def test_named_ids_are_redriven_once_each(capsys: pytest.CaptureFixture[str]) -> None:
    bus = FakeBus(ok={"a", "b"}, refused=set())
    redrive_failed(runner(bus), ["a", "b", "a"], False, no_failed, Redrive, NOUNS)
    assert bus.handled == ["a", "b"]
    assert "re-drove 2 emails" in capsys.readouterr().out


def test_all_failed_adds_the_failed_ids(capsys: pytest.CaptureFixture[str]) -> None:
    bus = FakeBus(ok={"a", "f"}, refused=set())

    async def failed(_: Any) -> list[str]:
        return ["f", "a"]

    redrive_failed(runner(bus), ["a"], True, failed, Redrive, NOUNS)
    assert bus.handled == ["a", "f"]
    assert "re-drove 2 emails" in capsys.readouterr().out


def test_refused_and_unknown_ids_are_reported_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bus = FakeBus(ok={"a"}, refused={"r"})
    with pytest.raises(typer.Exit) as exited:
        redrive_failed(runner(bus), ["a", "r", "x"], False, no_failed, Redrive, NOUNS)
    assert exited.value.exit_code == 1
    out = capsys.readouterr().out
    assert "r: the email is sent, not failed" in out
    assert "x: no such email" in out
    assert "re-drove 1 email" in out


def test_no_ids_without_all_failed_is_a_usage_error() -> None:
    with pytest.raises(typer.BadParameter, match="give send ids or --all-failed"):
        redrive_failed(runner(FakeBus(set(), set())), None, False, no_failed, Redrive, NOUNS)
