"""Kill the agent between `order_send` and its report, restart everything: the order exists once.

The platform (`aitrading up --no-simulate`: hub, dbservice, config, bridge and engine on SQLite and the
in-process bus) and the PC agent beside a simulated terminal (`aitrading agent run --terminal sim`) run as
separate processes, as a user runs them. The simulated broker keeps its books in `simulator.state_path`, so
the order the agent sent survives the agent's death like it would at a real trade server.

1. A market order goes in through the engine API; the agent, started with the crash hook, sends it to the
   terminal and dies (exit 137) before it journals the result or reports anything.
2. The platform is stopped too, then both are started again (the agent without the hook).
3. The restarted agent finds the order in the terminal's books by its client order id and reports it
   (`recovered`) instead of sending it again; the engine's resend on the agent's presence is answered
   from the agent's journal.

Then: the broker holds exactly one order, deal and position for the client order id, the engine's order
is FILLED with that deal, its positions equal the terminal's, no reconciliation alert was raised, and the
tenant's audit chain shows the command, the recovered report and the fill, and verifies.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from platform_helpers import metric, platform_env, run_cli, running, url, wait_ready

from aitrading.agent.executor import CRASH_ENV
from aitrading.kernel import DEV_TENANT
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE
from aitrading.mt5.sim.book import Book, load_book

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]

AGENT = ["agent", "run", "--terminal", "sim", "--dev-key", "--snapshot-interval", "0.5"]
TRADING_PATH = '["hub", "dbservice", "config", "bridge", "engine"]'
"""The services an order passes through, in `up`'s one process. Left out: the decision service, whose
strategies could trade the same account and blur "exactly one order", and the services nothing here uses."""
SNAPSHOTS = "aitrading_bridge_account_snapshots_total"
CLIENT_ORDER_ID = "CRASH-RECOVERY-1"
VOLUME = "0.10"
_T = TypeVar("_T")


def wait_for(what: str, probe: Callable[[], _T], done: Callable[[_T], bool], timeout_s: float = 60) -> _T:
    """Poll `probe` until `done` holds for its answer; fail naming `what` and the last answer."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = probe()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if done(answer):
                return answer
            last = answer
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s; last answer: {last!r}")


def dev_tenant_id(data_dir: Path) -> str:
    """The development tenant's id as the bridge names it on the bus (the device's tenant)."""
    with sqlite3.connect(data_dir / "aitrading.sqlite") as db:
        row = db.execute("SELECT id FROM tenants WHERE slug = ?", (DEV_TENANT,)).fetchone()
    assert row is not None, "the platform did not provision the development tenant"
    return str(uuid.UUID(hex=str(row[0])))


def audit_events(data_dir: Path, tenant: str) -> list[tuple[str, str, str]]:
    """(actor, kind, payload) of the tenant's audit chain, in chain order."""
    with sqlite3.connect(data_dir / "aitrading.sqlite") as db:
        rows = db.execute(
            "SELECT actor, kind, payload FROM audit_events WHERE tenant_id = ? ORDER BY seq",
            (uuid.UUID(tenant).hex,),
        ).fetchall()
    return [(str(a), str(k), str(p)) for a, k, p in rows]


def stop(proc: subprocess.Popen[str], what: str) -> str:
    """Stop a process with SIGTERM; require a clean exit; return its stderr."""
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"{what} exited {proc.returncode}: {err[-3000:]}"
    assert "Traceback" not in err, f"{what} logged a traceback: {err[-3000:]}"
    return err


def broker_books(path: Path) -> Book:
    book = load_book(path)
    assert book is not None, f"the simulated broker wrote no state to {path}"
    return book


class Engine:
    """The engine API as the tenant's trader calls it."""

    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=5.0
        )

    def get(self, path: str) -> Any:
        resp = self.http.get(path)
        assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def accounts(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.get("/accounts")
        return answer


def one_online_account(accounts: list[dict[str, Any]]) -> bool:
    """The agent's account is registered (from its snapshot) and online on its feed (from its presence)."""
    return len(accounts) == 1 and accounts[0]["online"] and accounts[0]["feed"] == "SIM"


def place_market_buy(engine: Engine, account: str) -> dict[str, Any]:
    """Place the order once the engine has a quote; an order denied for want of one is retried."""
    body = {"account": account, "symbol": "EURUSD", "type": "BUY", "volume": VOLUME, "deviation": 100}
    attempt = 0

    def place() -> dict[str, Any]:
        nonlocal attempt
        attempt += 1
        coid = CLIENT_ORDER_ID if attempt == 1 else f"{CLIENT_ORDER_ID}-{attempt}"
        resp = engine.http.post("/orders", json={**body, "client_order_id": coid})
        answer: dict[str, Any] = resp.json()
        if resp.status_code == 422 and answer.get("reason") == "no_quote":
            return answer
        assert resp.status_code == 202, f"order not accepted: {resp.status_code} {answer}"
        return answer

    return wait_for("an accepted market order", place, lambda a: bool(a["accepted"]))


def test_agent_killed_after_order_send_then_everything_restarted_leaves_one_order_reconciled_and_audited(
    tmp_path: Path,
) -> None:
    state = tmp_path / "sim-broker.state"
    env = platform_env(
        tmp_path,
        AITRADING_SERVICES__ENABLED=TRADING_PATH,
        AITRADING_SIMULATOR__STATE_PATH=str(state),
        AITRADING_LOG_JSON="false",
    )

    # --- 1. the order is sent and the agent dies before reporting it ---------------------------------
    with running(["up", "--no-simulate"], env, tmp_path) as platform:
        wait_ready(url(env, "engine"), platform)
        tenant = dev_tenant_id(tmp_path)
        issued = run_cli(["token", "--tenant", tenant, "--role", "portfolio_manager"], env, tmp_path)
        assert issued.returncode == 0, issued.stderr
        engine = Engine(url(env, "engine"), issued.stdout.strip())
        with running(AGENT, {**env, CRASH_ENV: "1"}, tmp_path) as agent:
            [registered] = wait_for("the agent's account in the engine", engine.accounts, one_online_account)
            account = registered["account"]
            bridge = url(env, "bridge")
            wait_for(
                "a EURUSD quote through the bridge",
                lambda: metric(bridge, "aitrading_bridge_last_bid", symbol="EURUSD"),
                lambda bid: bid > 0,
            )
            placed = place_market_buy(engine, account)
            coid = placed["order"]["client_order_id"]
            assert placed["order"]["state"] == "REQUEST_ADD", placed
            try:
                agent.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("the agent with the crash hook did not die after order_send")
            _, agent_err = agent.communicate()
            assert agent.returncode == 137, f"agent exited {agent.returncode}: {agent_err[-3000:]}"
        sent = broker_books(state)
        assert [p.comment for p in sent.positions.values()] == [coid], "order_send did not reach the broker"
        unreported = engine.get(f"/orders/{coid}")
        assert unreported["state"] == "REQUEST_ADD", f"the engine heard of the order: {unreported}"
        engine.http.close()
        stop(platform, "the platform")

    # --- 2. both come back; the agent without the hook --------------------------------------------
    with running(["up", "--no-simulate"], env, tmp_path) as platform:
        wait_ready(url(env, "engine"), platform)
        engine = Engine(url(env, "engine"), issued.stdout.strip())
        with running(AGENT, env, tmp_path) as agent:

            def order_now() -> dict[str, Any]:
                if agent.poll() is not None:
                    _, err = agent.communicate()
                    pytest.fail(f"the restarted agent exited {agent.returncode}: {err[-3000:]}")
                answer: dict[str, Any] = engine.get(f"/orders/{coid}")
                return answer

            order = wait_for(
                f"order {coid} FILLED in the engine", order_now, lambda o: o["state"] == "FILLED"
            )
            [online] = wait_for("the account online again", engine.accounts, one_online_account)
            assert online["account"] == account

            # The engine resent the command on the agent's presence: wait until the agent has finished
            # everything it was given, then until two more snapshots reached the engine, so that a
            # second execution would show at the broker and in the engine's books.
            status_url = f"http://127.0.0.1:{env['AITRADING_AGENT__STATUS_PORT']}/status"
            status = wait_for(
                "the agent's journal settled",
                lambda: httpx.get(status_url, timeout=5.0).json(),
                lambda st: st["execution"]["in_flight_total"] == 0,
            )
            execution = status["execution"]
            assert execution["executed"] == 0, f"the restarted agent sent the order again: {execution}"
            assert execution["recovered"] == 1, f"the order was not recovered from the terminal: {execution}"
            assert execution["failed"] == 0, execution
            bridge = url(env, "bridge")
            seen = metric(bridge, SNAPSHOTS)
            wait_for("two more account snapshots", lambda: metric(bridge, SNAPSHOTS), lambda n: n >= seen + 2)
            positions = engine.get(f"/accounts/{account}/positions")
            deals = engine.get(f"/accounts/{account}/deals")
            [money] = engine.accounts()
            stop(agent, "the restarted agent")
        engine.http.close()
        stop(platform, "the restarted platform")

    # --- 3. the broker: one order, one deal, one position for the client order id ------------------
    book = broker_books(state)
    orders_at_broker = [o for o in (*book.history_orders, *book.orders.values()) if o.comment == coid]
    deals_at_broker = [d for d in book.deals if d.comment == coid]
    positions_at_broker = list(book.positions.values())
    assert len(orders_at_broker) == 1, f"the broker holds {len(orders_at_broker)} orders for {coid}"
    assert len(deals_at_broker) == 1, f"the broker holds {len(deals_at_broker)} deals for {coid}"
    assert [p.comment for p in positions_at_broker] == [coid], positions_at_broker
    [deal] = deals_at_broker
    [held] = positions_at_broker
    assert held.volume == int(Decimal(VOLUME) * VOLUME_SCALE)

    # --- the engine: filled once with that deal, positions equal to the terminal's -----------------
    assert order["ticket"] == orders_at_broker[0].ticket
    assert order["deals"] == [deal.ticket]
    assert Decimal(order["volume_filled"]) == Decimal(VOLUME)
    assert [d["ticket"] for d in deals if d["comment"] == coid or d["order"] == order["ticket"]] == [
        deal.ticket
    ]
    assert [
        (p["identifier"], p["symbol"], p["type"], Decimal(p["volume"]), Decimal(p["price_open"]))
        for p in positions
    ] == [
        (
            held.identifier,
            held.symbol,
            held.type.name,
            Decimal(held.volume) / VOLUME_SCALE,
            Decimal(deal.price) / PRICE_SCALE,
        )
    ]

    assert Decimal(money["balance"]) == book.balance, (money, book.balance)

    # --- the audit: what happened, in a chain that verifies ---------------------------------------
    events = audit_events(tmp_path, tenant)
    kinds = [kind for _, kind, _ in events]

    def seqs(kind: str, match: Callable[[dict[str, Any]], bool]) -> list[int]:
        return [seq for seq, (_, k, payload) in enumerate(events) if k == kind and match(json.loads(payload))]

    submitted = seqs("order.submitted", lambda p: p["request"]["client_order_id"] == coid)
    reports = [json.loads(p) for _, k, p in events if k == "order.report" and coid in p]
    reports = [r for r in reports if r["client_order_id"] == coid]
    booked = seqs("deal.booked", lambda p: p["comment"] == coid)
    filled = seqs("order.state", lambda p: p["client_order_id"] == coid and p["state"] == "FILLED")
    assert len(submitted) == 1, f"the command of {coid} is not audited once: {kinds}"
    assert reports, f"no report of {coid} in the audit: {kinds}"
    assert all(r["recovered"] and r["deals"] == [deal.ticket] for r in reports), reports
    assert booked == seqs("deal.booked", lambda p: p["ticket"] == deal.ticket), "the deal is audited twice"
    assert len(booked) == 1, f"the fill of {coid} is not audited once: {kinds}"
    assert len(filled) == 1, f"{coid} is not audited FILLED once: {kinds}"
    assert submitted[0] < booked[0] < filled[0], kinds
    alerts = [p for _, k, p in events if k == "reconcile.alert"]
    assert alerts == [], f"reconciliation raised alerts: {alerts}"
    verified = run_cli(["audit", "verify", "--tenant", DEV_TENANT], env, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{DEV_TENANT}: ok" in verified.stdout
