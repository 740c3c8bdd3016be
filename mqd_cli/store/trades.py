"""Closed trades: one row per finished round trip, written once (idempotent on trade_id).

Rows in, rows out: a trade goes in as any object with the columns as attributes (``TradeLike``)
and comes out as a dict of exact values (Decimal, aware datetime); ``orders/trades.py`` turns
rows into ``ClosedTrade``.

Decimals are stored as their exact text; times as UTC ISO-8601 text with microseconds, so text
order is time order and range queries use the index.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from mqd_cli.store import Store
from mqd_cli.store.orders import ts

COMPONENT = "trades"
MIGRATIONS = [
    """
    CREATE TABLE closed_trades (
        trade_id TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('long', 'short')),
        qty TEXT NOT NULL,
        entry_price TEXT NOT NULL,
        exit_price TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        closed_at TEXT NOT NULL,
        pnl TEXT NOT NULL,
        fees TEXT NOT NULL,
        exit_reason TEXT NOT NULL,
        strategy TEXT NOT NULL
    );
    CREATE INDEX closed_trades_closed_at ON closed_trades(closed_at);
    CREATE INDEX closed_trades_symbol_closed_at ON closed_trades(symbol, closed_at);
    """,
]

_COLUMNS = (
    "trade_id, symbol, side, qty, entry_price, exit_price, opened_at, closed_at, pnl, fees,"
    " exit_reason, strategy"
)


class TradeLike(Protocol):
    trade_id: str
    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    opened_at: datetime
    closed_at: datetime
    pnl: Decimal
    fees: Decimal
    exit_reason: str
    strategy: str


def _row(row: Any) -> dict[str, Any]:
    return dict(
        trade_id=row["trade_id"],
        symbol=row["symbol"],
        side=row["side"],
        qty=Decimal(row["qty"]),
        entry_price=Decimal(row["entry_price"]),
        exit_price=Decimal(row["exit_price"]),
        opened_at=datetime.fromisoformat(row["opened_at"]),
        closed_at=datetime.fromisoformat(row["closed_at"]),
        pnl=Decimal(row["pnl"]),
        fees=Decimal(row["fees"]),
        exit_reason=row["exit_reason"],
        strategy=row["strategy"],
    )


def insert_closed_trade(store: Store, trade: TradeLike) -> bool:
    """Store a closed trade; True if new, False if its trade_id was already stored."""
    with store.write() as cur:
        cur.execute(
            f"INSERT OR IGNORE INTO closed_trades ({_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trade.trade_id,
                trade.symbol,
                trade.side,
                str(trade.qty),
                str(trade.entry_price),
                str(trade.exit_price),
                ts(trade.opened_at),
                ts(trade.closed_at),
                str(trade.pnl),
                str(trade.fees),
                trade.exit_reason,
                trade.strategy,
            ),
        )
        return cur.rowcount == 1


def closed_trade_rows(
    store: Store, since: datetime | None = None, symbol: str | None = None
) -> list[dict[str, Any]]:
    """Closed trades with ``closed_at >= since`` (all when None), oldest first."""
    sql = f"SELECT {_COLUMNS} FROM closed_trades"
    where, params = [], []
    if since is not None:
        where.append("closed_at >= ?")
        params.append(ts(since))
    if symbol is not None:
        where.append("symbol = ?")
        params.append(symbol)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY closed_at, trade_id"
    return [_row(r) for r in store.query(sql, tuple(params))]


def realized_pnl_before(store: Store, before: datetime) -> Decimal:
    """Sum of realized PnL of the trades closed strictly before ``before`` (exact Decimal)."""
    rows = store.query("SELECT pnl FROM closed_trades WHERE closed_at < ?", (ts(before),))
    return sum((Decimal(r["pnl"]) for r in rows), Decimal(0))
