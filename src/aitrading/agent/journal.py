"""The agent's order journal: every trade command it was given and how far it got, durable in SQLite.

One row per client order id, moving only forward:

    received ──▶ sending ──▶ done(report) ──▶ acked
        └───────────────────────▲

- `received`: the command is stored; `order_send` has not been called for it.
- `sending`: about to call `order_send` (written, fsync'd, *before* the call). A row found in this state
  after a restart may or may not have reached the trade server: the executor looks for its client order
  id in the terminal before doing anything else with it.
- `done`: the report (what `order_send` answered, or what the terminal's history showed) is stored; from
  now on the command is answered from here, never sent again.
- `acked`: the bridge confirmed the report is on the bus; nothing is left to do.

Durability is the tick buffer's (`DurableBuffer`): WAL with `synchronous=FULL` (an fsync per commit, so a
state survives power loss as well as a process crash) and `locking_mode=EXCLUSIVE` (a second agent process
cannot open the same journal). The journal is its own file beside the buffer because the buffer holds
its file exclusively. Calls are short, synchronous and serialised by a lock; async code goes through
`asyncio.to_thread`.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import structlog

from aitrading.common.bus.codec import encode
from aitrading.common.errors import OperationalError
from aitrading.model.commands import TradeCommand
from aitrading.model.wire import OrderReport

__all__ = ["JournalEntry", "JournalState", "OrderJournal", "journal_path_for"]

_log = structlog.get_logger("agent.journal")
_COMMAND = msgspec.msgpack.Decoder(TradeCommand)
_REPORT = msgspec.msgpack.Decoder(OrderReport)

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    account         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    command         BLOB    NOT NULL,
    report          BLOB,
    received_ns     INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orders_by_state ON orders (state, received_ns);
"""


class JournalState(enum.StrEnum):
    """How far a command got (see the module docstring)."""

    RECEIVED = "received"
    SENDING = "sending"
    DONE = "done"
    ACKED = "acked"


_ORDER = {s: i for i, s in enumerate(JournalState)}


class JournalEntry(NamedTuple):
    """One journalled command."""

    client_order_id: str
    tenant: str
    account: str
    state: JournalState
    command: TradeCommand
    report: OrderReport | None
    received_ns: int
    updated_ns: int


def journal_path_for(buffer_path: Path | str) -> Path | str:
    """Return the journal file that belongs beside the tick buffer at `buffer_path`."""
    if str(buffer_path) == ":memory:":
        return ":memory:"
    path = Path(buffer_path)
    return path.with_name(f"{path.stem}.orders{path.suffix or '.sqlite'}")


class OrderJournal:
    """Trade commands and their reports, crash-safe on disk, one row per client order id."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=0.5)
        try:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(path) != ":memory:" and str(mode).lower() != "wal":
                _log.warning("journal_not_wal", path=str(path), journal_mode=mode)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")  # take the exclusive lock now, not at the first order
            try:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise OperationalError(f"order journal {path} is in use by another agent process") from None
            raise OperationalError(f"cannot open order journal {path}: {exc}") from exc

    # -- writing -----------------------------------------------------------------------------------

    def receive(self, command: TradeCommand, now_ns: int) -> tuple[JournalEntry, bool]:
        """Store `command` as received unless its client order id is known; return the entry and if new."""
        req = command.request
        with self._lock:
            inserted = self._db.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, NULL, ?, ?) ON CONFLICT DO NOTHING",
                (
                    req.client_order_id,
                    req.tenant,
                    req.account,
                    JournalState.RECEIVED.value,
                    encode(command),
                    now_ns,
                    now_ns,
                ),
            ).rowcount
            entry = self._get(req.client_order_id)
        assert entry is not None  # inserted now or before
        return entry, inserted == 1

    def mark_sending(self, client_order_id: str, now_ns: int) -> None:
        """Record that `order_send` is about to be called (durable before the call)."""
        self._advance(client_order_id, JournalState.SENDING, now_ns)

    def mark_done(self, client_order_id: str, report: OrderReport, now_ns: int) -> None:
        """Store the command's report; from now on it is answered from the journal."""
        self._advance(client_order_id, JournalState.DONE, now_ns, report)

    def mark_acked(self, client_order_id: str, now_ns: int) -> bool:
        """Record that the bridge has the report; return False if the command was not waiting for an ack."""
        with self._lock:
            entry = self._get(client_order_id)
            if entry is None or entry.state is not JournalState.DONE:
                return False
            self._db.execute(
                "UPDATE orders SET state = ?, updated_ns = ? WHERE client_order_id = ?",
                (JournalState.ACKED.value, now_ns, client_order_id),
            )
            return True

    def prune(self, before_ns: int) -> int:
        """Forget acknowledged commands last updated before `before_ns`; return how many.

        Dedup does not depend on them any more: a command that opened an order is found again in the
        terminal's history by its client order id, whose time says where to look.
        """
        with self._lock:
            return self._db.execute(
                "DELETE FROM orders WHERE state = ? AND updated_ns < ?", (JournalState.ACKED.value, before_ns)
            ).rowcount

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        with self._lock:
            self._db.close()

    # -- reading -----------------------------------------------------------------------------------

    def get(self, client_order_id: str) -> JournalEntry | None:
        """Return the entry of `client_order_id`, or None."""
        with self._lock:
            return self._get(client_order_id)

    def entries(self, *states: JournalState) -> list[JournalEntry]:
        """Return the entries in any of `states` (all if none given), oldest first."""
        wanted = states or tuple(JournalState)
        marks = ", ".join("?" for _ in wanted)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM orders WHERE state IN ({marks}) ORDER BY received_ns, client_order_id",  # noqa: S608 - placeholders only
                tuple(s.value for s in wanted),
            ).fetchall()
        return [_entry(row) for row in rows]

    def in_flight(self) -> list[JournalEntry]:
        """Return the entries not yet acknowledged (received, sending or done), oldest first."""
        return self.entries(JournalState.RECEIVED, JournalState.SENDING, JournalState.DONE)

    def counts(self) -> dict[JournalState, int]:
        """Return how many entries are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM orders GROUP BY state").fetchall()
        found = {JournalState(s): int(n) for s, n in rows}
        return {s: found.get(s, 0) for s in JournalState}

    # -- internals ---------------------------------------------------------------------------------

    def _advance(
        self, client_order_id: str, state: JournalState, now_ns: int, report: OrderReport | None = None
    ) -> None:
        with self._lock:
            entry = self._get(client_order_id)
            if entry is None:
                raise KeyError(f"client order id {client_order_id!r} is not in the journal")
            if _ORDER[state] <= _ORDER[entry.state]:
                raise ValueError(
                    f"order {client_order_id} cannot go from {entry.state.value} back to {state.value}"
                )
            self._db.execute(
                "UPDATE orders SET state = ?, report = COALESCE(?, report), updated_ns = ? "
                "WHERE client_order_id = ?",
                (state.value, encode(report) if report is not None else None, now_ns, client_order_id),
            )

    def _get(self, client_order_id: str) -> JournalEntry | None:
        row = self._db.execute(
            "SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()
        return None if row is None else _entry(row)


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    cid, tenant, account, state, command, report, received_ns, updated_ns = row
    return JournalEntry(
        client_order_id=str(cid),
        tenant=str(tenant),
        account=str(account),
        state=JournalState(str(state)),
        command=_COMMAND.decode(command),
        report=None if report is None else _REPORT.decode(report),
        received_ns=int(received_ns),
        updated_ns=int(updated_ns),
    )
