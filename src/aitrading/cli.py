"""The `aitrading` command line."""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from aitrading import __version__
from aitrading import certs as certs_cli
from aitrading.agent import cli as agent_cli
from aitrading.backtest import cli as backtest_cli
from aitrading.common.config import SERVICE_NAMES, PlatformConfig, load_config
from aitrading.common.errors import AITradingError
from aitrading.common.logging import configure_logging
from aitrading.gateway import admin_cli
from aitrading.history import cli as history_cli
from aitrading.ml import cli as ml_cli
from aitrading.storage.audit import cli as audit_cli

app = typer.Typer(
    name="aitrading",
    help="AI trading platform for MetaTrader 5: market data in, risk-checked trades out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks that print figures (never pass/fail).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(history_cli.app, name="import", help="Import history files (ticks, bars) into the tick store.")
app.add_typer(agent_cli.app, name="agent")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(admin_cli.tenants_app, name="tenants")
app.add_typer(admin_cli.users_app, name="users")
app.add_typer(admin_cli.keys_app, name="keys")
app.add_typer(certs_cli.app, name="certs")
app.add_typer(ml_cli.app, name="ml")
app.command("backtest")(backtest_cli.backtest)
console = Console()
err = Console(stderr=True)

__all__ = ["app", "main"]


def _config(log_level: str | None = None, **overrides: object) -> PlatformConfig:
    cfg = load_config(**overrides)
    level = log_level or ("WARNING" if "AITRADING_LOG_LEVEL" not in os.environ else cfg.log_level)
    configure_logging(level, json=cfg.log_json)
    return cfg


def _freeze_startup_objects() -> None:
    """Move what start-up allocated (modules, apps, ML libraries: ~0.5M objects) out of the collector's sight.

    They live as long as the process, yet every full collection walked them all: pauses of up to ~0.2 s of
    the event loop (ticks, orders) measured beside the ML libraries (`aitrading bench decision --gc-freeze`).
    """
    import gc

    gc.collect()
    gc.freeze()


def _ready_banner(cfg: PlatformConfig, started: float, services: list[str], simulate: bool) -> None:
    from aitrading.common.tls import service_url

    gateway, bridge = service_url(cfg, "gateway"), service_url(cfg, "bridge")
    lines = [
        f"[bold green]AI trading platform {__version__} is up[/] in {time.monotonic() - started:.2f} s "
        f"({len(services)} services, mode {cfg.mode})",
        "",
        f"Readiness    {gateway}/health/ready",
        "Status       aitrading status",
        f"Agent WS     {cfg.resolved_agent().bridge_url}",
        f"API docs     {bridge}/docs  (each service serves /docs)",
        f"Metrics      {bridge}/metrics",
    ]
    if cfg.security.tls.enabled:
        lines.append(
            f"TLS          CA {cfg.security.tls.cert_dir / 'ca.crt'}"
            + (", mTLS" if cfg.security.tls.mtls else "")
        )
    if simulate:
        from aitrading.agent.simulated import replayed_symbols

        what = f"replaying {cfg.simulator.replay_file}" if cfg.simulator.replay_file else "synthetic"
        lines.append(f"Simulated MT5 feed {cfg.simulator.feed} ({what}): {', '.join(replayed_symbols(cfg))}")
    lines += ["", "Ctrl-C stops it cleanly."]
    console.print(Panel("\n".join(lines), title="aitrading up", expand=False))


@app.command()
def up(
    split: Annotated[
        bool, typer.Option("--split", help="One process per service on PostgreSQL, Redis, NATS")
    ] = False,
    simulate: Annotated[bool, typer.Option(help="Stream a simulated MT5 terminal through a PC agent")] = True,
    log_level: Annotated[str | None, typer.Option(help="Log level on stderr (default WARNING)")] = None,
) -> None:
    """Run the whole platform: in one process on embedded defaults, or split into processes."""
    started = time.monotonic()
    cfg = _config(log_level)
    if split:
        from aitrading.launcher import run_split

        run_split(cfg, simulate=simulate, on_ready=lambda names: _ready_banner(cfg, started, names, simulate))
        console.print("stopped cleanly")
        return
    from aitrading.common import serving
    from aitrading.kernel import Kernel

    kernel = Kernel(cfg, simulate=simulate)

    def ready(k: Kernel) -> None:
        _freeze_startup_objects()
        _ready_banner(cfg, started, k.service_names, k.simulate)

    serving.run(kernel.run_until_stopped(ready), cfg.services.event_loop)
    console.print("stopped cleanly")


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICE_NAMES)}")],
    split: Annotated[bool, typer.Option(help="Other services run in other processes")] = False,
    migrate: Annotated[bool, typer.Option(help="Run database migrations at start")] = True,
    log_level: Annotated[str | None, typer.Option(help="Log level on stderr")] = None,
) -> None:
    """Run one service on its port."""
    from aitrading.common import serving
    from aitrading.kernel import Kernel

    cfg = _config(log_level or "INFO")
    owns_ticks = not (split and cfg.storage.ticks == "chdb" and service != "bridge")
    kernel = Kernel(cfg, [service], simulate=False, migrate=migrate, owns_ticks=owns_ticks)
    serving.run(kernel.run_until_stopped(lambda _: _freeze_startup_objects()), cfg.services.event_loop)


@app.command()
def status(
    gateway: Annotated[str | None, typer.Option(help="Gateway base URL")] = None,
    bridge: Annotated[str | None, typer.Option(help="Data bridge base URL")] = None,
) -> None:
    """Show services, readiness, tick rates and last prices."""
    from aitrading.status import collect_status

    cfg = load_config()
    st = collect_status(gateway or cfg.services.url("gateway"), bridge or cfg.services.url("bridge"))
    if not st.services:
        err.print(f"[red]error:[/] {st.error}")
        raise typer.Exit(1)
    table = Table(title="Services")
    for col in ("service", "ready", "state", "checks"):
        table.add_column(col)
    for name, s in sorted(st.services.items()):
        checks = ", ".join(f"{k}={v}" for k, v in s.get("checks", {}).items()) or s.get("error", "")
        table.add_row(name, "[green]yes[/]" if s.get("ready") else "[red]no[/]", s.get("state", "?"), checks)
    console.print(table)
    prices = Table(title=f"Market data ({st.agent_connections:.0f} agent connection(s))")
    for col in ("feed", "symbol", "bid", "ask"):
        prices.add_column(col)
    for (feed, symbol), p in sorted(st.last_prices.items()):
        prices.add_row(feed, symbol, f"{p.get('bid', 0):.5f}", f"{p.get('ask', 0):.5f}")
    console.print(prices)
    for feed, rate in st.tick_rates.items():
        console.print(f"feed {feed}: {rate:,.1f} ticks/s, {st.ticks_total.get(feed, 0):,.0f} ticks accepted")
    if st.rejected:
        console.print("rejected: " + ", ".join(f"{k}={v:.0f}" for k, v in st.rejected.items()))
    if st.error:
        err.print(f"[yellow]warning:[/] {st.error}")
    if not st.gateway_ok:
        raise typer.Exit(1)


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="Who the token is for")] = "cli",
    tenant: Annotated[str | None, typer.Option(help="Tenant the caller acts for")] = None,
    role: Annotated[list[str] | None, typer.Option(help="Role (repeatable)")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds (at most a day)")] = 3600,
) -> None:
    """Print a signed service token for calling the platform's APIs (`Authorization: Bearer ...`)."""
    from aitrading.common.auth import TokenService

    cfg = load_config()
    tokens = TokenService(cfg.security.service_token_secret.get_secret_value())
    typer.echo(tokens.issue(subject, tenant=tenant, roles=role or (), ttl_s=ttl))


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"aitrading {__version__}")


@bench_app.command("bus")
def bench_bus(
    n: Annotated[int, typer.Option(help="Messages per bus")] = 1_000_000,
    nats: Annotated[bool, typer.Option(help="Also measure the NATS bus")] = True,
) -> None:
    """Messages/s through the in-process and NATS buses."""
    _bench("bench_bus").main(["--n", str(n), "--kinds", "memory,nats" if nats else "memory"])


@bench_app.command("ingest")
def bench_ingest(
    n: Annotated[int, typer.Option("--ticks", help="Ticks per measurement")] = 1_000_000,
) -> None:
    """Ticks/s and latency from agent through the bridge into store and bus."""
    _bench("bench_ingest").main(n=n)


@bench_app.command("engine")
def bench_engine(orders: Annotated[int, typer.Option(help="How many orders")] = 2000) -> None:
    """Risk check + order placement latency (p50/p99) and orders/s of the trading engine."""
    _bench("bench_engine").main(orders=orders)


@bench_app.command("startup")
def bench_startup(runs: Annotated[int, typer.Option(help="How many launches")] = 3) -> None:
    """Seconds from `aitrading up` launch to a ready gateway."""
    _bench("bench_startup").main(runs=runs)


@bench_app.command("backtest")
def bench_backtest(
    bars: Annotated[int, typer.Option(help="Bars for the SMA cross")] = 100_000,
    ticks: Annotated[int, typer.Option(help="Real ticks for the EMA 50/200 (files looped)")] = 500_000,
    peers: Annotated[bool, typer.Option(help="Also measure backtesting.py and NautilusTrader")] = True,
    split: Annotated[
        bool, typer.Option(help="Also split our CPU µs per event: driver+strategy+decision, quotes, orders")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the figures as JSON")] = False,
) -> None:
    """Bars/s and ticks/s of the backtester beside backtesting.py and NautilusTrader; decision latency."""
    _bench("bench_backtest").main(bars=bars, ticks=ticks, peers=peers, split=split, json_out=json_out)


@bench_app.command("decision")
def bench_decision(
    bars: Annotated[int, typer.Option(help="Measured bars per run")] = 3000,
    train_bars: Annotated[int, typer.Option(help="Bars the models are trained on")] = 2000,
    load: Annotated[int, typer.Option(help="Busy-loop processes beside the loaded runs")] = 2,
    gap_ms: Annotated[float, typer.Option(help="Idle milliseconds between bars in live mode")] = 1.0,
    lstm: Annotated[bool, typer.Option(help="Also the LSTM (needs the lstm extra)")] = True,
    lstm_epochs: Annotated[int, typer.Option(help="LSTM training epochs")] = 5,
    realtime: Annotated[bool, typer.Option(help="Also measure at SCHED_FIFO priority (root)")] = True,
    synthetic: Annotated[bool, typer.Option(help="Synthetic bars even if the real ones exist")] = False,
    gc_freeze: Annotated[bool, typer.Option(help="gc.freeze() after loading the models")] = False,
) -> None:
    """Decision latency per bar (features + inference + ensemble) of LightGBM, XGBoost and the LSTM."""
    _bench("bench_decision").main(
        bars=bars,
        train_bars=train_bars,
        load=load,
        gap_ms=gap_ms,
        lstm=lstm,
        lstm_epochs=lstm_epochs,
        realtime=realtime,
        synthetic=synthetic,
        gc_freeze=gc_freeze,
    )


@bench_app.command("gateway")
def bench_gateway(
    requests: Annotated[int, typer.Option(help="Measured requests per target and round")] = 20_000,
    connections: Annotated[str, typer.Option(help="Concurrent keep-alive connections, per level")] = "1,16",
    rounds: Annotated[int, typer.Option(help="Alternating rounds per target")] = 2,
    split: Annotated[bool, typer.Option(help="Also measure a gateway calling it over HTTP")] = False,
    warmup: Annotated[int, typer.Option(help="Unmeasured requests before each measurement")] = 2_000,
    server_loop: Annotated[str, typer.Option(help="Server event loop: uvloop or asyncio")] = "uvloop",
    json_out: Annotated[bool, typer.Option("--json", help="Print the figures as JSON")] = False,
) -> None:
    """Requests/s, CPU per request and p50/p99 of a proxied GET through the gateway next to the upstream."""
    _bench("bench_gateway").main(
        ["--requests", str(requests), "--connections", connections, "--rounds", str(rounds)]
        + ["--warmup", str(warmup), "--server-loop", server_loop]
        + (["--split"] if split else [])
        + (["--json"] if json_out else [])
    )


def _bench(name: str) -> Any:
    root = Path(__file__).resolve().parents[2]
    if not (root / "bench" / f"{name}.py").is_file():
        raise AITradingError("benchmarks ship with the source tree (bench/); run them from a checkout")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(f"bench.{name}")


def main() -> None:
    """Entry point: one clear line and a non-zero exit for every expected error."""
    try:
        app()
    except AITradingError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
