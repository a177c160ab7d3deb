"""Database plumbing: engines for SQLite and PostgreSQL, portable types, unit of work."""

from shared.db.engine import Database, is_transient_db_error
from shared.db.tables import add_plumbing_tables, make_metadata
from shared.db.uow import UnitOfWork

__all__ = [
    "Database",
    "UnitOfWork",
    "add_plumbing_tables",
    "is_transient_db_error",
    "make_metadata",
]
