"""The unit of work: one transaction holding state changes, inbox marks and outbox events.

Only the unit of work commits. `async with uow:` rolls back unless
`await uow.commit()` was called; events published through it are written to
the outbox in the same transaction, so they leave if and only if the state
change is committed.

`uow.cache(key, factory)` keeps one object per transaction (a lead cache, a
repository): made on first use, forgotten when the transaction commits or rolls back.

Over 300 lines because the transaction's parts (session, outbox rows, inbox marks,
savepoints, commit hooks, cache) share one state and one lifetime.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utc_now
from shared.db.bulk import BulkStatement, Values, placeholders
from shared.db.engine import Database
from shared.events.contracts import Event
from shared.events.envelope import Envelope, encode

_IDS = postgresql.ARRAY(sa.String())

T = TypeVar("T")


class UnitOfWork:
    """A transaction on a service's database, with its outbox and inbox."""

    def __init__(self, db: Database, outbox: sa.Table, inbox: sa.Table, source: str) -> None:
        self.db = db
        self._outbox = outbox
        self._inbox = inbox
        self.source = source
        self._session: AsyncSession | None = None
        self._pending_events: list[tuple[Any, ...]] = []
        self._pending_inbox: list[tuple[Any, ...]] = []
        self._values = Values(db.dialect)
        self._insert_events, self._insert_inbox = _statements(outbox, inbox, db.dialect)
        self._committed = False
        self._wrote_events = False
        self._before_commit: list[Callable[[], Awaitable[None]]] = []
        self._after_commit: list[Callable[[], None]] = []
        self._once_keys: dict[str, int] = {}
        self._cache: dict[Hashable, Any] = {}

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("use the unit of work inside `async with uow:`")
        return self._session

    @property
    def dialect(self) -> str:
        """The database's dialect name, for the builders of `shared.db.statements` and
        `shared.db.bulk` (never to branch on)."""
        return self.db.dialect

    @property
    def values(self) -> Values:
        """Python values as this database's driver stores them (see `shared.db.bulk`)."""
        return self._values

    async def __aenter__(self) -> UnitOfWork:
        self._gate = self.db.write_gate()
        await self._gate.__aenter__()
        self._session = self.db.session()
        self._forget_pending()
        self._committed = False
        self._wrote_events = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if not self._committed:
                await session.rollback()
        finally:
            try:
                await session.close()
            finally:
                self._session = None
                await self._gate.__aexit__(None, None, None)

    def publish(self, data: Event, *, event_id: str | None = None) -> Envelope[Event]:
        """Queue an event for the outbox of this transaction."""
        envelope: Envelope[Event] = Envelope(data=data, source=self.source)
        if event_id is not None:
            envelope = Envelope(data=data, source=self.source, id=event_id, time=envelope.time)
        self.publish_envelope(envelope)
        return envelope

    def publish_envelope(self, envelope: Envelope[Event]) -> None:
        """Queue an already-built envelope for the outbox."""
        key, value, headers = encode(envelope)
        self.publish_raw(envelope.topic, key, value, headers, envelope.id)

    def publish_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Iterable[tuple[str, bytes]],
        event_id: str,
    ) -> None:
        """Queue a raw record (dead letters, re-drives) for the outbox."""
        self.publish_text(
            topic,
            (key or b"").decode("utf-8", "replace"),
            value,
            [(k, (v or b"").decode("utf-8", "replace")) for k, v in headers],
            event_id,
            utc_now(),
        )

    def publish_text(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: Sequence[tuple[str, str]],
        event_id: str,
        created_at: datetime,
    ) -> None:
        """Queue a record whose key and header values are text already (a service that
        writes its records itself: no bytes to decode), created at `created_at`."""
        self._pending_events.append(
            (
                event_id,
                topic,
                key,
                self._values.json(headers),
                value,
                self._values.time(created_at),
            )
        )

    async def handled(self, consumer: str, event_ids: Iterable[str]) -> set[str]:
        """Which of these event ids this consumer has already handled."""
        ids = list(event_ids)
        if not ids:
            return set()
        statement = _handled_statement(self._inbox, self.db.dialect)
        if self.db.dialect == "postgresql":
            rows = await self.session.execute(statement, {"ids": ids, "consumer": consumer})
            return set(rows.scalars())
        seen: set[str] = set()
        for start in range(0, len(ids), 500):
            rows = await self.session.execute(
                statement, {"ids": ids[start : start + 500], "consumer": consumer}
            )
            seen.update(rows.scalars())
        return seen

    async def claim(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Mark these events handled by `consumer` in this transaction, now; returns the
        ids that were not marked already (the others are duplicates).

        One statement (`INSERT ... ON CONFLICT DO NOTHING RETURNING`; on SQLite one per
        500 events) where `handled` and `mark_handled` take two. The marks are undone with the
        transaction, like every other change.
        """
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return set()
        connection = await self.session.connection()
        at = self._values.time(utc_now())
        if self.db.dialect == "postgresql":
            # The ids as one array: one statement text whatever the batch's size, planned
            # at once (500 rows of VALUES took ~10 ms of the server's time a batch).
            sql = _claim_array_sql(self._inbox.name)
            return {row[0] for row in await connection.exec_driver_sql(sql, (consumer, ids, at))}
        claimed: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            params: list[Any] = []
            for event_id in chunk:
                params += (consumer, event_id, at)
            sql = _claim_sql(self._inbox.name, self.db.dialect, len(chunk))
            result = await connection.exec_driver_sql(sql, tuple(params))
            claimed.update(row[0] for row in result)
        return claimed

    def mark_handled(self, consumer: str, event_id: str) -> None:
        """Record in this transaction that `consumer` handled `event_id`."""
        self._pending_inbox.append((consumer, event_id, self._values.time(utc_now())))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: on error only its own changes and events are undone."""
        events_before, inbox_before = len(self._pending_events), len(self._pending_inbox)
        hooks_before = len(self._before_commit), len(self._after_commit)
        nested = await self.session.begin_nested()
        try:
            yield
            await self._flush_pending()
        except BaseException:
            if nested.is_active:
                await nested.rollback()
            del self._pending_events[events_before:]
            del self._pending_inbox[inbox_before:]
            del self._before_commit[hooks_before[0] :]
            del self._after_commit[hooks_before[1] :]
            self._once_keys = {k: i for k, i in self._once_keys.items() if i < hooks_before[1]}
            raise
        else:
            await nested.commit()

    async def flush(self) -> None:
        """Write pending ORM changes and queued rows without committing."""
        await self._flush_pending()
        await self.session.flush()

    def before_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await `callback` just before this transaction commits (queued writes go out there)."""
        self._before_commit.append(callback)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this transaction has committed; never after a rollback."""
        self._after_commit.append(callback)

    def on_commit(self, callback: Callable[[], None], *, once_key: str | None = None) -> None:
        """`after_commit`, at most once per transaction for a given `once_key`.

        Wakes (the relay, the delivery worker, the scheduler) and metric counts use the
        key so a batch of many messages wakes a worker once, not once per message.
        """
        if once_key is not None:
            if once_key in self._once_keys:
                return
            self._once_keys[once_key] = len(self._after_commit)
        self._after_commit.append(callback)

    def cache(self, key: Hashable, factory: Callable[[UnitOfWork], T]) -> T:
        """The object of this transaction under `key`: `factory(uow)` on first use, the
        same one until the transaction commits or rolls back (then a new one is made)."""
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = factory(self)
        return found  # type: ignore[no-any-return]

    def cached(self, key: Hashable) -> Any | None:
        """The object of this transaction under `key`, if `cache` made one."""
        return self._cache.get(key)

    async def commit(self) -> None:
        """Commit state, inbox marks and outbox events together; wake the relay.

        The `before_commit` callbacks run once: a later commit of the same unit of
        work runs only those added since."""
        for callback in self._before_commit:
            await callback()
        self._before_commit.clear()
        await self._flush_pending()
        wrote_events = self._wrote_events
        await self.session.commit()
        self._committed = True
        if wrote_events:
            self.db.outbox_signal.set()
        callbacks, self._after_commit = self._after_commit, []
        self._once_keys.clear()
        self._cache.clear()
        for done in callbacks:
            done()

    async def rollback(self) -> None:
        await self.session.rollback()
        self._forget_pending()

    def _forget_pending(self) -> None:
        """Drop what was queued for the transaction: rows, commit hooks, cached objects."""
        self._pending_events.clear()
        self._pending_inbox.clear()
        self._before_commit.clear()
        self._after_commit.clear()
        self._once_keys.clear()
        self._cache.clear()

    async def _flush_pending(self) -> None:
        if self._pending_events:
            await self._insert_events.run_async(self.session, self._pending_events)
            self._pending_events.clear()
            self._wrote_events = True
        if self._pending_inbox:
            await self._insert_inbox.run_async(self.session, self._pending_inbox)
            self._pending_inbox.clear()


@functools.cache
def _statements(
    outbox: sa.Table, inbox: sa.Table, dialect: str
) -> tuple[BulkStatement, BulkStatement]:
    """The outbox and inbox inserts, built once per table pair and dialect."""
    return (
        BulkStatement.insert(
            outbox, ("event_id", "topic", "key", "headers", "value", "created_at"), dialect
        ),
        BulkStatement.insert(inbox, ("consumer", "event_id", "handled_at"), dialect),
    )


@functools.lru_cache(maxsize=64)
def _claim_sql(inbox: str, dialect: str, count: int) -> str:
    """INSERT of `count` inbox marks that returns the event ids it inserted."""
    marks = placeholders(dialect, 3 * count)
    rows = ", ".join(f"({', '.join(marks[i : i + 3])})" for i in range(0, len(marks), 3))
    return (
        f'INSERT INTO "{inbox}" ("consumer", "event_id", "handled_at") VALUES {rows}'
        ' ON CONFLICT DO NOTHING RETURNING "event_id"'
    )


@functools.cache
def _claim_array_sql(inbox: str) -> str:
    """PostgreSQL's claim: the event ids as one array (`$2`), for consumer `$1` at `$3`."""
    return (
        f'INSERT INTO "{inbox}" ("consumer", "event_id", "handled_at")'
        " SELECT $1::varchar, u.id, $3::timestamptz FROM unnest($2::varchar[]) AS u(id)"
        ' ON CONFLICT DO NOTHING RETURNING "event_id"'
    )


@functools.cache
def _handled_statement(inbox: sa.Table, dialect: str) -> Any:
    """Which of `:ids` `:consumer` has handled, built once per inbox table and dialect."""
    if dialect == "postgresql":
        # One array parameter, joined: a long IN list (or `= ANY`) is tested row by row
        # against every id while the table has no statistics yet, quadratic in effect.
        return sa.text(
            f"SELECT i.event_id FROM unnest(:ids) AS u(id) JOIN {inbox.name} i"
            " ON i.consumer = :consumer AND i.event_id = u.id"
        ).bindparams(sa.bindparam("ids", type_=_IDS))
    return sa.select(inbox.c.event_id).where(
        inbox.c.consumer == sa.bindparam("consumer"),
        inbox.c.event_id.in_(sa.bindparam("ids", expanding=True)),
    )


#: What builds a fresh unit of work (a service runtime's `uow`): doors and reads take one.
UowFactory = Callable[[], UnitOfWork]
