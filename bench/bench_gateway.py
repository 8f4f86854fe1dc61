"""Gateway benchmark: an authenticated, rate-limited, proxied GET next to the same upstream called directly.

Run: `aitrading bench gateway [--requests 20000] [--connections 1,16] [--rounds 2] [--split]`
or `.venv/bin/python -m bench.bench_gateway ...`.

One server process serves, with uvicorn on loopback, a small upstream service (an authenticated
`GET /api/v1/quote`) on one port and the gateway on another, the gateway calling that same upstream app in
process, as `aitrading up` (all-in-one) does. With `--split` a second gateway calls the upstream over HTTP
instead, as split mode does. A separate load-generator process (asyncio over raw keep-alive sockets, uvloop
when present, so the client costs little CPU) sends closed-loop requests over `--connections` connections
and records each latency: one connection shows the latency the gateway adds, sixteen its throughput.
Targets alternate over `--rounds` rounds in the same run; the table shows every
target's throughput and latency percentiles over all its rounds, and the gateway's overhead: the difference
of its p50 and p99 to the direct call's, and the throughput ratio. Through the gateway each request is
authenticated (HS256 bearer token), counted against two rate limits (principal and tenant, sliding-window
counter in memory), checked against the route table, given a cached service token, and proxied.

Figures only: nothing passes or fails on time. Two cores are shared by server and load generator. Both
processes run on uvloop, the server with uvicorn's httptools parser, as `aitrading up` and `serve` do
(`services.event_loop=auto`); `--server-loop asyncio` serves on asyncio's default loop instead. In split
mode the gateway calls over HTTP with its own pooled keep-alive client (`gateway.httpclient`).

Beside the wall-clock figures, the table shows the server process's CPU time per request (from /proc, warm-up
included) and what one core would serve at that cost: the figure that does not depend on what else the
machine is doing, since a busy neighbour lowers req/s but not the CPU a request needs.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

from rich.console import Console
from rich.table import Table

SECRET = "bench-gateway-secret-of-enough-length-0123456789"
ROOT = Path(__file__).resolve().parents[1]
PATHS = {"direct": "/api/v1/quote?symbol=EURUSD"}
GATEWAY_PATH = "/api/v1/bench/quote?symbol=EURUSD"


# --------------------------------------------------------------------------- server process


def _upstream_service(tokens: Any) -> Any:
    from fastapi import APIRouter, Depends

    from aitrading.common.auth import Principal, principal_dependency
    from aitrading.common.service import Service

    router = APIRouter(prefix="/api/v1")
    caller = Annotated[Principal, Depends(principal_dependency(tokens))]

    @router.get("/quote")
    async def quote(principal: caller, symbol: str = "EURUSD") -> dict[str, Any]:
        return {"symbol": symbol, "bid": "1.08500", "ask": "1.08512", "tenant": principal.tenant}

    class BenchUpstream(Service):
        name = "bench"

    service = BenchUpstream()
    service.add_router(router)
    return service


async def _serve(ports_file: Path, split: bool) -> None:
    from aitrading.common.auth import TokenService, principal_dependency
    from aitrading.common.serving import HttpServers
    from aitrading.gateway.config import GatewayConfig, RateLimitConfig, TierLimits
    from aitrading.gateway.service import GatewayService

    tokens = TokenService(SECRET)
    upstream = _upstream_service(tokens)
    config = GatewayConfig(
        rate_limit=RateLimitConfig(
            tiers={"bench": TierLimits(per_principal="1000000000/minute", per_tenant="1000000000/minute")},
            default_tier="bench",
        )
    )
    servers = HttpServers()
    servers.add("direct", lambda: upstream.app, "127.0.0.1", 0)
    gateways = {
        "gateway": GatewayService(
            {"bench": "http://unused.invalid"},
            in_process={"bench": upstream.app},
            tokens=tokens,
            authenticate=principal_dependency(tokens),
            config=config,
        )
    }
    servers.add("gateway", lambda: gateways["gateway"].app, "127.0.0.1", 0)
    if split:
        servers.add("gateway-http", lambda: gateways["gateway-http"].app, "127.0.0.1", 0)
        direct_url = f"http://127.0.0.1:{servers.port('direct')}"
        gateways["gateway-http"] = GatewayService(
            {"bench": direct_url},
            tokens=tokens,
            authenticate=principal_dependency(tokens),
            config=config,
        )
    await upstream.start()
    for gateway in gateways.values():
        await gateway.start()
    await servers.start()
    names = ["direct", "gateway"] + (["gateway-http"] if split else [])
    ports = json.dumps({name: servers.port(name) for name in names})
    await asyncio.to_thread(ports_file.write_text, ports)
    try:
        await asyncio.Event().wait()  # until the parent terminates this process
    finally:
        await servers.stop()
        for gateway in gateways.values():
            await gateway.stop()
        await upstream.stop()


# --------------------------------------------------------------------------- load generator process


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending the same GET again as soon as the answer is complete."""

    def __init__(self, request: bytes, latencies: list[int], state: dict[str, Any]) -> None:
        self.request = request
        self.latencies = latencies
        self.state = state
        self.buffer = b""
        self.sent_at = 0
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass
        self._send()

    def _send(self) -> None:
        if self.state["left"] <= 0:
            assert self.transport is not None
            self.transport.close()
            return
        self.state["left"] -= 1
        self.sent_at = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            status = int(head[9:12])
            start = head.find(b"content-length:")
            if start < 0:
                self.state["errors"] = self.state.get("errors", 0) + 1
                self.state["bad_framing"] = True
                assert self.transport is not None
                self.transport.close()
                return
            length = int(head[start + 15 : head.find(b"\r\n", start) if b"\r\n" in head[start:] else None])
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            if self.state["recording"]:
                self.latencies.append(time.perf_counter_ns() - self.sent_at)
            if status != 200:
                self.state["errors"] = self.state.get("errors", 0) + 1
                self.state.setdefault("statuses", {}).setdefault(str(status), 0)
                self.state["statuses"][str(status)] += 1
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(
    port: int, path: str, token: str, requests: int, connections: int, warmup: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    latencies: list[int] = []
    state: dict[str, Any] = {"left": warmup, "recording": False, "errors": 0}
    conns = [_Conn(request, latencies, state) for _ in range(connections)]
    for conn in conns:
        await loop.create_connection(lambda c=conn: c, "127.0.0.1", port)  # type: ignore[misc]
    await asyncio.gather(*(c.done for c in conns))
    state.update(left=requests, recording=True, errors=0)
    conns = [_Conn(request, latencies, state) for _ in range(connections)]
    started = time.perf_counter()
    for conn in conns:
        await loop.create_connection(lambda c=conn: c, "127.0.0.1", port)  # type: ignore[misc]
    await asyncio.gather(*(c.done for c in conns))
    seconds = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p * n))] / 1e6 if n else float("nan")

    return {
        "n": n,
        "seconds": seconds,
        "rps": n / seconds if seconds else 0.0,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] / 1e6 if n else float("nan"),
        "errors": state["errors"],
        "statuses": state.get("statuses", {}),
        "latencies_ns": latencies,
    }


def _loadgen_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        _load(args.port, args.path, args.token, args.requests, int(args.connections), args.warmup)
    )
    json.dump(result, sys.stdout)


# --------------------------------------------------------------------------- orchestration


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process `pid` has used so far, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spawn(*args: str, output: bool = True) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "bench.bench_gateway", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if output else subprocess.DEVNULL,
        text=True,
    )


def run(
    requests: int = 20_000,
    connections: int = 16,
    rounds: int = 2,
    split: bool = False,
    warmup: int = 2_000,
    server_loop: str = "uvloop",
) -> dict[str, dict[str, Any]]:
    """Start the servers, measure each target `rounds` times (alternating) and return the figures."""
    import tempfile

    from aitrading.common.auth import TokenService

    token = TokenService(SECRET).issue(
        "user:bench", tenant="bench-tenant", roles=["analyst"], tier="bench", ttl_s=3600
    )
    with tempfile.TemporaryDirectory() as tmp:
        ports_file = Path(tmp) / "ports.json"
        server = _spawn(
            "--serve",
            "--ports-file",
            str(ports_file),
            "--server-loop",
            server_loop,
            *(["--split"] if split else []),
            output=False,
        )
        try:
            deadline = time.monotonic() + 60
            while not ports_file.exists() or not ports_file.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the benchmark server did not start")
                time.sleep(0.05)
            time.sleep(0.2)
            ports: dict[str, int] = json.loads(ports_file.read_text())
            samples: dict[str, list[dict[str, Any]]] = {name: [] for name in ports}
            for _ in range(rounds):
                for name, port in ports.items():
                    cpu_before = _cpu_seconds(server.pid)
                    gen = _spawn(
                        "--loadgen",
                        "--port",
                        str(port),
                        "--path",
                        PATHS.get(name, GATEWAY_PATH),
                        "--token",
                        token,
                        "--requests",
                        str(requests),
                        "--connections",
                        str(connections),
                        "--warmup",
                        str(warmup),
                    )
                    out, _ = gen.communicate(timeout=300)
                    if gen.returncode != 0:
                        raise RuntimeError(f"load generator failed against {name}")
                    cpu_after = _cpu_seconds(server.pid)
                    sample = json.loads(out)
                    if cpu_before is not None and cpu_after is not None:
                        # The server's CPU per request (warm-up included): its cost whatever else runs.
                        sample["cpu_us"] = (cpu_after - cpu_before) / (requests + warmup) * 1e6
                    samples[name].append(sample)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {name: _merge(runs) for name, runs in samples.items()}


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies: list[int] = sorted(x for r in runs for x in r["latencies_ns"])
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p * n))] / 1e6

    cpu = [r["cpu_us"] for r in runs if "cpu_us" in r]
    return {
        "n": n,
        "cpu_us": sum(cpu) / len(cpu) if cpu else None,
        "rps": sum(r["n"] for r in runs) / sum(r["seconds"] for r in runs),
        "rps_rounds": [round(r["rps"]) for r in runs],
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] / 1e6,
        "errors": sum(r["errors"] for r in runs),
    }


def _table(results: dict[str, dict[str, Any]], connections: int) -> Table:
    title = f"Gateway vs direct: authenticated GET over loopback, {connections} connection(s)"
    table = Table(title=title)
    columns = ("target", "requests", "req/s", "CPU µs/req", "req/s per core", "p50 ms", "p90 ms", "p99 ms")
    for col in (*columns, "max ms", "errors"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for name, r in results.items():
        cpu = r.get("cpu_us")
        table.add_row(
            name,
            f"{r['n']:,}",
            f"{r['rps']:,.0f}",
            f"{cpu:.0f}" if cpu else "-",
            f"{1e6 / cpu:,.0f}" if cpu else "-",
            f"{r['p50_ms']:.3f}",
            f"{r['p90_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['max_ms']:.2f}",
            str(r["errors"]),
        )
    direct = results["direct"]
    lines = []
    for name in [n for n in results if n != "direct"]:
        r = results[name]
        lines.append(
            f"{name}: overhead p50 {r['p50_ms'] - direct['p50_ms']:+.3f} ms, "
            f"p99 {r['p99_ms'] - direct['p99_ms']:+.3f} ms; throughput {r['rps'] / direct['rps']:.2f}× direct"
        )
    table.caption = "\n".join(lines)
    return table


def main(argv: list[str] | None = None, **kwargs: Any) -> dict[str, dict[str, Any]] | None:
    """Run the benchmark (or, with --serve / --loadgen, one of its processes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=kwargs.get("requests", 20_000))
    parser.add_argument(
        "--connections", default=str(kwargs.get("connections", "1,16")), help="Comma-separated levels"
    )
    parser.add_argument("--rounds", type=int, default=kwargs.get("rounds", 2))
    parser.add_argument("--warmup", type=int, default=kwargs.get("warmup", 2_000))
    parser.add_argument("--split", action="store_true", default=kwargs.get("split", False))
    parser.add_argument(
        "--server-loop",
        choices=["uvloop", "asyncio"],
        default=kwargs.get("server_loop", "uvloop"),
        help="Event loop of the server process (the load generator always runs on uvloop)",
    )
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ports-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.serve:
        if args.server_loop == "uvloop":
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
        asyncio.run(_serve(args.ports_file, args.split))
        return None
    if args.loadgen:
        _loadgen_main(args)
        return None
    levels = [int(c) for c in str(args.connections).split(",") if c.strip()]
    console = Console()
    if not console.is_terminal:
        console.width = 140  # a log or pipe: room for every column instead of rich's default 80
    results: dict[str, dict[str, Any]] = {}
    for level in levels:
        figures = run(args.requests, level, args.rounds, args.split, args.warmup, args.server_loop)
        results.update({f"{name}@{level}": r for name, r in figures.items()})
        if not args.json:
            console.print(_table(figures, level))
    if args.json:
        print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
