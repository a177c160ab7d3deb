"""Portable statements: what SQLite and PostgreSQL spell differently, spelled once.

Services build their SQL through these and never test the dialect themselves:
INSERT ... ON CONFLICT (skip or update), a row lock on hand-written SQL, and the
UTC day of a stored time. Raw driver SQL (placeholders, typed parameters, reading
the driver's rows back) is in `shared.db.bulk`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


def dialect_insert(table: sa.Table, dialect: str) -> Any:
    """The dialect's INSERT for `table`: it has `on_conflict_do_nothing`,
    `on_conflict_do_update`, `excluded` and `returning` on both databases."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)


def insert_ignore(table: sa.Table, dialect: str, *index_elements: str) -> Any:
    """INSERT that silently skips rows conflicting on `index_elements` (any key if none)."""
    return dialect_insert(table, dialect).on_conflict_do_nothing(
        index_elements=list(index_elements) or None
    )


def upsert(
    table: sa.Table,
    dialect: str,
    index_elements: list[str],
    values: dict[str, Any],
    update: dict[str, Any],
) -> Any:
    """INSERT ... ON CONFLICT (index_elements) DO UPDATE SET update."""
    return (
        dialect_insert(table, dialect)
        .values(**values)
        .on_conflict_do_update(index_elements=index_elements, set_=update)
    )


def lock_rows(dialect: str, *, skip_locked: bool = False) -> str:
    """The clause that ends a hand-written SELECT to lock its rows until commit.

    Empty on SQLite, where `BEGIN IMMEDIATE` already serializes writers (and the
    clause does not parse); SQLAlchemy's `.with_for_update()` does the same itself.
    """
    if dialect != "postgresql":
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


class utc_day(FunctionElement[str]):
    """`utc_day(column)`: the UTC calendar day of a stored time as 'YYYY-MM-DD' text."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char(timezone('UTC', {column}), 'YYYY-MM-DD')"


@compiles(utc_day)
def _utc_day_text(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores UTC times as ISO text: the day is its first ten characters.
    column = compiler.process(element.clauses, **kw)
    return f"substr(CAST({column} AS VARCHAR), 1, 10)"
