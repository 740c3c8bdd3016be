"""Orders, fills, positions, the order-event journal and reconcile runs.

The order tracker writes one short transaction per event (or per batch of events): the journal
row first, then the orders, fills and positions it changed, so the materialised tables never
hold an effect whose cause is not in the journal. An order's fixed terms are JSON written once
(``orders.state``); what an event changes is a handful of columns. Decimals are stored as exact
text, times as UTC ISO-8601 text with microseconds (text order is time order).
"""

from __future__ import annotations

import json
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
    # v2: what changes on every event is stored as columns, so an event rewrites a few short
    # values instead of the whole order as JSON; `orders.state` keeps the fixed terms (JSON,
    # written once). Positions move to `order_positions`, one column per field.
    """
    ALTER TABLE orders ADD COLUMN previous_status TEXT;
    ALTER TABLE orders ADD COLUMN submit_state TEXT NOT NULL DEFAULT 'pending';
    ALTER TABLE orders ADD COLUMN last_event_at TEXT;
    ALTER TABLE orders ADD COLUMN replaced_by TEXT;
    ALTER TABLE orders ADD COLUMN cum_qty TEXT NOT NULL DEFAULT '0';
    ALTER TABLE orders ADD COLUMN cum_avg TEXT;
    ALTER TABLE orders ADD COLUMN fallback_price TEXT;
    ALTER TABLE orders ADD COLUMN illegal INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE orders ADD COLUMN flags TEXT NOT NULL DEFAULT '[]';
    UPDATE orders SET
        previous_status = json_extract(state, '$.previous_status'),
        submit_state = coalesce(json_extract(state, '$.submit_state'), 'pending'),
        last_event_at = json_extract(state, '$.last_event_at'),
        replaced_by = json_extract(state, '$.replaced_by'),
        cum_qty = coalesce(json_extract(state, '$.cum_qty'), '0'),
        cum_avg = json_extract(state, '$.cum_avg'),
        fallback_price = json_extract(state, '$.fallback_price'),
        illegal = coalesce(json_extract(state, '$.illegal'), 0),
        flags = coalesce(json_extract(state, '$.flags'), '[]');
    UPDATE orders SET state = json_remove(state, '$.status', '$.previous_status',
        '$.broker_id', '$.submit_state', '$.updated_at', '$.last_event_at', '$.replaced_by',
        '$.cum_qty', '$.cum_avg', '$.fallback_price', '$.illegal', '$.flags',
        '$.synthetic_fill_ids');
    CREATE TABLE order_positions (
        symbol TEXT PRIMARY KEY,
        qty TEXT NOT NULL,
        cost TEXT NOT NULL,
        realized_pnl TEXT NOT NULL,
        fees TEXT NOT NULL,
        opened_at TEXT,
        entry_key TEXT NOT NULL,
        strategy TEXT NOT NULL,
        rt_entry_qty TEXT NOT NULL,
        rt_entry_notional TEXT NOT NULL,
        rt_exit_qty TEXT NOT NULL,
        rt_exit_notional TEXT NOT NULL,
        rt_realized TEXT NOT NULL,
        rt_fees TEXT NOT NULL,
        avg_price TEXT
    );
    INSERT INTO order_positions SELECT
        symbol, qty,
        coalesce(json_extract(state, '$.cost'), '0'),
        realized_pnl,
        coalesce(json_extract(state, '$.fees'), '0'),
        json_extract(state, '$.opened_at'),
        coalesce(json_extract(state, '$.entry_key'), ''),
        coalesce(json_extract(state, '$.strategy'), ''),
        coalesce(json_extract(state, '$.rt_entry_qty'), '0'),
        coalesce(json_extract(state, '$.rt_entry_notional'), '0'),
        coalesce(json_extract(state, '$.rt_exit_qty'), '0'),
        coalesce(json_extract(state, '$.rt_exit_notional'), '0'),
        coalesce(json_extract(state, '$.rt_realized'), '0'),
        coalesce(json_extract(state, '$.rt_fees'), '0'),
        avg_price
    FROM positions;
    DROP TABLE positions;
    """,
]


_TS_CACHE: dict[datetime, str] = {}


def ts(value: datetime | None) -> str | None:
    """The stored form of a time: UTC, fixed width, so text comparison is time comparison.
    Memoised: an event's time is stored as its journal time, the order's update time and its
    fills' time."""
    if value is None:
        return None
    text = _TS_CACHE.get(value)
    if text is None:
        if len(_TS_CACHE) >= 4096:
            _TS_CACHE.clear()
        text = _TS_CACHE[value] = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
dumps = _ENCODER.encode  # compact JSON; one shared encoder (building one per call is slow)


# -- rows the tracker writes (tuples in the column order of the statements below) -----------------

EVENT_COLUMNS = "event_time, source, client_order_id, event, outcome, detail, payload"
ORDER_COLUMNS = (
    "client_order_id, symbol, side, strategy, external, created_at, state, status,"
    " previous_status, broker_id, submit_state, updated_at, last_event_at, replaced_by,"
    " cum_qty, cum_avg, fallback_price, illegal, flags, filled_qty, avg_price"
)
FILL_COLUMNS = (
    "fill_id, client_order_id, symbol, side, qty, price, fee, timestamp, synthetic, source"
)
POSITION_COLUMNS = (
    "symbol, qty, cost, realized_pnl, fees, opened_at, entry_key, strategy, rt_entry_qty,"
    " rt_entry_notional, rt_exit_qty, rt_exit_notional, rt_realized, rt_fees, avg_price"
)


def _marks(columns: str) -> str:
    return ", ".join("?" * (columns.count(",") + 1))


def _updates(columns: str, keep: int) -> str:
    return ", ".join(f"{c} = excluded.{c}" for c in columns.replace(" ", "").split(",")[keep:])


_INSERT_EVENTS = (
    f"INSERT INTO order_events (recorded_at, {EVENT_COLUMNS}) VALUES (?, {_marks(EVENT_COLUMNS)})"
)
_UPSERT_SEQUENCES = (
    "INSERT INTO order_sequences (strategy, symbol, last_seq) VALUES (?, ?, ?)"
    " ON CONFLICT(strategy, symbol) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)"
)
# The fixed terms (the first 7 columns) are written once; a conflict updates the rest.
_UPSERT_ORDERS = (
    f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({_marks(ORDER_COLUMNS)})"
    f" ON CONFLICT(client_order_id) DO UPDATE SET {_updates(ORDER_COLUMNS, 7)}"
)
_INSERT_FILLS = (
    f"INSERT OR IGNORE INTO order_fills ({FILL_COLUMNS}) VALUES ({_marks(FILL_COLUMNS)})"
)
_UPSERT_POSITIONS = (
    f"INSERT INTO order_positions ({POSITION_COLUMNS}) VALUES ({_marks(POSITION_COLUMNS)})"
    f" ON CONFLICT(symbol) DO UPDATE SET {_updates(POSITION_COLUMNS, 1)}"
)


@dataclass
class Changes:
    """Everything one event (or one batch) changes, written in one transaction. Rows are
    tuples in the order of ``EVENT_COLUMNS``, ``ORDER_COLUMNS``, ``FILL_COLUMNS`` and
    ``POSITION_COLUMNS``."""

    events: list[tuple]
    orders: list[tuple]
    fills: list[tuple]
    positions: list[tuple]
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


def write_changes(store: Store, ch: Changes, recorded_at: str = "") -> int | None:
    """Journal first, then state, in one short transaction. Returns the last journal id.

    ``recorded_at`` (when the batch was journaled) is shared by the batch's events."""
    last_id = None
    with store.write() as cur:
        events = ch.events
        if len(events) == 1:
            cur.execute(_INSERT_EVENTS, (recorded_at, *events[0]))
            last_id = cur.lastrowid
        elif events:
            cur.executemany(_INSERT_EVENTS, [(recorded_at, *e) for e in events])
            last_id = cur.execute("SELECT last_insert_rowid()").fetchone()[0]
        if ch.sequences:
            cur.executemany(_UPSERT_SEQUENCES, ch.sequences)
        for sql, rows in (
            (_UPSERT_ORDERS, ch.orders),
            (_INSERT_FILLS, ch.fills),
            (_UPSERT_POSITIONS, ch.positions),
        ):
            if len(rows) == 1:
                cur.execute(sql, rows[0])
            elif rows:
                cur.executemany(sql, rows)
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
        stored: str = row["value"]
        return stored
    import secrets  # hmac, hashlib and OpenSSL come with it: only on a new store

    with store.write() as cur:
        cur.execute(
            "INSERT OR IGNORE INTO order_meta (key, value) VALUES ('namespace', ?)",
            (secrets.token_hex(3),),
        )
        created: str = cur.execute(
            "SELECT value FROM order_meta WHERE key = 'namespace'"
        ).fetchone()[0]
        return created


def sequences(store: Store) -> dict[tuple[str, str], int]:
    rows = store.query("SELECT strategy, symbol, last_seq FROM order_sequences")
    return {(r["strategy"], r["symbol"]): r["last_seq"] for r in rows}


def order_states(store: Store) -> list[dict[str, Any]]:
    """Each order as one dict of stored text: its fixed terms (from ``state``) and the
    columns that change (``flags`` decoded to a list)."""
    out = []
    for r in store.query(f"SELECT {ORDER_COLUMNS} FROM orders"):
        d = json.loads(r["state"])
        d.update(zip(r.keys(), r, strict=True))
        del d["state"]
        d["flags"] = json.loads(d["flags"])
        out.append(d)
    return out


def fill_rows(store: Store) -> list[Any]:
    return store.query("SELECT * FROM order_fills ORDER BY rowid")


def position_states(store: Store) -> list[dict[str, Any]]:
    return [dict(r) for r in store.query(f"SELECT {POSITION_COLUMNS} FROM order_positions")]


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
        run_id = cur.lastrowid
        assert run_id is not None  # set by the INSERT above
        return run_id


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
