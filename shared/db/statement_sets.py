"""A batch writer's bulk statements, each declared once and built once per dialect.

The lead caches write a consumer batch through a few `BulkStatement`s
(shared/db/bulk.py) whose SQL depends on the dialect. A `StatementSet` subclass
declares each of them once, as a class attribute (`insert(...)`, `update(...)`,
`text(...)`); `Subclass.of(dialect)` builds them all the first time a dialect asks
and then hands out that same set, whose attributes are the built statements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Self, overload

import sqlalchemy as sa

from shared.db.bulk import BulkStatement


class Bulk:
    """One statement of a set: how to build it for a dialect."""

    def __init__(self, build: Callable[[str], BulkStatement]) -> None:
        self.build = build

    @overload
    def __get__(self, instance: None, owner: type) -> Bulk: ...

    @overload
    def __get__(self, instance: StatementSet, owner: type) -> BulkStatement: ...

    def __get__(self, instance: StatementSet | None, owner: type) -> Bulk | BulkStatement:
        # A built set keeps its statements in its own __dict__, which wins over this
        # (non-data) descriptor: only the class, or a set still being built, gets here.
        if instance is None:
            return self
        raise AttributeError("the statement set is not built yet")


def insert(table: sa.Table, columns: Sequence[str], *, ignore: bool = False) -> Bulk:
    """`BulkStatement.insert` of `columns` into `table` (`ignore`: skip conflicting rows)."""
    return Bulk(lambda dialect: BulkStatement.insert(table, columns, dialect, ignore=ignore))


def update(table: sa.Table, columns: Sequence[str], key: str) -> Bulk:
    """`BulkStatement.update` of `columns` of `table`, by `key`."""
    return Bulk(lambda dialect: BulkStatement.update(table, columns, key, dialect))


def text(sql: str, columns: Sequence[str], *, types: Mapping[str, str] | None = None) -> Bulk:
    """`BulkStatement.text`: hand-written SQL with `:name` parameters."""
    return Bulk(lambda dialect: BulkStatement.text(sql, columns, dialect, types=types))


class StatementSet:
    """The `Bulk` class attributes of a subclass, built for one dialect."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        for name, declared in _declared(type(self)).items():
            self.__dict__[name] = declared.build(dialect)

    @classmethod
    def of(cls, dialect: str) -> Self:
        """The set built for `dialect` (built on the first call, then shared)."""
        built = _BUILT.get((cls, dialect))
        if built is None:
            built = _BUILT[cls, dialect] = cls(dialect)
        assert isinstance(built, cls)
        return built


_BUILT: dict[tuple[type[StatementSet], str], StatementSet] = {}


def _declared(cls: type) -> dict[str, Bulk]:
    found: dict[str, Bulk] = {}
    for klass in reversed(cls.__mro__):
        found.update({k: v for k, v in vars(klass).items() if isinstance(v, Bulk)})
    return found
