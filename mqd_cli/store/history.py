"""Read-only queries behind the history commands: orders, fills and closed trades, filtered
and paged.

Rows come out as stored text, in the shapes the order journal restores from (an order as one
dict of its fixed terms and changing columns, like ``orders.order_states``), so the layer above
builds the same domain objects the tracker does. Filters: symbols (any of), strategy, and a
time window ``[since, until)`` on the column that dates the row (an order's creation, a fill's
execution, a trade's close). Pages are the newest rows first (``LIMIT``/``OFFSET``); callers
show them oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mqd_cli.store import Store
from mqd_cli.store.orders import ORDER_COLUMNS, ts
from mqd_cli.store.trades import _row as _trade_row

_TRADE_COLUMNS = (
    "trade_id, symbol, side, qty, entry_price, exit_price, opened_at, closed_at, pnl, fees,"
    " exit_reason, strategy"
)


def _where(
    time_column: str,
    *,
    symbols: Sequence[str] = (),
    strategy: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    prefix: str = "",
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if symbols:
        where.append(f"{prefix}symbol IN ({', '.join('?' * len(symbols))})")
        params.extend(symbols)
    if strategy is not None:
        where.append(f"{prefix}strategy = ?")
        params.append(strategy)
    if since is not None:
        where.append(f"{time_column} >= ?")
        params.append(ts(since))
    if until is not None:
        where.append(f"{time_column} < ?")
        params.append(ts(until))
    return where, params


def _sql_where(parts: list[str]) -> str:
    return (" WHERE " + " AND ".join(parts)) if parts else ""


def _order_state(row: Any) -> dict[str, Any]:
    d = json.loads(row["state"])
    d.update(zip(row.keys(), row, strict=True))
    del d["state"]
    d["flags"] = json.loads(d["flags"])
    return d


# -- orders ---------------------------------------------------------------------------------------


def count_orders(store: Store, **filters: Any) -> int:
    where, params = _where("created_at", **filters)
    row = store.query_one(f"SELECT count(*) AS n FROM orders{_sql_where(where)}", tuple(params))
    return int(row["n"]) if row else 0


def order_page(store: Store, *, limit: int, offset: int = 0, **filters: Any) -> list[dict]:
    """Orders matching ``filters`` by creation time: the ``limit`` newest after skipping the
    ``offset`` newest, newest first; each as a state dict (``orders.order_states`` shape)."""
    where, params = _where("created_at", **filters)
    rows = store.query(
        f"SELECT {ORDER_COLUMNS} FROM orders{_sql_where(where)}"
        " ORDER BY created_at DESC, client_order_id DESC LIMIT ? OFFSET ?",
        (*params, int(limit), int(offset)),
    )
    return [_order_state(r) for r in rows]


# -- fills ----------------------------------------------------------------------------------------


def orders_with_fills(store: Store, **filters: Any) -> list[dict]:
    """Orders with at least one stored fill matching ``filters`` (the window on the fill's
    time), as state dicts."""
    where, params = _where("f.timestamp", prefix="o.", **filters)
    where.insert(0, "f.client_order_id = o.client_order_id")
    cols = ", ".join(f"o.{c.strip()}" for c in ORDER_COLUMNS.split(","))
    rows = store.query(
        f"SELECT {cols} FROM orders o WHERE EXISTS (SELECT 1 FROM order_fills f"
        f"{_sql_where(where)})",
        tuple(params),
    )
    return [_order_state(r) for r in rows]


def fills_of(store: Store, client_order_ids: Sequence[str]) -> list[dict]:
    """Every stored fill row (real and synthetic) of these orders, in insertion order."""
    out: list[dict] = []
    ids = list(client_order_ids)
    for i in range(0, len(ids), 500):  # SQLite caps the parameters of one statement
        chunk = ids[i : i + 500]
        out.extend(
            dict(r)
            for r in store.query(
                "SELECT * FROM order_fills WHERE client_order_id IN ("
                + ", ".join("?" * len(chunk))
                + ") ORDER BY rowid",
                tuple(chunk),
            )
        )
    return out


# -- closed trades --------------------------------------------------------------------------------


def count_trades(store: Store, **filters: Any) -> int:
    where, params = _where("closed_at", **filters)
    row = store.query_one(
        f"SELECT count(*) AS n FROM closed_trades{_sql_where(where)}", tuple(params)
    )
    return int(row["n"]) if row else 0


def trade_page(store: Store, *, limit: int, offset: int = 0, **filters: Any) -> list[dict]:
    """Closed trades matching ``filters`` by close time: the ``limit`` newest after skipping
    the ``offset`` newest, newest first, as exact values (``trades.closed_trade_rows`` shape)."""
    where, params = _where("closed_at", **filters)
    rows = store.query(
        f"SELECT {_TRADE_COLUMNS} FROM closed_trades{_sql_where(where)}"
        " ORDER BY closed_at DESC, trade_id DESC LIMIT ? OFFSET ?",
        (*params, int(limit), int(offset)),
    )
    return [_trade_row(r) for r in rows]


def trade_results(store: Store, **filters: Any) -> list[dict[str, str]]:
    """Close time, symbol, PnL and exit reason (stored text) of every trade matching
    ``filters``, oldest first: the totals of a filtered history without whole rows."""
    where, params = _where("closed_at", **filters)
    rows = store.query(
        f"SELECT closed_at, symbol, pnl, exit_reason FROM closed_trades{_sql_where(where)}"
        " ORDER BY closed_at, trade_id",
        tuple(params),
    )
    return [dict(r) for r in rows]


# -- the journal's reach --------------------------------------------------------------------------


def last_activity(store: Store) -> str | None:
    """The latest time the journal recorded anything (an order event or an equity sample)."""
    row = store.query_one(
        "SELECT max(t) AS t FROM (SELECT max(recorded_at) AS t FROM order_events"
        " UNION ALL SELECT max(at) FROM protection_equity)"
    )
    return row["t"] if row and row["t"] else None
