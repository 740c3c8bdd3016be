"""Orders, fills, positions, the order-event journal and reconcile runs.

The order tracker writes one short transaction per event (or per batch of events): the journal
row first, then the orders, fills and positions it changed, so the materialised tables never
hold an effect whose cause is not in the journal. Decimals are stored as exact text, times as
UTC ISO-8601 text with microseconds (text order is time order).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mqd_cli.store import Store

COMPONENT = "orders"
MIGRATIONS = [
    """
    CREATE TABLE order_sequences (
        strategy TEXT NOT NULL,
        symbol TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (strategy, symbol)
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        broker_id TEXT,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        status TEXT NOT NULL,
        strategy TEXT NOT NULL,
        external INTEGER NOT NULL DEFAULT 0,
        filled_qty TEXT NOT NULL,
        avg_price TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        state TEXT NOT NULL
    );
    CREATE TABLE order_fills (
        fill_id TEXT PRIMARY KEY,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT NOT NULL,
        fee TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        synthetic INTEGER NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE order_events (
        id INTEGER PRIMARY KEY,
        recorded_at TEXT NOT NULL,
        event_time TEXT,
        source TEXT NOT NULL,
        client_order_id TEXT,
        event TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        payload TEXT NOT NULL
    );
    CREATE TABLE positions (
        symbol TEXT PRIMARY KEY,
        qty TEXT NOT NULL,
        avg_price TEXT,
        realized_pnl TEXT NOT NULL,
        state TEXT NOT NULL
    );
    CREATE TABLE trade_outbox (
        trade_id TEXT PRIMARY KEY,
        trade TEXT NOT NULL
    );
    CREATE TABLE reconcile_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        findings TEXT NOT NULL,
        actions TEXT NOT NULL,
        cash TEXT,
        net_traded TEXT,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE order_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]


def ts(value: datetime | None) -> str | None:
    """The stored form of a time: UTC, fixed width."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str)


# -- rows the tracker writes ----------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    event_time: str | None
    source: str
    client_order_id: str | None
    event: str
    outcome: str
    detail: str
    payload: str


@dataclass(frozen=True)
class OrderRow:
    client_order_id: str
    broker_id: str | None
    symbol: str
    side: str
    status: str
    strategy: str
    external: bool
    filled_qty: str
    avg_price: str | None
    created_at: str
    updated_at: str
    state: str


@dataclass(frozen=True)
class FillRow:
    fill_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: str
    price: str
    fee: str
    timestamp: str
    synthetic: bool
    source: str


@dataclass(frozen=True)
class PositionRow:
    symbol: str
    qty: str
    avg_price: str | None
    realized_pnl: str
    state: str


@dataclass
class Changes:
    """Everything one event (or one batch) changes, written in one transaction."""

    events: list[EventRow]
    orders: list[OrderRow]
    fills: list[FillRow]
    positions: list[PositionRow]
    sequences: list[tuple[str, str, int]]
    outbox: list[tuple[str, str]]

    @classmethod
    def empty(cls) -> Changes:
        return cls([], [], [], [], [], [])

    def __bool__(self) -> bool:
        return bool(
            self.events
            or self.orders
            or self.fills
            or self.positions
            or self.sequences
            or self.outbox
        )


def astuple_event(e: EventRow) -> tuple:
    return (e.event_time, e.source, e.client_order_id, e.event, e.outcome, e.detail, e.payload)


def write_changes(store: Store, ch: Changes, recorded_at: str = "") -> int | None:
    """Journal first, then state, in one short transaction. Returns the last journal id.

    ``recorded_at`` (when the batch was journaled) is shared by the batch's events."""
    last_id = None
    with store.write() as cur:
        if ch.events:
            cur.executemany(
                "INSERT INTO order_events (recorded_at, event_time, source, client_order_id,"
                " event, outcome, detail, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(recorded_at, *astuple_event(e)) for e in ch.events],
            )
            last_id = cur.execute("SELECT last_insert_rowid()").fetchone()[0]
        if ch.sequences:
            cur.executemany(
                "INSERT INTO order_sequences (strategy, symbol, last_seq) VALUES (?, ?, ?)"
                " ON CONFLICT(strategy, symbol) DO UPDATE SET"
                " last_seq = max(last_seq, excluded.last_seq)",
                ch.sequences,
            )
        if ch.orders:
            cur.executemany(
                "INSERT INTO orders (client_order_id, broker_id, symbol, side, status, strategy,"
                " external, filled_qty, avg_price, created_at, updated_at, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(client_order_id) DO UPDATE SET broker_id = excluded.broker_id,"
                " status = excluded.status, external = excluded.external,"
                " filled_qty = excluded.filled_qty, avg_price = excluded.avg_price,"
                " updated_at = excluded.updated_at, state = excluded.state",
                [
                    (
                        o.client_order_id,
                        o.broker_id,
                        o.symbol,
                        o.side,
                        o.status,
                        o.strategy,
                        int(o.external),
                        o.filled_qty,
                        o.avg_price,
                        o.created_at,
                        o.updated_at,
                        o.state,
                    )
                    for o in ch.orders
                ],
            )
        if ch.fills:
            cur.executemany(
                "INSERT OR IGNORE INTO order_fills (fill_id, client_order_id, symbol, side, qty,"
                " price, fee, timestamp, synthetic, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.fill_id,
                        f.client_order_id,
                        f.symbol,
                        f.side,
                        f.qty,
                        f.price,
                        f.fee,
                        f.timestamp,
                        int(f.synthetic),
                        f.source,
                    )
                    for f in ch.fills
                ],
            )
        if ch.positions:
            cur.executemany(
                "INSERT INTO positions (symbol, qty, avg_price, realized_pnl, state)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET qty = excluded.qty,"
                " avg_price = excluded.avg_price, realized_pnl = excluded.realized_pnl,"
                " state = excluded.state",
                [(p.symbol, p.qty, p.avg_price, p.realized_pnl, p.state) for p in ch.positions],
            )
        if ch.outbox:
            cur.executemany(
                "INSERT OR IGNORE INTO trade_outbox (trade_id, trade) VALUES (?, ?)", ch.outbox
            )
    return last_id


# -- reading back (restore, readers in other processes) -------------------------------------------


def namespace(store: Store) -> str:
    """A short random tag created once per store: ids never collide with a wiped store's."""
    row = store.query_one("SELECT value FROM order_meta WHERE key = 'namespace'")
    if row:
        return row["value"]
    with store.write() as cur:
        cur.execute(
            "INSERT OR IGNORE INTO order_meta (key, value) VALUES ('namespace', ?)",
            (secrets.token_hex(3),),
        )
        return cur.execute("SELECT value FROM order_meta WHERE key = 'namespace'").fetchone()[0]


def sequences(store: Store) -> dict[tuple[str, str], int]:
    rows = store.query("SELECT strategy, symbol, last_seq FROM order_sequences")
    return {(r["strategy"], r["symbol"]): r["last_seq"] for r in rows}


def order_states(store: Store) -> list[dict[str, Any]]:
    return [json.loads(r["state"]) for r in store.query("SELECT state FROM orders")]


def fill_rows(store: Store) -> list[Any]:
    return store.query("SELECT * FROM order_fills ORDER BY rowid")


def position_states(store: Store) -> list[dict[str, Any]]:
    return [json.loads(r["state"]) for r in store.query("SELECT state FROM positions")]


def outbox(store: Store) -> list[tuple[str, str]]:
    return [(r["trade_id"], r["trade"]) for r in store.query("SELECT * FROM trade_outbox")]


def clear_outbox(store: Store, trade_ids: Iterable[str]) -> None:
    ids = list(trade_ids)
    if ids:
        with store.write() as cur:
            cur.executemany("DELETE FROM trade_outbox WHERE trade_id = ?", [(i,) for i in ids])


def last_event_id(store: Store) -> int:
    row = store.query_one("SELECT max(id) AS m FROM order_events")
    return int(row["m"] or 0) if row else 0


def events(
    store: Store, client_order_id: str | None = None, *, after_id: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """Journal rows (oldest first), optionally of one order and after a journal id."""
    sql = "SELECT * FROM order_events WHERE id > ?"
    params: list[Any] = [after_id]
    if client_order_id is not None:
        sql += " AND client_order_id = ?"
        params.append(client_order_id)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [dict(r) for r in store.query(sql, tuple(params))]


# -- reconcile runs -------------------------------------------------------------------------------


def record_run(
    store: Store,
    *,
    started_at: datetime,
    finished_at: datetime,
    outcome: str,
    findings: Sequence[Any],
    actions: Sequence[Any],
    cash: str | None,
    net_traded: str | None,
    error: str = "",
) -> int:
    with store.write() as cur:
        cur.execute(
            "INSERT INTO reconcile_runs (started_at, finished_at, outcome, findings, actions,"
            " cash, net_traded, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ts(started_at),
                ts(finished_at),
                outcome,
                dumps(list(findings)),
                dumps(list(actions)),
                cash,
                net_traded,
                error,
            ),
        )
        return int(cur.lastrowid)


def runs(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """Recent reconcile runs, newest first, with findings and actions decoded."""
    rows = store.query("SELECT * FROM reconcile_runs ORDER BY id DESC LIMIT ?", (limit,))
    out = []
    for r in rows:
        d = dict(r)
        d["findings"] = json.loads(d["findings"])
        d["actions"] = json.loads(d["actions"])
        out.append(d)
    return out


def last_checked_run(store: Store) -> dict[str, Any] | None:
    """The newest run that reached the broker (its cash is the next run's baseline)."""
    row = store.query_one(
        "SELECT * FROM reconcile_runs WHERE cash IS NOT NULL ORDER BY id DESC LIMIT 1"
    )
    return dict(row) if row else None
