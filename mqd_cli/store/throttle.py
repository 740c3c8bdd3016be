"""Throttle tables: the shared sliding window, holds after a 429, and persisted statistics.

``throttle_sends`` holds one row per limit for every send (past) or reservation (future) of the
last window, in microseconds since the epoch; rows of one acquire share a reservation id
(``rid``). A row may be sent from ``at`` until ``latest`` and stays counted one window after
``latest``: a reservation not yet sent has ``latest = at`` plus its tolerance, and its
``latest`` becomes the moment it was let through at its process's next transaction (``sent``);
slots leased to a process in one go have ``latest`` later still (see
``mqd_cli/throttle/lease.py``). ``phantom = 1`` rows stand for
usage the server reported that is not ours. Every booking is one ``BEGIN IMMEDIATE``
transaction over these rows, so several processes never admit more than the budget between
them. ``throttle_stats`` keeps one row per (limit, process)
plus a running total row per limit (``process = '*'``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from mqd_cli.store import Store

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own busy handler orders the transactions
    fcntl = None  # type: ignore[assignment]

COMPONENT = "throttle"
MIGRATIONS = [
    """
    CREATE TABLE throttle_sends (
        id INTEGER PRIMARY KEY,
        limit_name TEXT NOT NULL,
        at INTEGER NOT NULL,
        weight INTEGER NOT NULL,
        rid INTEGER NOT NULL,
        phantom INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX throttle_sends_limit_at ON throttle_sends(limit_name, at);
    CREATE INDEX throttle_sends_rid ON throttle_sends(rid);
    CREATE TABLE throttle_state (
        limit_name TEXT PRIMARY KEY,
        total INTEGER NOT NULL DEFAULT 0,
        last_at INTEGER NOT NULL DEFAULT 0,
        hold_until INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE throttle_stats (
        limit_name TEXT NOT NULL,
        process TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL DEFAULT 0,
        started INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        weight INTEGER NOT NULL DEFAULT 0,
        waits INTEGER NOT NULL DEFAULT 0,
        wait_total REAL NOT NULL DEFAULT 0,
        wait_max REAL NOT NULL DEFAULT 0,
        rate_limited INTEGER NOT NULL DEFAULT 0,
        backoffs INTEGER NOT NULL DEFAULT 0,
        last_429 INTEGER,
        last_reset INTEGER,
        PRIMARY KEY (limit_name, process)
    );
    """,
    """
    ALTER TABLE throttle_sends ADD COLUMN latest INTEGER NOT NULL DEFAULT 0;
    UPDATE throttle_sends SET latest = at;
    DROP INDEX throttle_sends_limit_at;
    CREATE INDEX throttle_sends_limit_latest ON throttle_sends(limit_name, latest);
    """,
]

# Per-process statistics rows older than this are dropped (the '*' totals stay).
PROCESS_ROW_TTL_US = 7 * 86_400 * 1_000_000


class WindowTx:
    """The throttle's view of the window inside one transaction (or one read) of the store."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def window(self, name: str, since: int) -> tuple[int, int | None, int]:
        """Drop the rows of one limit sent at the latest at or before ``since``; return (weight
        of the rows left, newest row start, hold_until). The running total keeps this O(1) in
        the window size."""
        expired = self._cur.execute(
            "DELETE FROM throttle_sends WHERE limit_name = ? AND latest <= ? RETURNING weight",
            (name, since),
        ).fetchall()
        if expired:
            self._cur.execute(
                "UPDATE throttle_state SET total = total - ? WHERE limit_name = ?",
                (sum(r[0] for r in expired), name),
            )
        row = self._cur.execute(
            "SELECT total, last_at, hold_until FROM throttle_state WHERE limit_name = ?", (name,)
        ).fetchone()
        if row is None:
            return 0, None, 0
        return row[0], row[1] or None, row[2]

    def oldest_first(self, name: str, since: int) -> Iterator[tuple[int, int]]:
        """``(latest, weight)`` of the rows still counted, the first to leave first."""
        # Its own cursor: stopping early closes it, not the transaction's cursor.
        yield from self._cur.connection.execute(
            "SELECT latest, weight FROM throttle_sends WHERE limit_name = ? AND latest > ?"
            " ORDER BY latest",
            (name, since),
        )

    def spans(self, name: str, since: int) -> list[tuple[int, int, int]]:
        """``(at, latest, weight)`` of the rows of one limit still counted after ``since``."""
        rows = self._cur.execute(
            "SELECT at, latest, weight FROM throttle_sends WHERE limit_name = ? AND latest > ?",
            (name, since),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def insert(self, rows: Iterable[tuple[str, int, int, int, int]]) -> None:
        """Rows of ``(limit_name, at, weight, rid, phantom)``, each sent at ``at``."""
        for name, at, weight, rid, phantom in rows:
            self.insert_span(name, at, at, weight, rid, phantom)

    def insert_span(
        self, name: str, at: int, latest: int, weight: int, rid: int, phantom: int = 0
    ) -> None:
        """One row that may be sent any time from ``at`` to ``latest``."""
        if weight > 0:
            self._cur.execute(
                "INSERT INTO throttle_sends(limit_name, at, latest, weight, rid, phantom)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, at, latest, weight, rid, phantom),
            )
            self._cur.execute(
                "INSERT INTO throttle_state(limit_name, total, last_at) VALUES (?, ?, ?)"
                " ON CONFLICT(limit_name) DO UPDATE SET total = total + excluded.total,"
                " last_at = MAX(last_at, excluded.last_at)",
                (name, weight, at),
            )

    def sent(self, rid: int, when: int) -> None:
        """Reservation ``rid`` went out at ``when`` (inside its tolerance): it stays counted one
        window from then, not from the end of its tolerance. A reservation moved since (behind
        a hold) is left alone."""
        self._cur.execute(
            "UPDATE throttle_sends SET latest = ?2 WHERE rid = ?1 AND at <= ?2 AND latest > ?2",
            (rid, when),
        )

    def future(self, name: str, after: int) -> list[int]:
        """Reservation ids of this limit not yet due, in queue order."""
        rows = self._cur.execute(
            "SELECT rid FROM throttle_sends WHERE limit_name = ?1 AND latest > ?2 AND at > ?2"
            " AND phantom = 0 ORDER BY at, id",
            (name, after),
        ).fetchall()
        return [r[0] for r in rows]

    def take(self, rid: int) -> list[tuple[str, int]]:
        """Remove one reservation; return its ``(limit_name, weight)`` rows."""
        rows = self._cur.execute(
            "DELETE FROM throttle_sends WHERE rid = ? AND phantom = 0"
            " RETURNING limit_name, weight, id",
            (rid,),
        ).fetchall()
        rows.sort(key=lambda r: r[2])
        for name, weight, _id in rows:
            self._cur.execute(
                "UPDATE throttle_state SET total = total - ?1,"
                " last_at = COALESCE((SELECT MAX(at) FROM throttle_sends WHERE limit_name = ?2), 0)"
                " WHERE limit_name = ?2",
                (weight, name),
            )
        return [(r[0], r[1]) for r in rows]

    def set_hold(self, name: str, until: int, now: int) -> None:
        self._cur.execute(
            "INSERT INTO throttle_state(limit_name, hold_until, updated) VALUES (?, ?, ?)"
            " ON CONFLICT(limit_name) DO UPDATE SET"
            " hold_until = MAX(hold_until, excluded.hold_until), updated = excluded.updated",
            (name, until, now),
        )

    def flush_stats(
        self, process: dict[str, Any], rows: list[dict[str, Any]], totals: list[dict[str, Any]]
    ) -> None:
        """Upsert this process's rows (absolute values) and add deltas to the '*' totals."""
        for row in rows:
            self._cur.execute(
                "INSERT INTO throttle_stats(limit_name, process, label, pid, started, updated,"
                " requests, weight, waits, wait_total, wait_max, rate_limited, backoffs,"
                " last_429, last_reset)"
                " VALUES (:limit_name, :process, :label, :pid, :started, :updated, :requests,"
                " :weight, :waits, :wait_total, :wait_max, :rate_limited, :backoffs, :last_429,"
                " :last_reset)"
                " ON CONFLICT(limit_name, process) DO UPDATE SET updated = excluded.updated,"
                " requests = excluded.requests, weight = excluded.weight,"
                " waits = excluded.waits, wait_total = excluded.wait_total,"
                " wait_max = excluded.wait_max, rate_limited = excluded.rate_limited,"
                " backoffs = excluded.backoffs, last_429 = excluded.last_429,"
                " last_reset = excluded.last_reset",
                {**process, **row},
            )
        for delta in totals:
            self._cur.execute(
                "INSERT INTO throttle_stats(limit_name, process, updated, requests, weight,"
                " waits, wait_total, wait_max, rate_limited, backoffs, last_429, last_reset)"
                " VALUES (:limit_name, '*', :updated, :requests, :weight, :waits, :wait_total,"
                " :wait_max, :rate_limited, :backoffs, :last_429, :last_reset)"
                " ON CONFLICT(limit_name, process) DO UPDATE SET updated = excluded.updated,"
                " requests = requests + excluded.requests, weight = weight + excluded.weight,"
                " waits = waits + excluded.waits, wait_total = wait_total + excluded.wait_total,"
                " wait_max = MAX(wait_max, excluded.wait_max),"
                " rate_limited = rate_limited + excluded.rate_limited,"
                " backoffs = backoffs + excluded.backoffs,"
                " last_429 = MAX(COALESCE(last_429, 0), COALESCE(excluded.last_429, 0)),"
                " last_reset = MAX(COALESCE(last_reset, 0), COALESCE(excluded.last_reset, 0))",
                {"updated": process["updated"], **delta},
            )
        self._cur.execute(
            "DELETE FROM throttle_stats WHERE process != '*' AND updated < ?",
            (process["updated"] - PROCESS_ROW_TTL_US,),
        )


@contextmanager
def transaction(store: Store) -> Iterator[WindowTx]:
    """One short ``BEGIN IMMEDIATE`` transaction over the throttle tables.

    Processes booking slots at saturation collide on the write lock, and SQLite's busy handler
    then sleeps 1, 2, 5, 10 ms... while the slot it waits for passes. So the throttle's own
    transactions first take an advisory lock on ``<store>-throttle`` (the file of the hold
    counter), polled every 100 us: a waiting process gets the store a moment after it is
    free. After ``LOCK_POLLS`` polls (a second or more: a stuck holder) it goes on without it;
    the lock only orders the throttle's transactions and is never needed for correctness."""
    fd = _lock_file(store)
    if fd is None or not _take(fd):
        with store.write() as cur:
            yield WindowTx(cur)
        return
    try:
        with store.write() as cur:
            yield WindowTx(cur)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


LOCK_POLL = 0.0001  # seconds between two tries of the lock
LOCK_POLLS = 10_000  # tries before going on without it (a second and more)
_lock_files: dict[str, int | None] = {}


def _lock_file(store: Store) -> int | None:
    path = str(store.path)
    if path in ("", ":memory:") or fcntl is None:
        return None
    if path not in _lock_files:
        try:
            _lock_files[path] = os.open(f"{path}-throttle", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            _lock_files[path] = None
    return _lock_files[path]


def _take(fd: int) -> bool:
    for _ in range(LOCK_POLLS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(LOCK_POLL)
        except OSError:
            return False
    return False


def _aggregate(store: Store, sql: str, params: tuple[object, ...]) -> sqlite3.Row:
    """The one row of an aggregate query (without GROUP BY it always yields exactly one)."""
    row = store.query_one(sql, params)
    assert row is not None, "an aggregate query returned no row"
    return row


def peek(store: Store, name: str, since: int) -> tuple[int, int | None, int]:
    """``WindowTx.window`` as a plain read (no write lock; WAL readers never block writers)."""
    row = _aggregate(
        store,
        "SELECT COALESCE(SUM(weight), 0), MAX(at),"
        " (SELECT hold_until FROM throttle_state WHERE limit_name = ?1)"
        " FROM throttle_sends WHERE limit_name = ?1 AND latest > ?2",
        (name, since),
    )
    return row[0], row[1], row[2] or 0


def reserved_at(store: Store, rid: int) -> int | None:
    row = _aggregate(
        store, "SELECT MAX(at) FROM throttle_sends WHERE rid = ? AND phantom = 0", (rid,)
    )
    at: int | None = row[0]
    return at


def usage(store: Store, name: str, since: int, now: int) -> tuple[int, int]:
    """(weight sent or leased still counted after ``since``, weight reserved after ``now``)."""
    row = _aggregate(
        store,
        "SELECT COALESCE(SUM(CASE WHEN at <= ?2 THEN weight END), 0),"
        " COALESCE(SUM(CASE WHEN at > ?2 THEN weight END), 0)"
        " FROM throttle_sends WHERE limit_name = ?3 AND latest > ?1",
        (since, now, name),
    )
    return row[0], row[1]


def holds(store: Store) -> dict[str, int]:
    rows = store.query("SELECT limit_name, hold_until FROM throttle_state")
    return {r["limit_name"]: r["hold_until"] for r in rows}


def stats_rows(store: Store) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT limit_name, process, label, pid, started, updated, requests, weight, waits,"
        " wait_total, wait_max, rate_limited, backoffs, NULLIF(last_429, 0) AS last_429,"
        " NULLIF(last_reset, 0) AS last_reset FROM throttle_stats ORDER BY limit_name, process"
    )
    return [dict(r) for r in rows]


def known_limits(store: Store) -> list[str]:
    rows = store.query(
        "SELECT limit_name FROM throttle_stats UNION SELECT limit_name FROM throttle_state"
        " UNION SELECT DISTINCT limit_name FROM throttle_sends"
    )
    return [r[0] for r in rows]
