"""The bus interface shared by the in-process and NATS JetStream implementations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aitrading.common.bus.codec import Message

__all__ = ["Bus", "Delivery", "Handler", "ReplyHandler", "StreamSpec", "Subscription"]

Handler = Callable[[str, Message], Awaitable[None]]
"""A subscriber: called with the concrete subject and the message."""

ReplyHandler = Callable[[Message], Awaitable[Message]]
"""A request endpoint: returns the reply to a request."""


class Delivery(Protocol):
    """One delivery of a message to a durable consumer."""

    @property
    def subject(self) -> str: ...

    @property
    def msg(self) -> Message: ...

    @property
    def num_delivered(self) -> int:
        """1 on first delivery, more on redelivery."""
        ...

    async def ack(self) -> None:
        """Confirm the message is processed; it will not be delivered again."""
        ...

    async def nak(self, delay: float = 0.0) -> None:
        """Ask for redelivery after `delay` seconds."""
        ...


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    """A live subscription; `unsubscribe` ends it."""

    async def unsubscribe(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A retained stream of messages (JetStream stream / in-process log) over subject patterns."""

    name: str
    subjects: tuple[str, ...]
    max_msgs: int = 1_000_000
    max_age_s: float = 24 * 3600.0
    description: str = field(default="", compare=False)


DEFAULT_STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("ORD", ("ord.>",), description="order commands and events per tenant/account"),
    StreamSpec("SIG", ("sig.>",), description="signals per tenant/strategy"),
    StreamSpec("MDBAR", ("md.bar.>",), max_age_s=7 * 24 * 3600.0, description="closed bars per feed"),
)


class Bus(ABC):
    """Publish/subscribe, request/reply and durable consumption of typed immutable messages.

    Handlers of one subscription run one message at a time, in publish order. A handler that raises does
    not break the bus: the error is logged and counted (and a durable delivery is redelivered).
    """

    kind: str = "bus"

    @abstractmethod
    async def connect(self) -> None:
        """Open connections and make sure the configured streams exist."""

    @abstractmethod
    async def close(self) -> None:
        """Drain pending work and close; idempotent."""

    @property
    @abstractmethod
    def is_connected(self) -> bool:
        """Whether the bus can deliver messages now."""

    @abstractmethod
    async def publish(self, subject: str, msg: Message) -> None:
        """Publish `msg` on the concrete `subject`."""

    @abstractmethod
    async def subscribe(self, pattern: str, handler: Handler, *, queue: str | None = None) -> Subscription:
        """Call `handler` for each message on subjects matching `pattern` (`*` one token, `>` the rest).

        Subscribers sharing a `queue` name split the messages between them.
        """

    @abstractmethod
    async def request(self, subject: str, msg: Message, *, timeout: float = 2.0) -> Message:
        """Send a request and return the reply; raises `TemporaryError` on timeout or no responder."""

    @abstractmethod
    async def serve(self, subject: str, handler: ReplyHandler, *, queue: str | None = None) -> Subscription:
        """Answer requests on `subject` with `handler`'s return value."""

    @abstractmethod
    async def consume(
        self,
        pattern: str,
        durable: str,
        handler: DeliveryHandler,
        *,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
    ) -> Subscription:
        """Consume a retained stream durably under the consumer name `durable`.

        Messages on `pattern` (which a configured stream must cover) are delivered until acked. A handler
        that returns without acking acks implicitly; one that raises naks. Messages in flight when the
        consumer dies are redelivered, after `ack_wait`, to the next consumer with the same durable name.
        """
