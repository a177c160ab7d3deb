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

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.db.types import UTCDateTime


def placeholders(dialect: str, count: int) -> list[str]:
    """`count` positional parameter marks in the driver's style, for hand-written SQL
    whose rows are tuples: `$1, $2, ...` (asyncpg) or `?, ?, ...` (SQLite)."""
    if dialect == "postgresql":
        # asyncpg's numeric style.
        return [f"${i}" for i in range(1, count + 1)]
    return ["?"] * count


def _quoted(name: str) -> str:
    return f'"{name}"'


# A `:name` parameter in hand-written SQL (not a PostgreSQL `::type` cast).
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class BulkStatement:
    """An INSERT (or UPDATE by key) of `columns`, for rows given as tuples in that order."""

    def __init__(
        self, sql: str, columns: Sequence[str], order: Sequence[int] | None = None
    ) -> None:
        self.sql = sql
        self.columns = tuple(columns)
        # The row values in the order the driver's marks take them, when that is not
        # simply `columns` (SQLite's `?` take one value each, in order of appearance).
        self._arrange: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None
        if order is not None and list(order) != list(range(len(self.columns))):
            pick = itemgetter(*order)
            self._arrange = (lambda row: (pick(row),)) if len(order) == 1 else pick

    @classmethod
    def text(
        cls,
        sql: str,
        columns: Sequence[str],
        dialect: str,
        *,
        types: Mapping[str, str] | None = None,
    ) -> BulkStatement:
        """Hand-written SQL with `:name` parameters, for rows given as tuples in `columns`
        order; a name may appear several times. `types` gives the SQL type of
        parameters the database cannot infer (in a SELECT list), e.g.
        `{"at": "TIMESTAMPTZ", "data": "JSONB"}`: PostgreSQL casts them, SQLite needs none.
        """
        index = {name: i for i, name in enumerate(columns)}
        used = [m.group(1) for m in _NAMED.finditer(sql)]
        if unknown := set(used) - set(index):
            raise ValueError(f"parameters not among the columns: {sorted(unknown)}")
        if unused := set(index) - set(used):
            raise ValueError(f"columns not used as parameters: {sorted(unused)}")
        if dialect == "postgresql":
            casts = types or {}

            def mark(match: re.Match[str]) -> str:
                name = match.group(1)
                number = f"${index[name] + 1}"
                return f"CAST({number} AS {casts[name]})" if name in casts else number

            return cls(_NAMED.sub(mark, sql), columns)
        return cls(_NAMED.sub("?", sql), columns, [index[name] for name in used])

    @classmethod
    def insert(
        cls, table: sa.Table, columns: Sequence[str], dialect: str, *, ignore: bool = False
    ) -> BulkStatement:
        """INSERT INTO table (columns) VALUES (...); `ignore` skips rows that conflict."""
        names = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join(placeholders(dialect, len(columns)))
        sql = f"INSERT INTO {_quoted(table.name)} ({names}) VALUES ({marks})"
        if ignore:
            sql += " ON CONFLICT DO NOTHING"
        return cls(sql, columns)

    @classmethod
    def update(
        cls, table: sa.Table, columns: Sequence[str], key: str, dialect: str
    ) -> BulkStatement:
        """UPDATE table SET columns WHERE key = ?; rows are (*columns, key)."""
        marks = placeholders(dialect, len(columns) + 1)
        sets = ", ".join(f"{_quoted(c)} = {m}" for c, m in zip(columns, marks, strict=False))
        sql = f"UPDATE {_quoted(table.name)} SET {sets} WHERE {_quoted(key)} = {marks[-1]}"
        return cls(sql, (*columns, key))

    def run_in(self, session: Session, rows: list[tuple[Any, ...]]) -> None:
        """Execute for every row on the session's connection (its transaction), in
        SQLAlchemy's sync (greenlet) context."""
        if rows:
            session.connection().exec_driver_sql(self.sql, self._arranged(rows))

    async def run_async(self, session: AsyncSession, rows: list[tuple[Any, ...]]) -> None:
        """As `run_in`, from async code."""
        if rows:
            connection = await session.connection()
            await connection.exec_driver_sql(self.sql, self._arranged(rows))

    def _arranged(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        arrange = self._arrange
        return rows if arrange is None else [arrange(row) for row in rows]


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

    def reader(
        self, columns: Sequence[sa.ColumnElement[Any]]
    ) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """Driver rows of these columns (from `exec_driver_sql`) → the values their
        column types give back: aware UTC times, booleans, decoded JSON.

        asyncpg already returns those; SQLite returns text and integers.
        """
        if self.dialect != "sqlite":
            return tuple
        conversions = [
            (i, convert)
            for i, column in enumerate(columns)
            if (convert := _sqlite_reader(column.type)) is not None
        ]

        def read(raw: Sequence[Any]) -> tuple[Any, ...]:
            values = list(raw)
            for i, convert in conversions:
                value = values[i]
                if value is not None:
                    values[i] = convert(value)
            return tuple(values)

        return read


def _sqlite_reader(column_type: Any) -> Callable[[Any], Any] | None:
    if isinstance(column_type, UTCDateTime):
        # SQLAlchemy's SQLite DATETIME text: naive UTC.
        return lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC)
    if isinstance(column_type, sa.Boolean):
        return bool
    if isinstance(column_type, sa.JSON):
        return orjson.loads
    return None


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
    # The aware text less its "+00:00": one string, no naive copy of the time.
    return value.isoformat(" ", "microseconds")[:-6]


def _aware_time(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value
