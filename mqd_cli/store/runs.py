"""Runs and backtests, with their summaries, and the equity samples of each run.

One row per ``mqd run`` (written at start, completed at stop) and per ``mqd backtest`` (written
with its result). A sim run names the session database that holds its journal; a run on the
configured store names none. ``run_equity`` keeps the run's equity and unrealized PnL every few
minutes of market time, so ``mqd pnl`` has an equity curve long after the protections pruned
their own samples.

Times: ``recorded_at``/``finished_at`` are the local clock (when the operator ran it),
``started_at``/``stopped_at`` the market time the run traded on (simulated time in a sim
session). All as UTC ISO-8601 text with microseconds (text order is time order); money as exact
decimal text; summaries and marks as JSON text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mqd_cli.store import Store
from mqd_cli.store.orders import ts

COMPONENT = "runs"
MIGRATIONS = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('run', 'backtest')),
        broker TEXT NOT NULL,
        session TEXT,
        journal TEXT NOT NULL DEFAULT '',
        strategy TEXT NOT NULL,
        symbols TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        finished_at TEXT,
        started_at TEXT NOT NULL,
        stopped_at TEXT,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        dry_run INTEGER NOT NULL DEFAULT 0,
        speed REAL NOT NULL DEFAULT 1.0,
        pid INTEGER,
        host TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX runs_session ON runs(session);
    CREATE INDEX runs_recorded_at ON runs(recorded_at);
    CREATE TABLE run_equity (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        equity TEXT NOT NULL,
        unrealized TEXT NOT NULL,
        marks TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, at)
    );
    """,
]

_COLUMNS = (
    "id, kind, broker, session, journal, strategy, symbols, recorded_at, finished_at,"
    " started_at, stopped_at, status, reason, dry_run, speed, pid, host, summary"
)


def insert_run(
    store: Store,
    *,
    kind: str,
    broker: str,
    session: str | None,
    journal: str,
    strategy: str,
    symbols: str,
    recorded_at: datetime,
    started_at: datetime,
    status: str,
    dry_run: bool = False,
    speed: float = 1.0,
    pid: int | None = None,
    host: str = "",
    stopped_at: datetime | None = None,
    finished_at: datetime | None = None,
    reason: str = "",
    summary: str = "{}",
) -> int:
    """A new run row (``symbols`` and ``summary`` are JSON text); returns its id."""
    with store.write() as cur:
        cur.execute(
            "INSERT INTO runs (kind, broker, session, journal, strategy, symbols, recorded_at,"
            " finished_at, started_at, stopped_at, status, reason, dry_run, speed, pid, host,"
            " summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                broker,
                session,
                journal,
                strategy,
                symbols,
                ts(recorded_at),
                ts(finished_at),
                ts(started_at),
                ts(stopped_at),
                status,
                reason,
                int(dry_run),
                float(speed),
                pid,
                host,
                summary,
            ),
        )
        run_id = cur.lastrowid
        assert run_id is not None  # set by the INSERT above
        return run_id


def finish_run(
    store: Store,
    run_id: int,
    *,
    stopped_at: datetime,
    finished_at: datetime,
    status: str,
    reason: str,
    summary: str,
) -> None:
    with store.write() as cur:
        cur.execute(
            "UPDATE runs SET stopped_at = ?, finished_at = ?, status = ?, reason = ?, summary = ?"
            " WHERE id = ?",
            (ts(stopped_at), ts(finished_at), status, reason, summary, run_id),
        )


def add_equity(
    store: Store, run_id: int, at: datetime, equity: str, unrealized: str, marks: str
) -> None:
    """One equity sample of a run (the latest value at an instant wins)."""
    with store.write() as cur:
        cur.execute(
            "INSERT INTO run_equity (run_id, at, equity, unrealized, marks) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(run_id, at) DO UPDATE SET equity = excluded.equity,"
            " unrealized = excluded.unrealized, marks = excluded.marks",
            (run_id, ts(at), equity, unrealized, marks),
        )


def _where(
    *,
    kind: str | None = None,
    session: str | None = None,
    sessions_only: bool | None = None,
    symbols: Sequence[str] = (),
    strategy: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    run_id: int | None = None,
    journal: str | None = None,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if session is not None:
        where.append("session = ?")
        params.append(session)
    if sessions_only is True:
        where.append("session IS NOT NULL")
    elif sessions_only is False:
        where.append("session IS NULL")
    if symbols:
        where.append(
            "EXISTS (SELECT 1 FROM json_each(runs.symbols) WHERE json_each.value IN ("
            + ", ".join("?" * len(symbols))
            + "))"
        )
        params.extend(symbols)
    if strategy is not None:
        where.append("strategy = ?")
        params.append(strategy)
    if since is not None:
        where.append("recorded_at >= ?")
        params.append(ts(since))
    if until is not None:
        where.append("recorded_at < ?")
        params.append(ts(until))
    if run_id is not None:
        where.append("id = ?")
        params.append(run_id)
    if journal is not None:
        where.append("journal = ?")
        params.append(journal)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def count_runs(store: Store, **filters: Any) -> int:
    where, params = _where(**filters)
    row = store.query_one(f"SELECT count(*) AS n FROM runs{where}", tuple(params))
    return int(row["n"]) if row else 0


def run_rows(
    store: Store, *, limit: int | None = None, offset: int = 0, **filters: Any
) -> list[dict[str, Any]]:
    """Runs matching ``filters`` (see ``_where``), newest first, as dicts of stored text."""
    where, params = _where(**filters)
    sql = f"SELECT {_COLUMNS} FROM runs{where} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [int(limit), int(offset)]
    return [dict(r) for r in store.query(sql, tuple(params))]


def get_run(store: Store, run_id: int) -> dict[str, Any] | None:
    row = store.query_one(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    return dict(row) if row else None


def next_run_start(store: Store, run_id: int, journal: str) -> str | None:
    """When the next run on the same journal started (market time text), or None."""
    row = store.query_one(
        "SELECT min(started_at) AS s FROM runs WHERE journal = ? AND id > ? AND kind = 'run'",
        (journal, run_id),
    )
    return row["s"] if row and row["s"] else None


def session_names(store: Store) -> list[str]:
    """The session of every sim run, oldest run first (a name once, at its newest run)."""
    rows = store.query(
        "SELECT session, max(id) AS last FROM runs WHERE session IS NOT NULL"
        " GROUP BY session ORDER BY last"
    )
    return [r["session"] for r in rows]


def equity_rows(
    store: Store,
    run_ids: Sequence[int],
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Equity samples of these runs in [since, until), oldest first, as stored text."""
    if not run_ids:
        return []
    sql = (
        "SELECT run_id, at, equity, unrealized, marks FROM run_equity WHERE run_id IN ("
        + ", ".join("?" * len(run_ids))
        + ")"
    )
    params: list[Any] = list(run_ids)
    if since is not None:
        sql += " AND at >= ?"
        params.append(ts(since))
    if until is not None:
        sql += " AND at < ?"
        params.append(ts(until))
    sql += " ORDER BY at, run_id"
    return [dict(r) for r in store.query(sql, tuple(params))]


def last_equity(store: Store, run_ids: Sequence[int]) -> dict[str, Any] | None:
    """The newest equity sample of these runs, or None."""
    if not run_ids:
        return None
    row = store.query_one(
        "SELECT run_id, at, equity, unrealized, marks FROM run_equity WHERE run_id IN ("
        + ", ".join("?" * len(run_ids))
        + ") ORDER BY at DESC LIMIT 1",
        tuple(run_ids),
    )
    return dict(row) if row else None
