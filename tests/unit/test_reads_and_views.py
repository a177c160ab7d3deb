"""shared.reads (a read in a unit of work of its own) and shared.views (fields by name)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from shared.reads import own_unit_of_work
from shared.views import fields_of


class FakeUow:
    """Records whether it was entered, exited and committed."""

    def __init__(self) -> None:
        self.entered = self.exited = self.committed = False

    async def __aenter__(self) -> FakeUow:
        self.entered = True
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.exited = True

    async def commit(self) -> None:
        self.committed = True


async def read_twice(uow: Any, value: int, *, label: str = "n") -> str:
    """Doubles `value` inside `uow`."""
    assert uow.entered and not uow.exited
    return f"{label}={value * 2}"


async def test_own_unit_of_work_opens_one_closes_it_and_commits_nothing() -> None:
    made: list[FakeUow] = []

    def uows() -> Any:
        made.append(FakeUow())
        return made[-1]

    read = own_unit_of_work(read_twice)
    assert await read(uows, 21, label="x") == "x=42"
    assert len(made) == 1 and made[0].exited and not made[0].committed
    assert read.__name__ == "read_twice" and read.__doc__ == read_twice.__doc__


def test_fields_of_copies_the_named_fields_in_order() -> None:
    row = SimpleNamespace(a=1, b=None, c="three", d=4)
    assert list(fields_of(row, "c", "a", "b").items()) == [("c", "three"), ("a", 1), ("b", None)]
    assert fields_of(row) == {}
