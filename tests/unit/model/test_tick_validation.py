from aitrading.model.market import Tick
from aitrading.model.validation import TickValidator, ValidationPolicy
from aitrading.model.values import price_raw

NOW_MS = 1_700_000_000_000


def tick(bid: float = 1.1, ask: float = 1.1001, t: int = NOW_MS - 1000, **kw: object) -> Tick:
    fields: dict[str, object] = {
        "feed": "SIM",
        "symbol": "EURUSD",
        "time_msc": t,
        "bid": price_raw(bid),
        "ask": price_raw(ask),
    }
    fields.update(kw)
    return Tick(**fields)  # type: ignore[arg-type]


def validator(**policy: object) -> TickValidator:
    return TickValidator(lambda: NOW_MS, ValidationPolicy(**policy))  # type: ignore[arg-type]


def test_good_ticks_are_accepted_in_order() -> None:
    ticks = [tick(t=NOW_MS - 3), tick(t=NOW_MS - 2, bid=1.2, ask=1.2001)]
    ok, bad = validator().validate("SIM", ticks)
    assert ok == ticks
    assert not bad


def test_each_rule_rejects_with_its_reason() -> None:
    v = validator(allow_locked=False)
    ticks = [
        tick(bid=0.0),
        tick(bid=-1.0),
        tick(bid=1.2, ask=1.1),
        tick(bid=1.1, ask=1.1),
        tick(t=0),
        tick(t=NOW_MS + 3_600_000),
        tick(symbol=""),
        tick(feed="OTHER"),
        tick(volume=-1),
    ]
    ok, bad = v.validate("SIM", ticks)
    assert ok == []
    assert bad == {
        "non_positive_price": 2,
        "crossed_quote": 1,
        "locked_quote": 1,
        "bad_time": 1,
        "future_time": 1,
        "bad_symbol": 1,
        "feed_mismatch": 1,
        "negative_volume": 1,
    }


def test_exact_repeat_of_previous_tick_is_a_duplicate() -> None:
    v = validator()
    first = tick()
    ok, bad = v.validate("SIM", [first, first])
    assert ok == [first]
    assert bad == {"duplicate": 1}


def test_time_going_backwards_beyond_tolerance_is_rejected_within_it_accepted() -> None:
    v = validator(backwards_tolerance_ms=500)
    a = tick(t=NOW_MS - 1000)
    slightly_back = tick(t=NOW_MS - 1400, bid=1.10001)
    far_back = tick(t=NOW_MS - 5000, bid=1.10002)
    ok, bad = v.validate("SIM", [a, slightly_back, far_back])
    assert ok == [a, slightly_back]
    assert bad == {"time_backwards": 1}


def test_unknown_symbol_is_rejected_when_the_feed_lists_its_symbols() -> None:
    v = TickValidator(lambda: NOW_MS, known_symbols=lambda feed: frozenset({"GBPUSD"}))
    ok, bad = v.validate("SIM", [tick()])
    assert ok == []
    assert bad == {"unknown_symbol": 1}
