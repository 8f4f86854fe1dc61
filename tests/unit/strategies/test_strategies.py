"""The strategy interface, the built-ins, loading by import path and the safe wrapper."""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Sequence
from typing import Any

import pytest

from aitrading.features.vectors import FEATURE_NAMES, FeatureEngine
from aitrading.model.market import Bar, Tick
from aitrading.model.values import price_raw
from aitrading.strategies import (
    FLAT,
    INTERFACE_VERSION,
    LONG,
    SHORT,
    MLProbability,
    OrderIntent,
    SafeStrategy,
    Strategy,
    StrategyConfig,
    load_strategy,
)
from aitrading.strategies.ml import MLConfig, ProbabilityModel


class Ctx:
    def __init__(self) -> None:
        self.t = 0

    def now_ns(self) -> int:
        return self.t

    def position(self, symbol: str) -> int:
        return 0


def bar(close: float, i: int = 0) -> Bar:
    p = price_raw(f"{close:.5f}")
    return Bar(
        feed="F",
        symbol="EURUSD",
        timeframe=16385,
        time=i * 3600,
        open=p,
        high=p,
        low=p,
        close=p,
        tick_volume=1,
    )


def run(strategy: Strategy[Any], closes: Sequence[float]) -> list[tuple[int, int]]:
    ctx = Ctx()
    out = []
    for i, c in enumerate(closes):
        ctx.t = i
        for intent in strategy.on_bar(bar(c, i), ctx) or ():
            out.append((i, intent.target))
    return out


def test_sma_cross_goes_long_on_an_upward_cross_and_short_on_a_downward_one() -> None:
    s = load_strategy("sma_cross", {"fast": "2", "slow": "3"})
    closes = [5, 4, 3, 2, 1, 2, 3, 4, 5, 4, 3, 2, 1]
    got = run(s, closes)
    # fast SMA(2) crosses above SMA(3) at index 5 (1.5 vs 1.67 -> 2.5 vs 2.0) and below at index 10.
    # SMA(2) vs SMA(3): 1.5 < 1.67 at index 5, 2.5 > 2.0 at 6 (long); 4.5 > 4.33 at 9, 3.5 < 4.0 at 10.
    assert got == [(6, LONG), (10, SHORT)]


def test_ema_cross_is_the_ma_cross_with_exponential_averages() -> None:
    s = load_strategy("ema_cross", {"fast": "3", "slow": "6"})
    assert s.config.ma == "ema"
    got = run(s, [10 - i for i in range(10)] + list(range(10)))
    assert [t for _, t in got] == [LONG]


def test_ma_cross_refuses_fast_not_below_slow() -> None:
    with pytest.raises(ValueError, match="fast < slow"):
        load_strategy("sma_cross", {"fast": "20", "slow": "10"})


def test_unknown_parameter_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="fastt"):
        load_strategy("sma_cross", {"fastt": "3"})


def test_rsi_reversion_buys_oversold_and_exits_at_the_middle() -> None:
    s = load_strategy("rsi", {"period": "3"})
    closes = [10, 9, 8, 7, 6, 5, 6, 7, 8, 9]
    got = [t for _, t in run(s, closes)]
    assert got[:2] == [LONG, FLAT]


def test_bollinger_breakout_goes_long_above_the_upper_band() -> None:
    s = load_strategy("bollinger", {"period": "5", "nbdev": "1.5"})
    closes = [1.0, 1.01, 0.99, 1.0, 1.01, 1.0, 1.2, 1.0]
    got = run(s, closes)
    # At 1.01 (index 4) the upper band is ~1.0142: no breakout; 1.2 is above ~1.16; 1.0 is below the middle.
    assert got == [(6, LONG), (7, FLAT)]


def test_tick_hook_uses_the_mid_price() -> None:
    s = load_strategy("sma_cross", {"fast": "2", "slow": "3"})
    ctx = Ctx()
    targets = []
    for i, m in enumerate([5, 4, 3, 2, 1, 2, 3, 4]):
        tick = Tick(feed="F", symbol="EURUSD", time_msc=i, bid=price_raw(m) - 10, ask=price_raw(m) + 10)
        targets += [x.target for x in s.on_tick(tick, ctx) or ()]
    assert targets == [LONG]


# --- loading and the safe wrapper -----------------------------------------------------------------------


class Boom(Strategy[StrategyConfig]):
    name = "boom"

    def on_bar(self, bar: Bar, ctx: Any, **kwargs: Any) -> Any:
        raise RuntimeError("user bug")


class Future(Strategy[StrategyConfig]):
    INTERFACE_VERSION = INTERFACE_VERSION + 1
    name = "future"


class Liar(Strategy[StrategyConfig]):
    name = "liar"

    def on_bar(self, bar: Bar, ctx: Any, **kwargs: Any) -> Any:
        return ["buy!"]


@pytest.fixture
def user_module() -> Any:
    mod = types.ModuleType("user_strats_for_test")
    mod.Boom = Boom  # type: ignore[attr-defined]
    mod.Future = Future  # type: ignore[attr-defined]
    mod.Liar = Liar  # type: ignore[attr-defined]
    mod.NotAStrategy = object  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_user_strategy_loads_by_import_path(user_module: Any) -> None:
    s = load_strategy("user_strats_for_test:Boom", {"symbol": "EURUSD"})
    assert isinstance(s, Boom)
    assert s.config.symbol == "EURUSD"


def test_import_path_to_a_non_strategy_is_refused(user_module: Any) -> None:
    with pytest.raises(ValueError, match="not a Strategy"):
        load_strategy("user_strats_for_test:NotAStrategy")


def test_strategy_for_a_newer_interface_is_refused(user_module: Any) -> None:
    with pytest.raises(ValueError, match="interface version"):
        load_strategy("user_strats_for_test:Future")


def test_unknown_builtin_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="sma_cross"):
        load_strategy("nope")


def test_safe_wrapper_contains_counts_and_disables_after_max_failures(user_module: Any) -> None:
    safe = SafeStrategy(load_strategy("user_strats_for_test:Boom"), max_failures=3)
    ctx = Ctx()
    for i in range(5):
        assert safe.on_bar(bar(1.0, i), ctx) == []
    assert safe.failures == 3  # disabled after the third: its hooks no longer run
    assert not safe.enabled
    assert "RuntimeError: user bug" in safe.last_error
    assert safe.status()["enabled"] is False


def test_safe_wrapper_treats_a_non_intent_answer_as_a_failure(user_module: Any) -> None:
    safe = SafeStrategy(load_strategy("user_strats_for_test:Liar"), max_failures=2)
    assert safe.on_bar(bar(1.0), Ctx()) == []
    assert safe.failures == 1
    assert "not OrderIntent" in safe.last_error


def test_intent_refuses_an_invalid_target_and_confidence() -> None:
    with pytest.raises(ValueError, match="target"):
        OrderIntent(strategy="s", symbol="X", target=2, volume=1, ts_ns=0)
    with pytest.raises(ValueError, match="confidence"):
        OrderIntent(strategy="s", symbol="X", target=1, volume=1, ts_ns=0, confidence=1.5)


# --- ML probability ------------------------------------------------------------------------------------


class MomentumModel:
    """Deterministic: P(up) rises with the last return (a logistic of 2000 × ret_1)."""

    version = "momentum-1"
    feature_names: tuple[str, ...] = ("ret_1", "zscore_20")

    def predict_up(self, features: Sequence[float]) -> float:
        return 1.0 / (1.0 + math.exp(-2000.0 * features[0]))


def test_tiny_model_satisfies_the_probability_model_protocol() -> None:
    assert isinstance(MomentumModel(), ProbabilityModel)


def test_ml_probability_trades_the_models_view_and_records_version_and_features() -> None:
    s = MLProbability(MLConfig(long_above=0.6, short_below=0.4), model=MomentumModel())
    closes = [1.0 + 0.0005 * i for i in range(20)] + [1.0095 - 0.001 * i for i in range(1, 6)]
    ctx = Ctx()
    intents: list[OrderIntent] = []
    for i, c in enumerate(closes):
        intents += list(s.on_bar(bar(c, i), ctx) or ())
    assert [i.target for i in intents] == [LONG, SHORT]
    first = intents[0]
    assert first.model_versions == {"ml_probability": "momentum-1"}
    assert set(first.features) == {"ret_1", "zscore_20", "p_up"}
    assert first.confidence == pytest.approx(abs(2 * first.features["p_up"] - 1))


class TrainedLike(MomentumModel):
    """Asks for the feature service's vectors, as a model trained by `aitrading ml train` does."""

    version = "trained-1"
    feature_names = ("ret_1", "rsi_14", "dist_ema_50")


def test_ml_probability_on_bars_feeds_a_trained_model_the_feature_services_vectors() -> None:
    s = MLProbability(MLConfig(long_above=0.6, short_below=0.4), model=TrainedLike())
    closes = [1.0 + 0.0005 * i for i in range(80)] + [1.0395 - 0.001 * i for i in range(1, 10)]
    reference = FeatureEngine(16385)
    ctx = Ctx()
    intents: list[OrderIntent] = []
    expected: list[dict[str, float]] = []
    for i, c in enumerate(closes):
        b = bar(c, i)
        row = reference.update(b)
        got = list(s.on_bar(b, ctx) or ())
        if got:
            values = dict(zip(FEATURE_NAMES, row or (), strict=True))
            expected.append({n: values[n] for n in TrainedLike.feature_names})
        intents += got
    assert [i.target for i in intents] == [LONG, SHORT]
    for intent, want in zip(intents, expected, strict=True):
        assert {k: v for k, v in intent.features.items() if k != "p_up"} == want


def test_ml_probability_refuses_a_model_wanting_unknown_features() -> None:
    class Odd(MomentumModel):
        feature_names = ("moon_phase",)

    with pytest.raises(ValueError, match="moon_phase"):
        MLProbability(MLConfig(), model=Odd())


def test_ml_probability_loads_its_model_by_import_path() -> None:
    mod = types.ModuleType("user_models_for_test")
    mod.make = MomentumModel  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    try:
        s = load_strategy("ml", {"model": "user_models_for_test:make"})
        assert isinstance(s, MLProbability)
        assert s.model.version == "momentum-1"
    finally:
        del sys.modules[mod.__name__]


def test_ml_probability_without_a_model_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a model"):
        load_strategy("ml")


class _Hooks(Strategy[StrategyConfig]):
    """Answers each hook as told: raise, a non-intent, intents (a generator), or None."""

    name = "hooks"
    answer: Any = None

    def _answer(self, ctx: Any) -> Any:
        answer = type(self).answer
        if isinstance(answer, Exception):
            raise answer
        if answer == "intents":
            return (self.intent("EURUSD", 1, ctx) for _ in range(2))
        return answer

    def on_bar(self, bar: Bar, ctx: Any, **kwargs: Any) -> Any:
        return self._answer(ctx)

    def on_tick(self, tick: Any, ctx: Any, **kwargs: Any) -> Any:
        return self._answer(ctx)

    def on_signal(self, signal: Any, ctx: Any, **kwargs: Any) -> Any:
        return self._answer(ctx)


@pytest.mark.parametrize("answer", [None, "intents", ["buy!"], RuntimeError("bug"), KeyError("k")])
def test_safe_wrapper_hooks_answer_as_its_generic_run_does(answer: Any) -> None:
    """`on_bar`/`on_tick` (inline, they run per event) give what `_run(hook, ...)` gives: the same intents,
    failures, last error and disabling."""
    _Hooks.answer = answer
    tick = Tick(feed="F", symbol="EURUSD", time_msc=1, bid=1, ask=2)
    for hook, event in (("on_bar", bar(1.0)), ("on_tick", tick)):
        fast, generic = (
            SafeStrategy(_Hooks(StrategyConfig()), max_failures=2),
            SafeStrategy(_Hooks(StrategyConfig()), max_failures=2),
        )
        for _ in range(3):
            got = getattr(fast, hook)(event, Ctx())
            want = generic._run(hook, event, Ctx())
            assert got == want
            assert isinstance(got, list)
            assert (fast.failures, fast.last_error, fast.enabled) == (
                generic.failures,
                generic.last_error,
                generic.enabled,
            )
