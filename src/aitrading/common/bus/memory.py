"""In-process bus: zero-copy delivery of immutable messages inside one event loop.

Used by the all-in-one platform and by backtests. Publishing awaits the subscribers in order, so a run is
deterministic and back-pressure is natural. Streams and durable consumers behave like JetStream's within
the process lifetime (ack, nak, redelivery after `ack_wait`, redelivery when a consumer dies).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import structlog

from aitrading.common.bus.base import (
    DEFAULT_STREAMS,
    Bus,
    DeliveryHandler,
    Handler,
    ReplyHandler,
    StreamSpec,
    Subscription,
)
from aitrading.common.bus.codec import Message
from aitrading.common.bus.subjects import subject_matches, validate_pattern, validate_subject
from aitrading.common.errors import TemporaryError

__all__ = ["MemoryBus"]

_log = structlog.get_logger("bus.memory")


@dataclass(eq=False, slots=True)
class _Sub:
    bus: MemoryBus
    pattern: str
    handler: Handler
    queue: str | None
    active: bool = True
    busy: bool = False
    backlog: deque[tuple[str, Message]] = field(default_factory=deque)

    async def unsubscribe(self) -> None:
        if self.active:
            self.active = False
            self.bus._remove(self)


@dataclass(slots=True)
class _Stored:
    seq: int
    subject: str
    msg: Message


@dataclass(eq=False, slots=True)
class _MemDelivery:
    consumer: _Durable
    stored: _Stored
    num_delivered: int
    done: bool = False

    @property
    def subject(self) -> str:
        return self.stored.subject

    @property
    def msg(self) -> Message:
        return self.stored.msg

    async def ack(self) -> None:
        if not self.done:
            self.done = True
            self.consumer.acked(self.stored.seq)

    async def nak(self, delay: float = 0.0) -> None:
        if not self.done:
            self.done = True
            self.consumer.redeliver_later(self.stored, delay)


@dataclass(eq=False)
class _Durable:
    """A durable consumer's state; it outlives the subscriptions that attach to it."""

    bus: MemoryBus
    name: str
    pattern: str
    ack_wait: float
    max_deliver: int
    next_seq: int = 0
    pending: deque[_Stored] = field(default_factory=deque)
    in_flight: dict[int, tuple[_Stored, int]] = field(default_factory=dict)
    deliveries: dict[int, int] = field(default_factory=dict)
    handler: DeliveryHandler | None = None
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    timers: set[asyncio.TimerHandle] = field(default_factory=set)

    def offer(self, stored: _Stored) -> None:
        if stored.seq >= self.next_seq and subject_matches(self.pattern, stored.subject):
            self.next_seq = stored.seq + 1
            self.pending.append(stored)
            self.wakeup.set()

    def acked(self, seq: int) -> None:
        self.in_flight.pop(seq, None)
        self.deliveries.pop(seq, None)

    def redeliver_later(self, stored: _Stored, delay: float) -> None:
        self.in_flight.pop(stored.seq, None)
        if delay <= 0:
            self._requeue(stored)
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(delay, self._requeue_timer, stored)
        self.timers.add(handle)

    def _requeue_timer(self, stored: _Stored) -> None:
        self._requeue(stored)

    def _requeue(self, stored: _Stored) -> None:
        if self.max_deliver > 0 and self.deliveries.get(stored.seq, 0) >= self.max_deliver:
            _log.warning("bus_max_deliver", consumer=self.name, subject=stored.subject, seq=stored.seq)
            self.deliveries.pop(stored.seq, None)
            return
        self.pending.appendleft(stored)
        self.wakeup.set()

    def detach(self) -> None:
        """The consumer died: what it held goes back for redelivery after `ack_wait`."""
        self.handler = None
        if self.task is not None:
            self.task.cancel()
            self.task = None
        held = sorted(self.in_flight.values(), key=lambda item: item[0].seq)
        self.in_flight.clear()
        loop = asyncio.get_running_loop()
        for stored, _ in reversed(held):
            self.timers.add(loop.call_later(self.ack_wait, self._requeue_timer, stored))

    async def run(self) -> None:
        while True:
            while not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
            stored = self.pending.popleft()
            handler = self.handler
            if handler is None:
                self.pending.appendleft(stored)
                return
            count = self.deliveries.get(stored.seq, 0) + 1
            self.deliveries[stored.seq] = count
            self.in_flight[stored.seq] = (stored, count)
            delivery = _MemDelivery(self, stored, count)
            loop = asyncio.get_running_loop()
            timeout = loop.call_later(self.ack_wait, self._ack_timeout, delivery)
            try:
                await handler(delivery)
            except asyncio.CancelledError:
                timeout.cancel()
                raise
            except Exception:
                _log.exception("bus_handler_failed", consumer=self.name, subject=stored.subject)
                self.bus.handler_errors += 1
                await delivery.nak()
            else:
                await delivery.ack()
            timeout.cancel()

    def _ack_timeout(self, delivery: _MemDelivery) -> None:
        if not delivery.done:
            delivery.done = True
            self.redeliver_later(delivery.stored, 0)


@dataclass(eq=False, slots=True)
class _DurableSub:
    durable: _Durable

    async def unsubscribe(self) -> None:
        if self.durable.handler is not None:
            self.durable.detach()


class MemoryBus(Bus):
    """The in-process bus."""

    kind = "memory"

    def __init__(self, streams: tuple[StreamSpec, ...] = DEFAULT_STREAMS) -> None:
        self._subs: list[_Sub] = []
        self._route_cache: dict[str, list[_Sub]] = {}
        self._queue_rr: dict[tuple[str, str], itertools.count[int]] = {}
        self._streams = streams
        self._logs: dict[str, OrderedDict[int, _Stored]] = {s.name: OrderedDict() for s in streams}
        self._stream_cache: dict[str, StreamSpec | None] = {}
        self._durables: dict[str, _Durable] = {}
        self._seq = 0
        self._connected = False
        self.published = 0
        self.handler_errors = 0

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        for durable in self._durables.values():
            if durable.task is not None:
                durable.task.cancel()
            for timer in durable.timers:
                timer.cancel()
        self._durables.clear()
        self._subs.clear()
        self._route_cache.clear()
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def publish(self, subject: str, msg: Message) -> None:
        self.published += 1
        subs = self._route_cache.get(subject)
        if subs is None:
            validate_subject(subject)
            subs = [s for s in self._subs if subject_matches(s.pattern, subject)]
            self._route_cache[subject] = subs
        if self._streams:
            self._retain(subject, msg)
        if not subs:
            return
        seen_queues: set[str] = set()
        for candidate in subs:
            sub = candidate if candidate.queue is None else self._queue_turn(candidate, subs, seen_queues)
            if sub is None or not sub.active:
                continue
            # One message at a time per subscription: a publisher that finds the handler busy (another task,
            # or the handler publishing to itself) leaves the message to the task already delivering.
            if sub.busy:
                sub.backlog.append((subject, msg))
                continue
            sub.busy = True
            subj, queued = subject, msg
            if sub.backlog:  # left behind by a cancelled delivery: keep publish order
                sub.backlog.append((subject, msg))
                subj, queued = sub.backlog.popleft()
            try:
                while True:
                    try:
                        await sub.handler(subj, queued)
                    except Exception:
                        self.handler_errors += 1
                        _log.exception("bus_handler_failed", subject=subj, pattern=sub.pattern)
                    if not (sub.active and sub.backlog):
                        break
                    subj, queued = sub.backlog.popleft()
            finally:
                sub.busy = False

    def _queue_turn(self, candidate: _Sub, subs: list[_Sub], seen_queues: set[str]) -> _Sub | None:
        """Pick the member of `candidate`'s queue group for this message, once per group."""
        if candidate.queue in seen_queues:
            return None
        seen_queues.add(candidate.queue or "")
        return self._pick_queue_member(candidate, subs)

    def _pick_queue_member(self, first: _Sub, subs: list[_Sub]) -> _Sub:
        members = [s for s in subs if s.queue == first.queue and s.pattern == first.pattern]
        counter = self._queue_rr.setdefault((first.pattern, first.queue or ""), itertools.count())
        return members[next(counter) % len(members)]

    def _stream_of(self, subject: str) -> StreamSpec | None:
        """The stream that retains `subject`, if any (cached: the hot path publishes few subjects often)."""
        try:
            return self._stream_cache[subject]
        except KeyError:
            found = next(
                (spec for spec in self._streams if any(subject_matches(p, subject) for p in spec.subjects)),
                None,
            )
            if len(self._stream_cache) > 100_000:
                self._stream_cache.clear()
            self._stream_cache[subject] = found
            return found

    def _retain(self, subject: str, msg: Message) -> None:
        spec = self._stream_of(subject)
        if spec is None:
            return
        self._seq += 1
        stored = _Stored(self._seq, subject, msg)
        log = self._logs[spec.name]
        log[stored.seq] = stored
        while len(log) > spec.max_msgs:
            log.popitem(last=False)
        for durable in self._durables.values():
            if durable.handler is not None or durable.task is None:
                durable.offer(stored)

    async def subscribe(self, pattern: str, handler: Handler, *, queue: str | None = None) -> Subscription:
        validate_pattern(pattern)
        sub = _Sub(self, pattern, handler, queue)
        self._subs.append(sub)
        self._route_cache.clear()
        return sub

    def _remove(self, sub: _Sub) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._route_cache.clear()

    async def request(self, subject: str, msg: Message, *, timeout: float = 2.0) -> Message:
        validate_subject(subject)
        for sub in self._subs:
            if isinstance(sub.handler, _ReplyAdapter) and subject_matches(sub.pattern, subject):
                try:
                    return await asyncio.wait_for(sub.handler.reply(msg), timeout)
                except TimeoutError:
                    raise TemporaryError(f"request on {subject} timed out after {timeout}s") from None
        raise TemporaryError(f"no responder for {subject}")

    async def serve(self, subject: str, handler: ReplyHandler, *, queue: str | None = None) -> Subscription:
        return await self.subscribe(subject, _ReplyAdapter(handler), queue=queue)

    async def consume(
        self,
        pattern: str,
        durable: str,
        handler: DeliveryHandler,
        *,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
    ) -> Subscription:
        validate_pattern(pattern)
        spec = self._stream_for(pattern)
        state = self._durables.get(durable)
        if state is None:
            state = _Durable(self, durable, pattern, ack_wait, max_deliver)
            self._durables[durable] = state
            for stored in self._logs[spec.name].values():
                state.offer(stored)
        elif state.handler is not None:
            raise ValueError(f"durable consumer {durable!r} already has a live subscriber")
        state.handler = handler
        state.task = asyncio.get_running_loop().create_task(state.run(), name=f"durable:{durable}")
        return _DurableSub(state)

    def _stream_for(self, pattern: str) -> StreamSpec:
        for spec in self._streams:
            for subj in spec.subjects:
                if subject_matches(subj, pattern.replace("*", "x").replace(">", "x")):
                    return spec
        raise ValueError(f"no stream covers {pattern!r}; durable consumers need a configured stream")


class _ReplyAdapter:
    """Lets a request endpoint sit in the subscription list while answering requests directly."""

    __slots__ = ("reply",)

    def __init__(self, reply: ReplyHandler) -> None:
        self.reply = reply

    async def __call__(self, subject: str, msg: Message) -> None:
        await self.reply(msg)
