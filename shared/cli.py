"""What the services' admin commands share: one service's database for one command, and
re-driving failed work by id (`redrive_failed`) with a report of what could not be."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console

from shared.db.engine import Database
from shared.db.uow import UnitOfWork
from shared.messagebus import MessageBus, Refused
from shared.settings import Settings

T = TypeVar("T")
Uows = Callable[[], UnitOfWork]
Redrives = tuple[int, list[str]]  # how many were re-driven, a line for each that was not
_console = Console()


def run_with_uows(
    service: str, outbox: sa.Table, inbox: sa.Table, work: Callable[[Uows], Awaitable[T]]
) -> T:
    """Run `work` with units of work on `service`'s database (from the environment)."""

    async def main() -> T:
        settings = Settings()
        db = Database(
            settings.database_url_for(service),
            service=service,
            schema=settings.schema_for(service),
        )
        try:
            return await work(lambda: UnitOfWork(db, outbox, inbox, "leadflow/cli"))
        finally:
            await db.dispose()

    return asyncio.run(main())


def run_with_bus(
    service: str,
    outbox: sa.Table,
    inbox: sa.Table,
    make_bus: Callable[[Uows], MessageBus],
    work: Callable[[MessageBus], Awaitable[T]],
) -> T:
    """Run `work` with `make_bus(units of work)` on `service`'s database (from the environment)."""

    async def on_bus(uows: Uows) -> T:
        return await work(make_bus(uows))

    return run_with_uows(service, outbox, inbox, on_bus)


def status_option(statuses: Sequence[str]) -> Any:
    """A list command's `--status` option: one of `statuses`, or 'all'."""
    return typer.Option(help=f"One of {', '.join(statuses)}, or 'all'.")


def status_filter(status: str, statuses: Sequence[str]) -> str | None:
    """A list command's `--status`: one of `statuses` (that status), or 'all' (None)."""
    if status == "all":
        return None
    if status not in statuses:
        raise typer.BadParameter(f"one of {', '.join(statuses)} or all", param_hint="--status")
    return status


def redrive_ids(named: list[str] | None, all_failed: bool, what: str) -> list[str]:
    """The ids a re-drive command names; without any, it must say `--all-failed`."""
    if not named and not all_failed:
        raise typer.BadParameter(f"give {what} ids or --all-failed")
    return list(named or [])


async def redrive_each(
    ids: Iterable[str],
    redrive: Callable[[str], Awaitable[Any]],
    refused: type[Exception],
    missing: str,
) -> Redrives:
    """Re-drive every id once, each in its own transaction (`redrive(id)`, e.g.
    `bus.handle(RedriveSend(id))`, None for an unknown id); returns how many were
    re-driven and a line for each that was not (`refused` says why, `missing` names
    what an unknown id is not)."""
    done, problems = 0, []
    for item in dict.fromkeys(ids):
        try:
            row = await redrive(item)
        except refused as exc:
            problems.append(f"{item}: {getattr(exc, 'message', exc)}")
            continue
        if row is None:
            problems.append(f"{item}: no such {missing}")
        else:
            done += 1
    return done, problems


def report_redrive(console: Console, done: int, problems: list[str], what: str) -> None:
    """Print the problems and the count; exit 1 when anything could not be re-driven."""
    for problem in problems:
        console.print(problem, markup=False)
    console.print(f"re-drove {done} {what}")
    if problems:
        raise typer.Exit(1)


class Nouns(NamedTuple):
    """How a re-drive command names its work: the ids it takes ("give send ids or
    --all-failed"), then one and several of what it re-drives ("no such email",
    "re-drove 2 emails")."""

    ids: str
    one: str
    many: str


def redrive_failed(
    run: Callable[[Callable[[MessageBus], Awaitable[Redrives]]], Redrives],
    named: list[str] | None,
    all_failed: bool,
    failed: Callable[[MessageBus], Awaitable[Iterable[str]]],
    command: Callable[[str], Any],
    nouns: Nouns,
) -> None:
    """A re-drive command: the `named` ids (with `all_failed`, also those `failed(bus)`
    lists) each handed as `command(id)` to the bus `run` gives, in a transaction of its
    own; prints what was refused and the count, and exits 1 when any was refused."""
    ids = redrive_ids(named, all_failed, nouns.ids)

    async def work(bus: MessageBus) -> Redrives:
        if all_failed:
            ids.extend(await failed(bus))
        return await redrive_each(ids, lambda item: bus.handle(command(item)), Refused, nouns.one)

    done, problems = run(work)
    report_redrive(_console, done, problems, nouns.one if done == 1 else nouns.many)
