"""Decision latency benchmark: streaming features + model inference + the decision engine, per bar.

Run: `aitrading bench decision [--bars 3000] [--load 2] [--gap-ms 1] [--no-lstm] [--no-realtime]
[--gc-freeze]` or `.venv/bin/python -m bench.bench_decision` (same options).

What it does:
1. Data: the real EURUSD H1 bars of ../shared/data (backtestingpy_EURUSD_H1_2017-2018.csv, 5,000 bars) when
   present, else a seeded synthetic random walk of H1 bars (the output says which). The models are trained
   on the `--train-bars` bars before the measured ones and decide on the last `--bars` (unseen) bars.
2. Models: LightGBM and XGBoost with the platform's default parameters (200 trees), and the LSTM (window
   16, hidden 32; `--lstm-epochs`) when PyTorch is installed; each is trained by its `aitrading.ml.models`
   classifier, saved in its native format and loaded back through `load_predictor` into a
   `RegisteredModel`, the object the ML service serves (a fresh one per run, so its prediction cache
   starts empty; bar vectors never repeat, so every decision is a cache miss, the live case).
3. One decision = `MLProbability.on_bar` (the `FeatureEngine` update of the bar, the LSTM's rolling
   window, `predict_row`) + `DecisionEngine.on_intents` when the strategy's view changed (the combine,
   the signal published on the in-process bus, the order handed to a no-op submit: the trading engine's
   risk check is `bench engine`'s), timed from the bar handed to the strategy until the engine returns.
   The backtester's figure leaves the signal's publication and the submit out; this one is a superset.
4. Each model runs in two modes, on the machine as it is (load 0: whatever else runs on it) and with
   `--load N` busy-loop processes beside it (each in its own session, as other services are, so the
   kernel's autogroup scheduling treats them as it would):
   - replay: bars back to back, as a backtest drives the strategy;
   - live: the process idles `--gap-ms` between bars, as a live strategy waits for the next bar on the
     bus (its caches go cold and the scheduler must wake it up);
   and at two priorities: normal, and real-time (SCHED_FIFO 1 for the measuring thread only, when the
   process may: root or CAP_SYS_NICE; `--no-realtime` skips it).
   For each: wall p50/p99/max, the p99 of the CPU time the thread itself spent (wall − CPU is time it was
   not running: preempted), how many decisions missed the 1 ms goal of issue #6, the garbage collections
   during the run and the longest of them (µs/generation). `--gc-freeze` calls `gc.freeze()` once the
   models are loaded, as a long-running service can after start-up (the platform does not do it today).

Figures only, nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import numpy.typing as npt

from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.decision.engine import DecisionConfig, DecisionEngine
from aitrading.features.vectors import compute_batch
from aitrading.ml.dataset import Costs, build_dataset
from aitrading.ml.inference import RegisteredModel
from aitrading.ml.lstm import torch_available, windowed
from aitrading.ml.models import default_params, load_predictor, make_classifier, save_model
from aitrading.model.ids import ClientOrderIdGenerator
from aitrading.model.market import Bar, Timeframe
from aitrading.model.values import PRICE_SCALE
from aitrading.strategies.ml import MLConfig, MLProbability

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BARS_FILE = DATA / "backtestingpy_EURUSD_H1_2017-2018.csv"
GOAL_US = 1000.0

__all__ = ["main"]


def synthetic_bars(n: int, seed: int = 3) -> list[Bar]:
    """`n` H1 bars of a seeded random walk around 1.10 (used only when the real file is absent)."""
    rng = np.random.default_rng(seed)
    start = 1_600_000_000 - 1_600_000_000 % 3600
    price, out = 1.10, []
    for i in range(n):
        o = price
        c = o * math.exp(rng.normal(0, 0.0015))
        hi = max(o, c) * (1 + abs(rng.normal(0, 0.0005)))
        lo = min(o, c) * (1 - abs(rng.normal(0, 0.0005)))
        out.append(
            Bar(
                feed="synthetic",
                symbol="EURUSD",
                timeframe=int(Timeframe.H1),
                time=start + 3600 * i,
                open=round(o * PRICE_SCALE),
                high=round(hi * PRICE_SCALE),
                low=round(lo * PRICE_SCALE),
                close=round(c * PRICE_SCALE),
                tick_volume=int(rng.integers(100, 2000)),
                spread=int(rng.integers(5, 20)),
            )
        )
        price = c
    return out


def load_bars(need: int, *, synthetic: bool = False) -> tuple[list[Bar], str]:
    """Return at least `need` bars and where they come from."""
    if synthetic:
        why = "asked for"
    elif not BARS_FILE.is_file():
        why = f"{BARS_FILE.name} absent"
    else:
        from aitrading.ml.data import load_bars_csv

        bars = load_bars_csv(BARS_FILE, symbol="EURUSD", timeframe=Timeframe.H1)
        if len(bars) >= need:
            return bars, f"real: {BARS_FILE.name} ({len(bars):,} EURUSD H1 bars)"
        why = f"{BARS_FILE.name} has {len(bars):,} bars, {need:,} needed"
    return synthetic_bars(need), f"synthetic: seeded random walk of {need:,} H1 bars ({why})"


def train_model(kind: str, bars: Sequence[Bar], params: dict[str, Any], directory: Path) -> RegisteredModel:
    """Train `kind` on `bars`, save its artifact natively and load it back as the ML service does."""
    features = windowed(compute_batch, int(params["window"])) if kind == "lstm" else compute_batch
    data = build_dataset(bars, Timeframe.H1, horizon=1, costs=Costs(point=0.00001), features=features)
    estimator = make_classifier(kind, params).fit(data.x, data.y)
    artifact = save_model(kind, estimator, directory)
    meta = {"ref": f"bench-{kind}@1", "kind": kind, "features": list(data.names), "artifact": artifact.name}
    return RegisteredModel(meta, load_predictor(kind, artifact))


@dataclass(frozen=True, slots=True)
class Run:
    """The figures of one model in one mode."""

    model: str
    mode: str
    load: int
    priority: str
    decisions: int
    p50_us: float
    p99_us: float
    max_us: float
    cpu_p99_us: float
    over_goal: int
    gcs: int
    gc_max_us: float
    gc_max_generation: int


class _Accepted:
    denied = False
    reason = ""


async def _submit(request: Any, actor: str) -> _Accepted:
    return _Accepted()


def _ctx_factory(engine: DecisionEngine, clock: TestClock) -> Any:
    class Ctx:
        def now_ns(self) -> int:
            return clock.now_ns()

        def position(self, symbol: str) -> int:
            return engine.direction(symbol)

    return Ctx()


async def measure(
    loaded: RegisteredModel,
    bars: Sequence[Bar],
    warmup: Sequence[Bar],
    *,
    mode: str,
    gap_s: float,
    load: int,
    label: str,
    realtime: bool = False,
) -> Run:
    """Run `bars` through a fresh strategy, model cache and decision engine; return the figures."""
    model = RegisteredModel(loaded.meta, loaded.predictor)  # an empty prediction cache per run
    clock = TestClock(0)
    bus = MemoryBus(streams=())
    await bus.connect()
    engine = DecisionEngine(
        DecisionConfig(tenant="bench", account="1"),
        bus,
        clock,
        _submit,
        lambda symbol: (),
        ClientOrderIdGenerator(clock),
    )
    strategy = MLProbability(MLConfig(long_above=0.52, short_below=0.48), model=model)
    ctx = _ctx_factory(engine, clock)
    for bar in warmup:  # the features' and the window's warm-up, not measured
        intents = list(strategy.on_bar(bar, ctx) or ())
        if intents:
            await engine.on_intents(intents)
    wall = np.empty(len(bars), dtype=np.int64)
    cpu = np.empty(len(bars), dtype=np.int64)
    pauses = _GCPauses()
    gc.callbacks.append(pauses)
    if realtime:  # this thread only, for the measured loop
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    try:
        await _loop(strategy, engine, ctx, clock, bars, gap_s, wall, cpu)
    finally:
        if realtime:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    gc.callbacks.remove(pauses)
    await bus.close()
    us = wall / 1000.0
    return Run(
        model=label,
        mode=mode,
        load=load,
        priority="realtime" if realtime else "normal",
        decisions=len(bars),
        p50_us=float(np.percentile(us, 50)),
        p99_us=float(np.percentile(us, 99)),
        max_us=float(us.max()),
        cpu_p99_us=float(np.percentile(cpu / 1000.0, 99)),
        over_goal=int((us > GOAL_US).sum()),
        gcs=len(pauses.us),
        gc_max_us=max(pauses.us, default=0.0),
        gc_max_generation=pauses.generations[pauses.us.index(max(pauses.us))] if pauses.us else -1,
    )


async def _loop(
    strategy: MLProbability,
    engine: DecisionEngine,
    ctx: Any,
    clock: TestClock,
    bars: Sequence[Bar],
    gap_s: float,
    wall: npt.NDArray[np.int64],
    cpu: npt.NDArray[np.int64],
) -> None:
    perf, thread = time.perf_counter_ns, time.thread_time_ns
    for i, bar in enumerate(bars):
        if gap_s:
            await asyncio.sleep(gap_s)
        clock.set_ns((bar.time + 3600) * 1_000_000_000)
        c0, t0 = thread(), perf()
        intents = list(strategy.on_bar(bar, ctx) or ())  # as the backtester collects them
        if intents:
            await engine.on_intents(intents)
        wall[i] = perf() - t0
        cpu[i] = thread() - c0


class _GCPauses:
    """A `gc.callbacks` entry that records how long each garbage collection takes."""

    def __init__(self) -> None:
        self.us: list[float] = []
        self.generations: list[int] = []
        self._started = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.us.append((time.perf_counter_ns() - self._started) / 1000.0)
            self.generations.append(info["generation"])


_BUSY_LOOP = """
import os
parent = os.getppid()
while os.getppid() == parent:  # spin; end when the benchmark is gone, even if it was killed
    for _ in range(100_000):
        pass
"""


def start_load(n: int) -> list[subprocess.Popen[bytes]]:
    """Start `n` busy-loop processes, each in its own session; they end with the benchmark."""
    return [subprocess.Popen([sys.executable, "-c", _BUSY_LOOP], start_new_session=True) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=10)


def can_realtime() -> bool:
    """Tell whether this process may give itself a real-time priority (root or CAP_SYS_NICE)."""
    if not hasattr(os, "SCHED_FIFO"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


def main(
    bars: int = 3000,
    load: int = 2,
    gap_ms: float = 1.0,
    lstm: bool = True,
    lstm_epochs: int = 5,
    synthetic: bool = False,
    train_bars: int = 2000,
    realtime: bool = True,
    gc_freeze: bool = False,
) -> list[Run]:
    """Train the models, measure every model × mode × load × priority, print the table; return the runs."""
    series, source = load_bars(bars + train_bars, synthetic=synthetic)
    train_part, measured = series[-(bars + train_bars) : -bars], series[-bars:]
    warm = train_part[-300:]
    kinds = ["lightgbm", "xgboost"]
    if lstm and torch_available():
        kinds.append("lstm")
    elif lstm:
        print("LSTM skipped: PyTorch is not installed (pip install -e '.[lstm]')")
    priorities = [False]
    if realtime:
        if can_realtime():
            priorities.append(True)
        else:
            print("realtime rows skipped: SCHED_FIFO needs root or CAP_SYS_NICE")
    print(f"decision latency over {len(measured):,} bars per run; data {source}")
    print(
        f"models trained on the {len(train_part):,} bars before them; machine: {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} before the run"
    )
    runs: list[Run] = []
    with TemporaryDirectory() as tmp:
        models = {}
        for kind in kinds:
            params = default_params(kind)
            if kind == "lstm":
                params |= {"epochs": lstm_epochs}
            d = Path(tmp) / kind
            d.mkdir()
            t0 = time.perf_counter()
            models[kind] = train_model(kind, train_part, params, d)
            inputs = len(models[kind].feature_names)
            print(f"  trained {kind} in {time.perf_counter() - t0:.1f} s ({inputs} inputs)")
        if gc_freeze:  # what a service can do once started: move every live object out of the GC's way
            gc.collect()
            gc.freeze()
            print(f"  gc.freeze(): {gc.get_freeze_count():,} objects no longer scanned by collections")
        for level in sorted({0, load}):
            procs = start_load(level)
            try:
                time.sleep(0.3 if level else 0.0)
                for rt in priorities:
                    for kind, model in models.items():
                        for mode, gap in (("replay", 0.0), ("live", gap_ms / 1000.0)):
                            run = measure(
                                model,
                                measured,
                                warm,
                                mode=mode,
                                gap_s=gap,
                                load=level,
                                label=kind,
                                realtime=rt,
                            )
                            runs.append(asyncio.run(run))
            finally:
                stop_load(procs)
        if gc_freeze:
            gc.unfreeze()
    _print(runs, gap_ms)
    return runs


def _print(runs: list[Run], gap_ms: float) -> None:
    print(
        f"{'model':9} {'mode':7} {'load':>4} {'priority':9} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>9} "
        f"{'cpu p99 µs':>10} {'>1ms':>5} {'gc':>3} {'gc max µs/gen':>13}  p99 ≤ 1 ms"
    )
    for r in runs:
        ok = "yes" if r.p99_us <= GOAL_US else "NO"
        longest_gc = f"{r.gc_max_us:.1f}/{max(r.gc_max_generation, 0)}"
        print(
            f"{r.model:9} {r.mode:7} {r.load:>4} {r.priority:9} {r.p50_us:8.1f} {r.p99_us:8.1f} "
            f"{r.max_us:9.1f} {r.cpu_p99_us:10.1f} {r.over_goal:>5} {r.gcs:>3} {longest_gc:>13}  {ok}"
        )
    print(
        f"replay = bars back to back; live = {gap_ms:g} ms idle between bars; load = busy-loop processes "
        "(own sessions) beside the machine's usual load; realtime = SCHED_FIFO 1 for the measuring thread; "
        "cpu = the thread's own CPU time (wall − cpu = time it waited for a CPU); >1ms = decisions over "
        "the goal; gc = garbage collections during the run, the longest of them and its generation"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, default=3000, help="measured bars per run")
    parser.add_argument("--train-bars", type=int, default=2000, help="bars the models are trained on")
    parser.add_argument("--load", type=int, default=2, help="busy-loop processes of the loaded runs")
    parser.add_argument("--gap-ms", type=float, default=1.0, help="idle time between bars in live mode")
    parser.add_argument("--no-lstm", action="store_true")
    parser.add_argument("--no-realtime", action="store_true", help="skip the SCHED_FIFO rows")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after loading the models")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic bars even if real exist")
    args = parser.parse_args()
    main(
        bars=args.bars,
        train_bars=args.train_bars,
        load=args.load,
        gap_ms=args.gap_ms,
        lstm=not args.no_lstm,
        synthetic=args.synthetic,
        realtime=not args.no_realtime,
        gc_freeze=args.gc_freeze,
    )
