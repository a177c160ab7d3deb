"""Bulk writes through the driver: many rows, one statement, no per-row compilation.

SQLAlchemy's executemany processes every parameter of every row in Python (type
processors, key lookups); for the hot paths that write hundreds of rows per
transaction that costs more than the database does. A `BulkStatement` is plain
SQL in the driver's parameter style, fed tuples whose values are already what the
driver stores: `Values` turns times and JSON into exactly what the portable column
types (`UTCDateTime`, `JSONType`) would have written, so rows written either way
read back the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


def _placeholders(dialect: str, count: int) -> list[str]:
    if dialect == "postgresql":
        # asyncpg's numeric style.
        return [f"${i}" for i in range(1, count + 1)]
    return ["?"] * count


def _quoted(name: str) -> str:
    return f'"{name}"'


class BulkStatement:
    """An INSERT (or UPDATE by key) of `columns`, for rows given as tuples in that order."""

    def __init__(self, sql: str, columns: Sequence[str]) -> None:
        self.sql = sql
        self.columns = tuple(columns)

    @classmethod
    def insert(
        cls, table: sa.Table, columns: Sequence[str], dialect: str, *, ignore: bool = False
    ) -> BulkStatement:
        """INSERT INTO table (columns) VALUES (...); `ignore` skips rows that conflict."""
        names = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join(_placeholders(dialect, len(columns)))
        sql = f"INSERT INTO {_quoted(table.name)} ({names}) VALUES ({marks})"
        if ignore:
            sql += " ON CONFLICT DO NOTHING"
        return cls(sql, columns)

    @classmethod
    def update(
        cls, table: sa.Table, columns: Sequence[str], key: str, dialect: str
    ) -> BulkStatement:
        """UPDATE table SET columns WHERE key = ?; rows are (*columns, key)."""
        marks = _placeholders(dialect, len(columns) + 1)
        sets = ", ".join(f"{_quoted(c)} = {m}" for c, m in zip(columns, marks, strict=False))
        sql = f"UPDATE {_quoted(table.name)} SET {sets} WHERE {_quoted(key)} = {marks[-1]}"
        return cls(sql, (*columns, key))

    def run_in(self, session: Session, rows: list[tuple[Any, ...]]) -> None:
        """Execute for every row on the session's connection (its transaction), in
        SQLAlchemy's sync (greenlet) context."""
        if rows:
            session.connection().exec_driver_sql(self.sql, rows)

    async def run_async(self, session: AsyncSession, rows: list[tuple[Any, ...]]) -> None:
        """As `run_in`, from async code."""
        if rows:
            connection = await session.connection()
            await connection.exec_driver_sql(self.sql, rows)


class Values:
    """Python values as the driver stores them, matching the portable column types."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.time: Callable[[datetime | None], Any] = (
            _sqlite_time if dialect == "sqlite" else _aware_time
        )

    @staticmethod
    def json(value: Any) -> str:
        """JSON text (JSON on SQLite, JSONB on PostgreSQL); None is the JSON null, as
        SQLAlchemy's JSON type writes it."""
        return orjson.dumps(value).decode()


def _sqlite_time(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME storage: naive UTC, always with microseconds, so
    # stored times compare as text in time order.
    if value is None:
        return None
    zone = value.tzinfo
    if zone is None:
        raise ValueError("naive datetime given to a UTC column")
    if zone is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _aware_time(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value
