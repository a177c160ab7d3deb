"""shared.db.statement_sets: bulk statements declared once, built once per dialect."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db.bulk import BulkStatement
from shared.db.statement_sets import Bulk, StatementSet, insert, text, update
from shared.db.tables import make_metadata

things = sa.Table(
    "things",
    make_metadata(),
    sa.Column("id", sa.String(10), primary_key=True),
    sa.Column("name", sa.String(10)),
)


class Writes(StatementSet):
    """A test set."""

    add = insert(things, ("id", "name"))
    add_new = insert(things, ("id", "name"), ignore=True)
    rename = update(things, ("name",), "id")
    forget = text('DELETE FROM "things" WHERE "id" = :id', ("id",))


class MoreWrites(Writes):
    """A set that adds one statement to another's."""

    touch = update(things, ("name",), "id")


def test_each_statement_is_built_as_bulk_statement_builds_it() -> None:
    for dialect in ("sqlite", "postgresql"):
        writes = Writes.of(dialect)
        assert writes.dialect == dialect
        built = BulkStatement.insert(things, ("id", "name"), dialect)
        assert (writes.add.sql, writes.add.columns) == (built.sql, built.columns)
        assert writes.add_new.sql.endswith("ON CONFLICT DO NOTHING")
        assert writes.rename.columns == ("name", "id")
        assert writes.forget.columns == ("id",)


def test_a_set_is_built_once_per_dialect_and_per_class() -> None:
    assert Writes.of("sqlite") is Writes.of("sqlite")
    assert Writes.of("sqlite") is not Writes.of("postgresql")
    more = MoreWrites.of("sqlite")
    assert more is not Writes.of("sqlite")
    assert more.touch.columns == ("name", "id") and more.add.columns == ("id", "name")
    assert isinstance(Writes.add, Bulk)
