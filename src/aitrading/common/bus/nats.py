"""NATS JetStream bus: the split deployment's bus, behind the same interface as the in-process one.

Publishing is core NATS (fire and forget, in order per connection); JetStream streams capture the subjects
they cover, and durable pull consumers replay them with explicit acks. Payloads are the msgpack of
`codec.encode`; a payload that does not decode is logged, counted and dropped (terminated for durable
consumers) so it cannot loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from aitrading.common.bus.base import (
    DEFAULT_STREAMS,
    Bus,
    DeliveryHandler,
    Handler,
    ReplyHandler,
    StreamSpec,
    Subscription,
)
from aitrading.common.bus.codec import Message, decode, encode
from aitrading.common.bus.subjects import subject_matches, validate_pattern, validate_subject
from aitrading.common.errors import OperationalError, TemporaryError

__all__ = ["NatsBus"]

_log = structlog.get_logger("bus.nats")

_FETCH_BATCH = 16
"""Messages pulled per fetch; the ones not yet handled get in-progress acks so `ack_wait` does not lapse."""
_FETCH_TIMEOUT = 1.0
_ERROR_HEADER = "Aitrading-Error"
_CONNECT_ATTEMPTS = 2
_SUB_PENDING_MSGS = 1024 * 1024
"""A subscriber may lag this many messages behind before NATS drops messages for it (slow consumer)."""


class _NatsDelivery:
    __slots__ = ("_done", "_raw", "msg", "num_delivered", "subject")

    def __init__(self, raw: Msg, msg: Message) -> None:
        self._raw = raw
        self._done = False
        self.subject = raw.subject
        self.msg = msg
        self.num_delivered = raw.metadata.num_delivered

    async def ack(self) -> None:
        if not self._done:
            self._done = True
            await self._raw.ack()

    async def nak(self, delay: float = 0.0) -> None:
        if not self._done:
            self._done = True
            await self._raw.nak(delay=delay if delay > 0 else None)


class _CoreSub:
    __slots__ = ("_sub",)

    def __init__(self, sub: NatsSubscription) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


class _Consumer:
    """The fetch loop of one durable pull subscription."""

    def __init__(
        self,
        bus: NatsBus,
        psub: JetStreamContext.PullSubscription,
        durable: str,
        handler: DeliveryHandler,
        ack_wait: float,
    ) -> None:
        self._bus = bus
        self._psub = psub
        self._durable = durable
        self._handler = handler
        self._ack_wait = ack_wait
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"durable:{durable}")

    async def unsubscribe(self) -> None:
        """Stop consuming; what is in flight is redelivered to the next consumer after `ack_wait`."""
        if self._task.done():
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._bus._consumers.discard(self)
        with contextlib.suppress(nats.errors.Error):
            await self._psub.unsubscribe()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                batch = await self._psub.fetch(_FETCH_BATCH, timeout=_FETCH_TIMEOUT)
            except TimeoutError:
                # An empty fetch. nats-py raises asyncio's TimeoutError as well as its own (a subclass) when
                # the deadline passes, and catching only its own let the loop die under load. Python 3.11's
                # `wait_for` may also turn our own cancel (unsubscribe) into a timeout: then stop.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                continue
            except nats.errors.Error as exc:
                _log.warning("bus_fetch_failed", consumer=self._durable, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            fetched = time.monotonic()
            for i, raw in enumerate(batch):
                if time.monotonic() - fetched > self._ack_wait / 2:
                    for waiting in batch[i:]:
                        await waiting.in_progress()
                    fetched = time.monotonic()
                await self._deliver(raw)

    async def _deliver(self, raw: Msg) -> None:
        try:
            msg = decode(raw.data)
        except msgspec.DecodeError:
            self._bus.decode_errors += 1
            _log.error("bus_undecodable", consumer=self._durable, subject=raw.subject, size=len(raw.data))
            await raw.term()
            return
        delivery = _NatsDelivery(raw, msg)
        try:
            await self._handler(delivery)
        except Exception:
            self._bus.handler_errors += 1
            _log.exception("bus_handler_failed", consumer=self._durable, subject=raw.subject)
            await delivery.nak()
        else:
            await delivery.ack()


class NatsBus(Bus):
    """The bus over a NATS server with JetStream."""

    kind = "nats"

    def __init__(
        self,
        url: str,
        streams: tuple[StreamSpec, ...] = DEFAULT_STREAMS,
        *,
        stream_prefix: str = "",
        name: str = "aitrading",
    ) -> None:
        self._url = url
        self._streams = streams
        self._prefix = stream_prefix
        self._name = name
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._consumers: set[_Consumer] = set()
        self._valid_subjects: set[str] = set()
        self.published = 0
        self.handler_errors = 0
        self.decode_errors = 0
        self.dropped = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            return
        try:
            nc = await nats.connect(
                self._url,
                name=self._name,
                allow_reconnect=True,
                max_reconnect_attempts=_CONNECT_ATTEMPTS,
                reconnect_time_wait=1,
                connect_timeout=2,
                drain_timeout=5,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (OSError, nats.errors.Error) as exc:
            raise TemporaryError(f"cannot connect to NATS at {self._url}: {exc!r}") from exc
        # Give up quickly on the first connect (the caller retries start-up), never once connected.
        nc.options["max_reconnect_attempts"] = -1
        self._nc, self._js = nc, nc.jetstream()
        for spec in self._streams:
            await self._ensure_stream(spec)

    async def _ensure_stream(self, spec: StreamSpec) -> None:
        js = self._jetstream()
        config = StreamConfig(
            name=self._prefix + spec.name,
            description=spec.description or None,
            subjects=list(spec.subjects),
            max_msgs=spec.max_msgs,
            max_age=spec.max_age_s,
            storage=StorageType.FILE,
        )
        try:
            try:
                await js.stream_info(config.name or "")
            except nats.js.errors.NotFoundError:
                await js.add_stream(config)
            else:
                await js.update_stream(config)
        except nats.js.errors.APIError as exc:
            # e.g. err_code 10065: another stream on this server already covers these subjects.
            raise OperationalError(f"cannot create or update JetStream stream {config.name}: {exc}") from exc

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.unsubscribe()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except (nats.errors.Error, TimeoutError) as exc:
                _log.warning("bus_drain_failed", error=repr(exc))
                await nc.close()

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def _client(self) -> Client:
        if self._nc is None:
            raise TemporaryError("the NATS bus is not connected")
        return self._nc

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise TemporaryError("the NATS bus is not connected")
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # log the 1st, 2nd, 4th, 8th ... drop
                _log.warning("bus_slow_consumer", subject=exc.subject, dropped=self.dropped)
            return
        _log.warning("bus_nats_error", error=repr(exc))

    async def _on_disconnected(self) -> None:
        if self._nc is not None:  # not our own close()
            _log.warning("bus_disconnected", url=self._url)

    async def _on_reconnected(self) -> None:
        _log.info("bus_reconnected", url=self._url)

    # -- publish / subscribe -----------------------------------------------------------------------------

    def _check_subject(self, subject: str) -> None:
        if subject not in self._valid_subjects:
            validate_subject(subject)
            if len(self._valid_subjects) >= 65536:
                self._valid_subjects.clear()
            self._valid_subjects.add(subject)

    async def publish(self, subject: str, msg: Message) -> None:
        self._check_subject(subject)
        try:
            await self._client().publish(subject, encode(msg))
        except nats.errors.Error as exc:
            raise TemporaryError(f"cannot publish on {subject}: {exc!r}") from exc
        self.published += 1

    async def subscribe(self, pattern: str, handler: Handler, *, queue: str | None = None) -> Subscription:
        validate_pattern(pattern)

        async def on_msg(raw: Msg) -> None:
            try:
                msg = decode(raw.data)
            except msgspec.DecodeError:
                self.decode_errors += 1
                _log.error("bus_undecodable", subject=raw.subject, pattern=pattern, size=len(raw.data))
                return
            try:
                await handler(raw.subject, msg)
            except Exception:
                self.handler_errors += 1
                _log.exception("bus_handler_failed", subject=raw.subject, pattern=pattern)

        return await self._core_subscribe(pattern, on_msg, queue)

    async def _core_subscribe(
        self, pattern: str, cb: Callable[[Msg], Awaitable[None]], queue: str | None
    ) -> Subscription:
        nc = self._client()
        sub = await nc.subscribe(pattern, queue=queue or "", cb=cb, pending_msgs_limit=_SUB_PENDING_MSGS)
        await nc.flush()  # the server knows the interest before we return, so no message slips past
        return _CoreSub(sub)

    # -- request / reply -----------------------------------------------------------------------------------

    async def request(self, subject: str, msg: Message, *, timeout: float = 2.0) -> Message:
        self._check_subject(subject)
        try:
            raw = await self._client().request(subject, encode(msg), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise TemporaryError(f"no responder for {subject}") from None
        except nats.errors.TimeoutError:
            raise TemporaryError(f"request on {subject} timed out after {timeout}s") from None
        except nats.errors.Error as exc:
            raise TemporaryError(f"request on {subject} failed: {exc!r}") from exc
        if raw.headers and _ERROR_HEADER in raw.headers:
            raise TemporaryError(f"responder on {subject} failed: {raw.headers[_ERROR_HEADER]}")
        try:
            return decode(raw.data)
        except msgspec.DecodeError as exc:
            self.decode_errors += 1
            raise TemporaryError(f"undecodable reply on {subject}: {exc}") from exc

    async def serve(self, subject: str, handler: ReplyHandler, *, queue: str | None = None) -> Subscription:
        validate_pattern(subject)

        async def on_request(raw: Msg) -> None:
            headers: dict[str, str] | None = None
            try:
                payload = encode(await handler(decode(raw.data)))
            except Exception as exc:
                if isinstance(exc, msgspec.DecodeError):
                    self.decode_errors += 1
                else:
                    self.handler_errors += 1
                _log.exception("bus_handler_failed", subject=raw.subject, pattern=subject)
                # Tell the caller at once instead of letting it wait for its timeout.
                payload, headers = b"", {_ERROR_HEADER: type(exc).__name__}
            if raw.reply:
                with contextlib.suppress(nats.errors.Error):
                    await self._client().publish(raw.reply, payload, headers=headers)

        return await self._core_subscribe(subject, on_request, queue)

    # -- durable consumption -----------------------------------------------------------------------------

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
        stream = self._prefix + self._stream_for(pattern).name
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=pattern,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
        )
        try:
            psub = await self._jetstream().pull_subscribe(
                pattern, durable=durable, stream=stream, config=config, pending_msgs_limit=_FETCH_BATCH * 4
            )
        except nats.js.errors.APIError as exc:
            raise OperationalError(f"cannot create durable consumer {durable!r} on {stream}: {exc}") from exc
        consumer = _Consumer(self, psub, durable, handler, ack_wait)
        self._consumers.add(consumer)
        return consumer

    def _stream_for(self, pattern: str) -> StreamSpec:
        concrete = pattern.replace("*", "x").replace(">", "x")
        for spec in self._streams:
            if any(subject_matches(subj, concrete) for subj in spec.subjects):
                return spec
        raise ValueError(f"no stream covers {pattern!r}; durable consumers need a configured stream")
