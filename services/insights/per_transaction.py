"""One object per transaction: the lead cache and the console's repository live this long."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.db import UnitOfWork

T = TypeVar("T")


def per_transaction(uow: UnitOfWork, make: Callable[[UnitOfWork], T]) -> T:
    """The `make(uow)` of this unit of work's current transaction, made on first use.

    The session is new for every `async with uow:`, so its `info` lives exactly as
    long as the transaction.
    """
    info = uow.session.info
    key = ("insights", make)
    found = info.get(key)
    if found is None:
        found = info[key] = make(uow)
    return found  # type: ignore[no-any-return]
