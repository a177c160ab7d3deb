"""One engine per service from one URL; every SQLite/PostgreSQL difference lives here."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# The portable INSERT ... ON CONFLICT builders, also importable from here.
from shared.db.statements import insert_ignore as insert_ignore
from shared.db.statements import upsert as upsert


class Database:
    """A service's engine, session factory and the signal that wakes its outbox relay."""

    def __init__(
        self,
        url: str,
        *,
        service: str,
        schema: str | None = None,
        pool_size: int = 10,
        echo: bool = False,
        plan_with_values: bool = False,
    ) -> None:
        self.service = service
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self.schema = schema if self.dialect == "postgresql" else None
        self.engine = _create_engine(
            url, self.dialect, self.schema, pool_size, echo, plan_with_values
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        # Set after every commit that wrote outbox rows, so events leave within milliseconds.
        self.outbox_signal = asyncio.Event()
        # SQLite has one writer at a time. Queuing writers on an asyncio lock inside the
        # process is fair and immediate; leaving it to SQLite's busy handler means sleeps
        # of up to 100 ms per retry and seconds of tail latency under load.
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def write_gate(self) -> AsyncIterator[None]:
        """Hold while a transaction that may write is open (SQLite only; no-op elsewhere)."""
        if not self.is_sqlite:
            yield
            return
        async with self._write_lock:
            yield

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def ensure_schema(self) -> None:
        """Create this service's PostgreSQL schema (and SQLite's directory) if missing."""
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            return
        admin = create_async_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            async with admin.begin() as conn:
                await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        finally:
            await admin.dispose()

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    def session(self) -> AsyncSession:
        return self.sessions()


_offloaded: contextvars.ContextVar[bool] = contextvars.ContextVar("offloaded", default=False)


@contextlib.contextmanager
def offload_statements() -> Iterator[None]:
    """Run this task's SQLite statements in the driver's thread (long reads: reports)."""
    token = _offloaded.set(True)
    try:
        yield
    finally:
        _offloaded.reset(token)


class _InlineSQLiteConnection(aiosqlite.Connection):
    """aiosqlite, with statements run on the event loop's thread and commits in its own.

    A statement on a local SQLite file takes microseconds, while aiosqlite's hop to its
    worker thread and back costs ~250 µs of CPU per statement (queue, wake-up, GIL
    hand-over, loop wake-up): on the hot paths that hop was most of a lead's CPU. Two
    kinds of call still run in the worker thread: a `BEGIN IMMEDIATE` that must wait
    for another connection's write lock (waiting on the loop's thread would stop the
    very task that is to release it; see `_begin_without_waiting`), and the commit,
    which waits for the disk (`synchronous=FULL`).
    Once `BEGIN IMMEDIATE` holds the lock, no statement of the transaction waits on
    another connection (WAL readers never block). The connection is used by one task
    at a time (the pool hands it out), so the two threads never touch it at once. Work
    inside `offload_statements()` keeps the old road for long reads.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if (
            connection is None
            # The connection's own commit and close (a cursor's close is instant).
            or (getattr(fn, "__self__", None) is connection and fn.__name__ in ("commit", "close"))
            or _offloaded.get()
        ):
            return await super()._execute(fn, *args, **kwargs)
        if args and isinstance(args[0], str) and args[0][:5].upper() == "BEGIN":
            began = _begin_without_waiting(connection, fn, args, kwargs)
            if began is _BUSY:
                return await super()._execute(fn, *args, **kwargs)
            return began
        return fn(*args, **kwargs)


_BUSY = object()
#: How long a statement waits for another connection's lock (PRAGMA busy_timeout).
BUSY_TIMEOUT_MS = 10_000


def _begin_without_waiting(
    connection: sqlite3.Connection, fn: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    """`BEGIN` on the loop's thread when it need not wait; `_BUSY` when it must.

    A deferred `BEGIN` takes no lock. `BEGIN IMMEDIATE` is tried with no busy wait: the
    write lock is almost always free (the process queues its writers on `write_gate`),
    and when another connection holds it the caller waits in the worker thread as
    before. Sparing the thread hop saves ~100 µs of CPU per transaction.
    """
    if "IMMEDIATE" not in args[0][5:].upper():
        return fn(*args, **kwargs)
    connection.execute("PRAGMA busy_timeout=0")
    try:
        return fn(*args, **kwargs)
    except sqlite3.OperationalError as exc:
        if connection.in_transaction or "locked" not in str(exc).lower():
            raise
        return _BUSY
    finally:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _sqlite_creator(database: str) -> Callable[[], Any]:
    async def connect() -> aiosqlite.Connection:
        def connector() -> sqlite3.Connection:
            # check_same_thread: statements run on the loop's thread, commits on the
            # driver's (never at the same time, see _InlineSQLiteConnection).
            return sqlite3.connect(database, timeout=30, check_same_thread=False)

        return await _InlineSQLiteConnection(connector, 64)

    return connect


def _create_engine(
    url: str, dialect: str, schema: str | None, pool_size: int, echo: bool, plans: bool
) -> AsyncEngine:
    if dialect == "sqlite":
        database = make_url(url).database or ":memory:"
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, async_creator=_sqlite_creator(database))
        _configure_sqlite(engine)
        return engine
    server_settings: dict[str, str] = {}
    if schema:
        # Each service owns a schema; search_path keeps table names unqualified in the code
        # and puts Alembic's version table in the service's schema too.
        server_settings["search_path"] = schema
    if plans:
        # Plan every execution with its values: after five, PostgreSQL may keep a generic
        # plan costed for the table as it was then (a lookup planned on a nearly empty
        # table scans it whole as it grows, until autovacuum's next ANALYZE).
        server_settings["plan_cache_mode"] = "force_custom_plan"
    connect_args: dict[str, Any] = {"server_settings": server_settings} if server_settings else {}
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args=connect_args,
    )
    _drop_closed_connections(engine)
    return engine


def _drop_closed_connections(engine: AsyncEngine) -> None:
    """Replace a pooled PostgreSQL connection that is known to be closed when it is
    checked out, without a round trip.

    `pool_pre_ping` costs three round trips per checkout with asyncpg (BEGIN, a
    statement, ROLLBACK): a tenth of a capture group's time. A server that went away
    (restart, network cut) closes its sockets, and asyncpg notes that at once: such a
    connection is swapped for a new one here. A connection whose loss was not yet
    seen fails its first statement instead; SQLAlchemy then marks every pooled
    connection of that moment stale (so each is replaced on its next checkout), and
    the caller gets a transient error (capture: 503 with Retry-After).
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver_connection = getattr(dbapi_connection, "driver_connection", None)
        is_closed = getattr(driver_connection, "is_closed", None)
        if is_closed is not None and is_closed():
            # The pool closes this one and connects anew (up to three times).
            raise exc.DisconnectionError("the connection was closed by the server")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN breaks SAVEPOINT; we emit BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer and the writer never blocks readers.
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before capture answers 2xx (no accepted lead lost).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Wait for the write lock instead of failing at once when another task holds it.
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction never
        # fails half-way with SQLITE_BUSY on lock upgrade. A connection that will only
        # read (execution option `leadflow_read_only`) takes no lock: WAL readers never
        # wait for the writer.
        if conn.get_execution_options().get("leadflow_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


async def try_leader_lock(session: AsyncSession, dialect: str, name: str) -> bool:
    """Take a transaction-scoped lock named `name`; False when another replica holds it.

    SQLite needs none: one process owns the file and BEGIN IMMEDIATE serializes writers.
    """
    if dialect != "postgresql":
        return True
    key = zlib.crc32(name.encode())
    result = await session.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
    return bool(result.scalar())


def is_transient_db_error(error: BaseException) -> bool:
    """True for failures of the database itself (down, locked, timed out), not of our logic."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return True
    if isinstance(error, exc.DBAPIError):
        text = str(error.orig).lower()
        return any(
            s in text
            for s in (
                "connection",
                "database is locked",
                "terminat",
                "shutdown",
                "cannot connect",
                "the database system",
                # PostgreSQL aborted the transaction to break a lock cycle: retry it whole.
                "deadlock detected",
                "could not serialize access",
            )
        )
    return isinstance(error, OSError | ConnectionError | asyncio.TimeoutError)
