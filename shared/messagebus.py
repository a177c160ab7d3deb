"""The message bus: every door hands its message here; one unit of work, one commit.

A door (HTTP route, Kafka consumer, worker round, CLI command) translates what came
from outside into a message (a frozen dataclass: a command such as `RecordSpend`, or
an event envelope) and calls the bus. The bus looks the handler up by the message's
type, opens a unit of work, runs the handler and commits once: state, inbox marks and
outbox events together. Handlers are plain functions `handle_x(message, uow)` (their
other dependencies bound with `functools.partial` in the service's `messagebus.py`);
they never commit.

A batch is the same road: `handle_all` runs many messages in one unit of work and
commits once. The Kafka consumer runtime (shared/kafka/consumer.py) is the bus's
door for events: it dispatches each envelope by event type the same way and adds
the inbox marks and the per-message fallback (savepoints, retries, dead letters).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from shared.db.uow import UnitOfWork

Handler = Callable[[Any, UnitOfWork], Awaitable[Any]]


class UnknownMessage(LookupError):
    """No handler is registered for this message type (a wiring bug, not bad input)."""


class Refused(Exception):
    """A handler refuses the command in the row's current state; `status` and `code` are
    the HTTP answer, `message` the reason shown to the caller."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def refuse_unless_failed(status: str, what: str, refused: type[Refused] = Refused) -> None:
    """A re-drive takes only failed work: refuse (409 `not_failed`) the `what` in any
    other `status`."""
    if status != "failed":
        raise refused(409, "not_failed", f"the {what} is {status}, not failed")


class MessageBus:
    """Message type → handler, each call in one unit of work that commits once."""

    def __init__(
        self, uow_factory: Callable[[], UnitOfWork], handlers: Mapping[type, Handler]
    ) -> None:
        self.uow_factory = uow_factory
        self.handlers = dict(handlers)

    def handler_for(self, message: Any) -> Handler:
        try:
            return self.handlers[type(message)]
        except KeyError:
            raise UnknownMessage(type(message).__name__) from None

    async def handle(self, message: Any) -> Any:
        """Run the message's handler and commit; its result is returned after the commit."""
        handler = self.handler_for(message)
        async with self.uow_factory() as uow:
            result = await handler(message, uow)
            await uow.commit()
        return result

    async def handle_all(self, messages: Sequence[Any]) -> list[Any]:
        """Many messages, one unit of work, one commit: all of them or none."""
        handlers = [self.handler_for(message) for message in messages]
        async with self.uow_factory() as uow:
            results = [
                await handler(message, uow)
                for handler, message in zip(handlers, messages, strict=True)
            ]
            await uow.commit()
        return results

    async def query(self, message: Any) -> Any:
        """Run a read-only handler: nothing is committed (the transaction is rolled back)."""
        handler = self.handler_for(message)
        async with self.uow_factory() as uow:
            return await handler(message, uow)
