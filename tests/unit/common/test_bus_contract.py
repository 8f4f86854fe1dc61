"""One behavioural contract for every bus implementation (in-process and NATS JetStream).

Each test gets a connected bus and its own subject namespace (`<ns>.ord.>` and `<ns>.sig.>` are retained
streams), so NATS tests do not see each other's messages; the NATS streams are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from aitrading.common.bus import Bus, Delivery, Handler, MemoryBus, Message, ReplyHandler, StreamSpec
from aitrading.common.bus.base import DeliveryHandler
from aitrading.common.bus.factory import make_bus
from aitrading.common.bus.nats import NatsBus
from aitrading.common.errors import ConfigError, OperationalError, TemporaryError

ACK_WAIT = 0.5
SRC = str(Path(__file__).resolve().parents[3] / "src")


class ContractPing(Message, frozen=True):
    n: int
    text: str = ""
    price: Decimal = Decimal("0")
    tags: tuple[str, ...] = ()


class ContractPong(Message, frozen=True):
    n: int


def streams_for(ns: str) -> tuple[StreamSpec, ...]:
    return (StreamSpec("ORD", (f"{ns}.ord.>",)), StreamSpec("SIG", (f"{ns}.sig.>",), max_msgs=1000))


@dataclass
class Env:
    bus: Bus
    ns: str
    nats_url: str | None

    def subj(self, *tokens: str) -> str:
        return ".".join((self.ns, *tokens))

    @property
    def url(self) -> str:
        assert self.nats_url is not None, "NATS-only test"
        return self.nats_url

    async def settle(self) -> None:
        """Give an asynchronous bus time to deliver anything it still would."""
        if self.nats_url is not None:
            await asyncio.sleep(0.2)


async def eventually(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


async def delete_streams(url: str, names: list[str]) -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in names:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.integration)])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    ns = f"t{uuid.uuid4().hex[:12]}"
    streams = streams_for(ns)
    url: str | None = None
    bus: Bus
    if request.param == "memory":
        bus = MemoryBus(streams)
    else:
        url = request.getfixturevalue("nats_url")
        bus = NatsBus(url, streams, stream_prefix=f"{ns.upper()}_", name=f"test-{ns}")
    await bus.connect()
    try:
        yield Env(bus, ns, url)
    finally:
        await bus.close()
        if url is not None:
            await delete_streams(url, [f"{ns.upper()}_{s.name}" for s in streams])


def errors(bus: Bus) -> int:
    assert isinstance(bus, (MemoryBus, NatsBus))
    return bus.handler_errors


def n_of(msg: Message) -> int:
    assert isinstance(msg, ContractPing)
    return msg.n


def recorder() -> tuple[list[tuple[str, Message]], Handler]:
    got: list[tuple[str, Message]] = []

    async def handler(subject: str, msg: Message) -> None:
        got.append((subject, msg))

    return got, handler


# -- publish / subscribe -------------------------------------------------------------------------------


async def test_subscriber_receives_messages_typed_and_equal_to_what_was_sent(env: Env) -> None:
    got, handler = recorder()
    await env.bus.subscribe(env.subj("md", "tick", "EURUSD"), handler)
    sent = ContractPing(n=7, text="héllo", price=Decimal("1.08345"), tags=("a", "b"))
    await env.bus.publish(env.subj("md", "tick", "EURUSD"), sent)
    await env.bus.publish(env.subj("md", "tick", "GBPUSD"), ContractPing(n=8))
    await eventually(lambda: len(got) == 1)
    await env.settle()
    assert got == [(env.subj("md", "tick", "EURUSD"), sent)]
    msg = got[0][1]
    assert type(msg) is ContractPing
    assert isinstance(msg, ContractPing)
    assert msg.price == Decimal("1.08345")
    assert msg.tags == ("a", "b")


async def test_star_matches_exactly_one_token(env: Env) -> None:
    got, handler = recorder()
    await env.bus.subscribe(env.subj("md", "tick", "*"), handler)
    await env.bus.publish(env.subj("md", "tick", "EURUSD"), ContractPing(n=1))
    await env.bus.publish(env.subj("md", "tick", "EURUSD", "extra"), ContractPing(n=2))
    await env.bus.publish(env.subj("md", "tick"), ContractPing(n=3))
    await env.bus.publish(env.subj("md", "bar", "EURUSD"), ContractPing(n=4))
    await env.bus.publish(env.subj("md", "tick", "USDJPY"), ContractPing(n=5))
    await eventually(lambda: len(got) == 2)
    await env.settle()
    assert [n_of(m) for _, m in got] == [1, 5]


async def test_greater_than_matches_one_or_more_trailing_tokens(env: Env) -> None:
    got, handler = recorder()
    await env.bus.subscribe(env.subj("md", ">"), handler)
    await env.bus.publish(env.subj("md"), ContractPing(n=1))
    await env.bus.publish(env.subj("md", "tick"), ContractPing(n=2))
    await env.bus.publish(env.subj("md", "bar", "EURUSD", "M1"), ContractPing(n=3))
    await env.bus.publish(env.subj("mdx", "tick"), ContractPing(n=4))
    await eventually(lambda: len(got) == 2)
    await env.settle()
    assert [(s, n_of(m)) for s, m in got] == [
        (env.subj("md", "tick"), 2),
        (env.subj("md", "bar", "EURUSD", "M1"), 3),
    ]


async def test_every_matching_subscription_gets_its_own_copy(env: Env) -> None:
    exact, on_exact = recorder()
    star, on_star = recorder()
    await env.bus.subscribe(env.subj("sig", "acme", "trend"), on_exact)
    await env.bus.subscribe(env.subj("sig", "*", "trend"), on_star)
    await env.bus.publish(env.subj("sig", "acme", "trend"), ContractPing(n=1))
    await eventually(lambda: len(exact) == 1 and len(star) == 1)


async def test_queue_group_members_split_messages_and_plain_subscribers_see_all(env: Env) -> None:
    a, on_a = recorder()
    b, on_b = recorder()
    everyone, on_all = recorder()
    await env.bus.subscribe(env.subj("work", "*"), on_a, queue="workers")
    await env.bus.subscribe(env.subj("work", "*"), on_b, queue="workers")
    await env.bus.subscribe(env.subj("work", "*"), on_all)
    for i in range(100):
        await env.bus.publish(env.subj("work", "job"), ContractPing(n=i))
    await eventually(lambda: len(a) + len(b) == 100 and len(everyone) == 100)
    await env.settle()
    a_ids = {n_of(m) for _, m in a}
    b_ids = {n_of(m) for _, m in b}
    assert a_ids.isdisjoint(b_ids)
    assert a_ids | b_ids == set(range(100))
    assert a_ids, "one queue member got nothing"
    assert b_ids, "one queue member got nothing"


async def test_unsubscribed_handler_gets_nothing_more(env: Env) -> None:
    got, handler = recorder()
    sub = await env.bus.subscribe(env.subj("x"), handler)
    await env.bus.publish(env.subj("x"), ContractPing(n=1))
    await eventually(lambda: len(got) == 1)
    await sub.unsubscribe()
    await sub.unsubscribe()  # idempotent
    await env.bus.publish(env.subj("x"), ContractPing(n=2))
    await env.settle()
    assert len(got) == 1


async def test_one_subscription_handles_one_message_at_a_time_in_publish_order(env: Env) -> None:
    seen: list[int] = []
    running = 0
    most = 0

    async def slow(subject: str, msg: Message) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)
        seen.append(n_of(msg))
        running -= 1

    await env.bus.subscribe(env.subj("seq"), slow)
    for i in range(50):
        await env.bus.publish(env.subj("seq"), ContractPing(n=i))
    await eventually(lambda: len(seen) == 50)
    assert seen == list(range(50))
    assert most == 1


async def test_concurrent_publishers_do_not_run_one_subscription_concurrently(env: Env) -> None:
    seen: list[int] = []
    running = 0
    most = 0

    async def slow(subject: str, msg: Message) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)
        seen.append(n_of(msg))
        running -= 1

    await env.bus.subscribe(env.subj("seq"), slow)

    async def publisher(base: int) -> None:
        for i in range(20):
            await env.bus.publish(env.subj("seq"), ContractPing(n=base + i))

    await asyncio.gather(publisher(0), publisher(100))
    await eventually(lambda: len(seen) == 40)
    assert most == 1
    assert [n for n in seen if n < 100] == list(range(20))
    assert [n for n in seen if n >= 100] == list(range(100, 120))


async def test_handler_publishing_to_its_own_subscription_does_not_deadlock(env: Env) -> None:
    seen: list[int] = []

    async def countdown(subject: str, msg: Message) -> None:
        seen.append(n_of(msg))
        if n_of(msg) > 0:
            await env.bus.publish(subject, ContractPing(n=n_of(msg) - 1))

    await env.bus.subscribe(env.subj("countdown"), countdown)
    await env.bus.publish(env.subj("countdown"), ContractPing(n=3))
    await eventually(lambda: len(seen) == 4)
    assert seen == [3, 2, 1, 0]


async def test_handler_exception_is_counted_and_does_not_stop_later_deliveries(env: Env) -> None:
    seen: list[int] = []

    async def flaky(subject: str, msg: Message) -> None:
        seen.append(n_of(msg))
        if n_of(msg) == 1:
            raise RuntimeError("boom")

    await env.bus.subscribe(env.subj("flaky"), flaky)
    for i in range(3):
        await env.bus.publish(env.subj("flaky"), ContractPing(n=i))
    await eventually(lambda: len(seen) == 3)
    assert seen == [0, 1, 2]
    assert errors(env.bus) == 1


# -- request / reply -----------------------------------------------------------------------------------


async def test_request_gets_the_typed_reply_of_the_responder(env: Env) -> None:
    async def double(msg: Message) -> Message:
        assert isinstance(msg, ContractPing)
        return ContractPong(n=msg.n * 2)

    await env.bus.serve(env.subj("svc", "double"), double)
    reply = await env.bus.request(env.subj("svc", "double"), ContractPing(n=21), timeout=2.0)
    assert reply == ContractPong(n=42)
    assert type(reply) is ContractPong


async def test_request_without_responder_raises_temporary_error(env: Env) -> None:
    with pytest.raises(TemporaryError):
        await env.bus.request(env.subj("svc", "nobody"), ContractPing(n=1), timeout=0.5)


async def test_request_to_a_too_slow_responder_times_out_with_temporary_error(env: Env) -> None:
    async def slow(msg: Message) -> Message:
        await asyncio.sleep(1.0)
        return ContractPong(n=0)

    await env.bus.serve(env.subj("svc", "slow"), slow)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TemporaryError):
        await env.bus.request(env.subj("svc", "slow"), ContractPing(n=1), timeout=0.2)
    assert loop.time() - started < 0.9


async def test_responders_in_a_queue_group_answer_each_request_once(env: Env) -> None:
    calls: list[str] = []

    def responder(name: str) -> ReplyHandler:
        async def answer(msg: Message) -> Message:
            calls.append(name)
            return ContractPong(n=n_of(msg))

        return answer

    await env.bus.serve(env.subj("svc", "q"), responder("a"), queue="svc")
    await env.bus.serve(env.subj("svc", "q"), responder("b"), queue="svc")
    for i in range(10):
        assert await env.bus.request(env.subj("svc", "q"), ContractPing(n=i)) == ContractPong(n=i)
    assert len(calls) == 10


# -- durable consumption --------------------------------------------------------------------------------


@dataclass
class Got:
    subject: str
    msg: Message
    num_delivered: int
    at: float


def delivery_recorder(
    action: Callable[[Delivery], object] | None = None,
) -> tuple[list[Got], DeliveryHandler]:
    got: list[Got] = []

    async def handler(d: Delivery) -> None:
        got.append(Got(d.subject, d.msg, d.num_delivered, asyncio.get_running_loop().time()))
        if action is not None:
            result = action(d)
            if asyncio.iscoroutine(result):
                await result

    return got, handler


async def test_acked_durable_deliveries_are_not_redelivered(env: Env) -> None:
    got, handler = delivery_recorder(lambda d: d.ack())
    sub = await env.bus.consume(env.subj("ord", ">"), "acker", handler, ack_wait=ACK_WAIT)
    for i in range(3):
        await env.bus.publish(env.subj("ord", "cmd", "acme", "acc1"), ContractPing(n=i))
    await eventually(lambda: len(got) == 3)
    await asyncio.sleep(ACK_WAIT * 2)
    assert [(n_of(g.msg), g.num_delivered) for g in got] == [(0, 1), (1, 1), (2, 1)]
    assert got[0].subject == env.subj("ord", "cmd", "acme", "acc1")
    assert got[0].msg == ContractPing(n=0)

    await sub.unsubscribe()
    again, handler2 = delivery_recorder()
    await env.bus.consume(env.subj("ord", ">"), "acker", handler2, ack_wait=ACK_WAIT)
    await asyncio.sleep(ACK_WAIT * 2)
    assert again == []


async def test_handler_returning_without_ack_acks_implicitly(env: Env) -> None:
    got, handler = delivery_recorder()
    await env.bus.consume(env.subj("ord", ">"), "implicit", handler, ack_wait=ACK_WAIT)
    await env.bus.publish(env.subj("ord", "evt", "acme", "acc1"), ContractPing(n=1))
    await eventually(lambda: len(got) == 1)
    await asyncio.sleep(ACK_WAIT * 2.5)
    assert [g.num_delivered for g in got] == [1]


async def test_nak_redelivers_with_num_delivered_2(env: Env) -> None:
    async def nak_first(d: Delivery) -> None:
        if d.num_delivered == 1:
            await d.nak()
        else:
            await d.ack()

    got, handler = delivery_recorder(nak_first)
    await env.bus.consume(env.subj("ord", ">"), "naker", handler, ack_wait=5.0)
    await env.bus.publish(env.subj("ord", "cmd", "acme", "acc1"), ContractPing(n=9))
    await eventually(lambda: len(got) == 2, timeout=3.0)  # well before ack_wait: the nak redelivers
    await env.settle()
    assert [(g.msg, g.num_delivered) for g in got] == [(ContractPing(n=9), 1), (ContractPing(n=9), 2)]


async def test_nak_with_delay_redelivers_after_the_delay(env: Env) -> None:
    async def nak_first(d: Delivery) -> None:
        if d.num_delivered == 1:
            await d.nak(delay=0.4)

    got, handler = delivery_recorder(nak_first)
    await env.bus.consume(env.subj("ord", ">"), "delayed", handler, ack_wait=5.0)
    await env.bus.publish(env.subj("ord", "cmd", "acme", "acc1"), ContractPing(n=1))
    await eventually(lambda: len(got) == 2, timeout=3.0)
    assert got[1].num_delivered == 2
    assert got[1].at - got[0].at >= 0.35


async def test_handler_exception_naks_and_the_message_is_redelivered(env: Env) -> None:
    def fail_first(d: Delivery) -> None:
        if d.num_delivered == 1:
            raise RuntimeError("transient")

    got, handler = delivery_recorder(fail_first)
    await env.bus.consume(env.subj("ord", ">"), "failer", handler, ack_wait=5.0)
    await env.bus.publish(env.subj("ord", "cmd", "acme", "acc1"), ContractPing(n=3))
    await eventually(lambda: len(got) == 2, timeout=3.0)
    await env.settle()
    assert [g.num_delivered for g in got] == [1, 2]
    assert errors(env.bus) == 1


async def test_max_deliver_bounds_redeliveries_of_a_failing_message(env: Env) -> None:
    def always_fail(d: Delivery) -> None:
        raise RuntimeError("poison")

    got, handler = delivery_recorder(always_fail)
    await env.bus.consume(env.subj("ord", ">"), "poison", handler, ack_wait=ACK_WAIT, max_deliver=2)
    await env.bus.publish(env.subj("ord", "cmd", "acme", "acc1"), ContractPing(n=1))
    await eventually(lambda: len(got) == 2)
    await asyncio.sleep(ACK_WAIT * 2)
    assert [g.num_delivered for g in got] == [1, 2]


async def test_consumer_that_dies_without_acking_is_redelivered_to_the_next_consumer_after_ack_wait(
    env: Env,
) -> None:
    never = asyncio.Event()

    async def hang(d: Delivery) -> None:
        await never.wait()

    first, handler1 = delivery_recorder(hang)
    sub = await env.bus.consume(env.subj("ord", ">"), "worker", handler1, ack_wait=ACK_WAIT)
    await env.bus.publish(env.subj("ord", "cmd", "acme", "acc1"), ContractPing(n=5))
    await eventually(lambda: len(first) == 1)
    await sub.unsubscribe()  # dies mid-handler, without ack

    second, handler2 = delivery_recorder()
    await env.bus.consume(env.subj("ord", ">"), "worker", handler2, ack_wait=ACK_WAIT)
    await eventually(lambda: len(second) == 1)
    assert second[0].msg == ContractPing(n=5)
    assert second[0].num_delivered == 2
    assert second[0].at - first[0].at >= ACK_WAIT * 0.8


async def test_messages_published_before_the_durable_consumer_existed_are_delivered_in_order(
    env: Env,
) -> None:
    for i in range(5):
        await env.bus.publish(env.subj("sig", "acme", "trend"), ContractPing(n=i))
    await env.settle()
    got, handler = delivery_recorder()
    await env.bus.consume(env.subj("sig", ">"), "late", handler, ack_wait=ACK_WAIT)
    await eventually(lambda: len(got) == 5)
    assert [n_of(g.msg) for g in got] == [0, 1, 2, 3, 4]


async def test_durable_consumer_gets_only_subjects_matching_its_pattern(env: Env) -> None:
    got, handler = delivery_recorder()
    await env.bus.consume(env.subj("ord", "cmd", "*", "*"), "cmds", handler, ack_wait=ACK_WAIT)
    await env.bus.publish(env.subj("ord", "evt", "acme", "acc1"), ContractPing(n=1))
    await env.bus.publish(env.subj("ord", "cmd", "acme", "acc1"), ContractPing(n=2))
    await env.bus.publish(env.subj("sig", "acme", "trend"), ContractPing(n=3))
    await eventually(lambda: len(got) == 1)
    await env.settle()
    assert [(g.subject, n_of(g.msg)) for g in got] == [(env.subj("ord", "cmd", "acme", "acc1"), 2)]


async def test_two_durable_names_each_get_every_message(env: Env) -> None:
    a, on_a = delivery_recorder()
    b, on_b = delivery_recorder()
    await env.bus.consume(env.subj("ord", ">"), "audit", on_a, ack_wait=ACK_WAIT)
    await env.bus.consume(env.subj("ord", ">"), "risk", on_b, ack_wait=ACK_WAIT)
    for i in range(3):
        await env.bus.publish(env.subj("ord", "evt", "acme", "acc1"), ContractPing(n=i))
    await eventually(lambda: len(a) == 3 and len(b) == 3)


async def test_durable_consumer_on_a_subject_no_stream_covers_is_refused(env: Env) -> None:
    _, handler = delivery_recorder()
    with pytest.raises(ValueError, match="no stream covers"):
        await env.bus.consume(env.subj("md", "tick", ">"), "nope", handler)


# -- validation and lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["", "a..b", "a.*", "a.>", "a b", ".a", "a."])
async def test_publish_to_an_invalid_subject_is_refused(env: Env, subject: str) -> None:
    with pytest.raises(ValueError, match="invalid subject"):
        await env.bus.publish(subject, ContractPing(n=1))
    with pytest.raises(ValueError, match="invalid subject"):
        await env.bus.request(subject, ContractPing(n=1), timeout=0.2)


@pytest.mark.parametrize("pattern", ["a.>.b", "a..b", "", "a.b c", "a.*x"])
async def test_subscribing_to_an_invalid_pattern_is_refused(env: Env, pattern: str) -> None:
    _, handler = recorder()
    with pytest.raises(ValueError, match="invalid pattern"):
        await env.bus.subscribe(pattern, handler)
    _, on_delivery = delivery_recorder()
    with pytest.raises(ValueError, match="invalid pattern"):
        await env.bus.consume(pattern, "bad", on_delivery)


async def test_close_disconnects_and_is_idempotent(env: Env) -> None:
    assert env.bus.is_connected
    await env.bus.close()
    assert not env.bus.is_connected
    await env.bus.close()


# -- NATS only: what the in-process bus cannot meet -------------------------------------------------------


@pytest.fixture
async def nats_env(nats_url: str) -> AsyncIterator[Env]:
    ns = f"t{uuid.uuid4().hex[:12]}"
    bus = NatsBus(nats_url, streams_for(ns), stream_prefix=f"{ns.upper()}_")
    await bus.connect()
    try:
        yield Env(bus, ns, nats_url)
    finally:
        await bus.close()
        await delete_streams(nats_url, [f"{ns.upper()}_ORD", f"{ns.upper()}_SIG"])


async def raw_publish(url: str, subject: str, payload: bytes) -> None:
    import nats

    nc = await nats.connect(url)
    await nc.publish(subject, payload)
    await nc.flush()
    await nc.close()


@pytest.mark.integration
async def test_nats_undecodable_payload_is_counted_and_skipped_by_subscribers(nats_env: Env) -> None:
    bus = nats_env.bus
    assert isinstance(bus, NatsBus)
    got, handler = recorder()
    await bus.subscribe(nats_env.subj("raw"), handler)
    await raw_publish(nats_env.url, nats_env.subj("raw"), b"\xc1 not msgpack")
    await raw_publish(nats_env.url, nats_env.subj("raw"), msgspec.msgpack.encode(["NoSuchType", 1]))
    await bus.publish(nats_env.subj("raw"), ContractPing(n=1))
    await eventually(lambda: len(got) == 1)
    assert bus.decode_errors == 2


@pytest.mark.integration
async def test_nats_undecodable_durable_message_is_terminated_not_redelivered(nats_env: Env) -> None:
    bus = nats_env.bus
    assert isinstance(bus, NatsBus)
    await raw_publish(nats_env.url, nats_env.subj("ord", "cmd", "x", "y"), b"\xc1garbage")
    await bus.publish(nats_env.subj("ord", "cmd", "x", "y"), ContractPing(n=2))
    got, handler = delivery_recorder()
    await bus.consume(nats_env.subj("ord", ">"), "term", handler, ack_wait=ACK_WAIT)
    await eventually(lambda: len(got) == 1)
    await asyncio.sleep(ACK_WAIT * 2.5)
    assert [g.msg for g in got] == [ContractPing(n=2)]
    assert bus.decode_errors == 1


@pytest.mark.integration
async def test_nats_failing_responder_answers_with_temporary_error_at_once(nats_env: Env) -> None:
    async def broken(msg: Message) -> Message:
        raise RuntimeError("bug")

    await nats_env.bus.serve(nats_env.subj("svc", "broken"), broken)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TemporaryError, match="RuntimeError"):
        await nats_env.bus.request(nats_env.subj("svc", "broken"), ContractPing(n=1), timeout=5.0)
    assert loop.time() - started < 2.0
    assert errors(nats_env.bus) == 1


@pytest.mark.integration
async def test_nats_streams_are_created_with_prefix_and_updated_on_reconnect(nats_env: Env) -> None:
    import nats

    prefix = f"{nats_env.ns.upper()}_"
    changed = (StreamSpec("ORD", (f"{nats_env.ns}.ord.>",), max_msgs=77), streams_for(nats_env.ns)[1])
    again = NatsBus(nats_env.url, changed, stream_prefix=prefix)
    await again.connect()
    await again.close()
    nc = await nats.connect(nats_env.url)
    try:
        info = await nc.jetstream().stream_info(f"{prefix}ORD")
        assert info.config.subjects == [f"{nats_env.ns}.ord.>"]
        assert info.config.max_msgs == 77
        sig = await nc.jetstream().stream_info(f"{prefix}SIG")
        assert sig.config.max_msgs == 1000
    finally:
        await nc.close()


@pytest.mark.integration
async def test_nats_stream_whose_subjects_another_stream_owns_is_an_operational_error(nats_env: Env) -> None:
    clash = NatsBus(nats_env.url, streams_for(nats_env.ns), stream_prefix="OTHER_")
    try:
        with pytest.raises(OperationalError, match="cannot create or update"):
            await clash.connect()
    finally:
        await clash.close()


_DYING_CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from decimal import Decimal
    from aitrading.common.bus import StreamSpec
    from aitrading.common.bus.nats import NatsBus
    from aitrading.common.bus import Message

    class ContractPing(Message, frozen=True):  # the same wire type as the test's
        n: int
        text: str = ""
        price: Decimal = Decimal("0")
        tags: tuple[str, ...] = ()

    async def main(url, ns, prefix):
        streams = (StreamSpec("ORD", (f"{ns}.ord.>",)), StreamSpec("SIG", (f"{ns}.sig.>",), max_msgs=1000))
        bus = NatsBus(url, streams, stream_prefix=prefix)
        await bus.connect()

        async def hang(delivery):
            print("got", delivery.num_delivered, flush=True)
            await asyncio.Event().wait()

        await bus.consume(f"{ns}.ord.>", "worker", hang, ack_wait=0.5)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.integration
@pytest.mark.slow
async def test_nats_consumer_process_killed_mid_message_is_redelivered_to_another_process(
    nats_env: Env, tmp_path: Path
) -> None:
    script = tmp_path / "dying_consumer.py"
    script.write_text(_DYING_CONSUMER)
    url = nats_env.url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        url,
        nats_env.ns,
        f"{nats_env.ns.upper()}_",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.stdout is not None
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"ready"
        await nats_env.bus.publish(nats_env.subj("ord", "cmd", "acme", "acc1"), ContractPing(n=11))
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"got 1"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    got, handler = delivery_recorder()
    await nats_env.bus.consume(nats_env.subj("ord", ">"), "worker", handler, ack_wait=ACK_WAIT)
    await eventually(lambda: len(got) == 1)
    assert got[0].msg == ContractPing(n=11)
    assert got[0].num_delivered == 2


# -- factory ---------------------------------------------------------------------------------------------


def test_make_bus_builds_each_kind_unconnected() -> None:
    memory = make_bus("memory")
    assert isinstance(memory, MemoryBus)
    assert memory.kind == "memory"
    nats_bus = make_bus("nats", nats_url="nats://127.0.0.1:1", stream_prefix="X_")
    assert isinstance(nats_bus, NatsBus)
    assert nats_bus.kind == "nats"
    assert not nats_bus.is_connected


def test_make_bus_with_an_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown bus kind 'kafka'"):
        make_bus("kafka")


async def test_nats_bus_connect_to_a_dead_server_is_a_temporary_error() -> None:
    bus = NatsBus("nats://127.0.0.1:1", ())
    with pytest.raises(TemporaryError, match="cannot connect"):
        await bus.connect()
    assert not bus.is_connected
