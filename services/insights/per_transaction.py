"""One object per transaction: the lead cache and the console's repository live this long."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.db import UnitOfWork

T = TypeVar("T")


def per_transaction(uow: UnitOfWork, make: Callable[[UnitOfWork], T]) -> T:
    """The `make(uow)` of this unit of work's current transaction, made on first use
    (`UnitOfWork.cache` keyed by `make`)."""
    return uow.cache(make, make)
