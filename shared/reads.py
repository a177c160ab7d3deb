"""Reads: plain functions, not bus messages, that read in a unit of work and commit nothing.

A service's queries.py writes a read once, taking the unit of work it reads in (so a
handler or a test can read inside its own transaction), and `own_unit_of_work` gives
the doors (routes, CLI, console) the same read on a unit-of-work factory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from shared.db.uow import UnitOfWork, UowFactory

P = ParamSpec("P")
T = TypeVar("T")


def own_unit_of_work(
    read: Callable[Concatenate[UnitOfWork, P], Awaitable[T]],
) -> Callable[Concatenate[UowFactory, P], Awaitable[T]]:
    """`read(uow, ...)` as `read(uows, ...)`: one unit of work of its own, rolled back."""

    async def in_own_unit_of_work(uows: UowFactory, *args: P.args, **kwargs: P.kwargs) -> T:
        async with uows() as uow:
            return await read(uow, *args, **kwargs)

    in_own_unit_of_work.__doc__ = read.__doc__
    in_own_unit_of_work.__name__ = read.__name__
    return in_own_unit_of_work
