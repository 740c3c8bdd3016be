"""Protection locks (with their history and who lifted them) and broker equity samples.

A lock row is never deleted: expiry is ``end_at <= now`` and a manual unlock fills
``unlocked_at/by/reason``, so ``mqd protections status --history`` can show what happened. A
lock is unique on (protection, symbol, side, end): re-evaluating the same evidence cannot
place it twice, nor re-place one an operator lifted.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from mqd_cli.store import Store
from mqd_cli.store.orders import ts

COMPONENT = "protections"
MIGRATIONS = [
    """
    CREATE TABLE protection_locks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        protection TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('global', 'symbol', 'side')),
        symbol TEXT,
        side TEXT CHECK (side IS NULL OR side IN ('long', 'short')),
        reason TEXT NOT NULL,
        start_at TEXT NOT NULL,
        end_at TEXT NOT NULL,
        anchor_at TEXT NOT NULL,
        evidence TEXT NOT NULL DEFAULT '{}',
        unlocked_at TEXT,
        unlocked_by TEXT,
        unlock_reason TEXT
    );
    CREATE UNIQUE INDEX protection_locks_identity
        ON protection_locks(protection, coalesce(symbol, ''), coalesce(side, ''), end_at);
    CREATE INDEX protection_locks_active ON protection_locks(end_at) WHERE unlocked_at IS NULL;
    CREATE TABLE protection_equity (
        at TEXT PRIMARY KEY,
        equity TEXT NOT NULL
    );
    """,
]

_COLS = (
    "id, protection, scope, symbol, side, reason, start_at, end_at, evidence, unlocked_at,"
    " unlocked_by, unlock_reason"
)


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class LockRequestLike(Protocol):
    """What a lock is stored from (``protections.base.LockRequest``)."""

    @property
    def protection(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def symbol(self) -> str | None: ...
    @property
    def side(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def end(self) -> datetime: ...
    @property
    def anchor(self) -> datetime: ...
    @property
    def evidence(self) -> dict[str, Any]: ...


LockRow = dict[str, Any]  # the keyword arguments of ``protections.base.Lock``


def _row_to_lock(row: Any) -> LockRow:
    try:
        evidence = json.loads(row["evidence"] or "{}")
    except ValueError:
        evidence = {"unparsed": row["evidence"]}
    return dict(
        id=row["id"],
        protection=row["protection"],
        scope=row["scope"],
        symbol=row["symbol"],
        side=row["side"],
        reason=row["reason"],
        start=_dt(row["start_at"]),
        end=_dt(row["end_at"]),
        evidence=evidence,
        unlocked_at=_dt(row["unlocked_at"]),
        unlocked_by=row["unlocked_by"],
        unlock_reason=row["unlock_reason"],
    )


def insert_lock(store: Store, request: LockRequestLike, start: datetime) -> LockRow | None:
    """Persist a lock; None when the same lock (protection, scope, end) already exists."""
    with store.write() as cur:
        cur.execute(
            "INSERT OR IGNORE INTO protection_locks (protection, scope, symbol, side, reason,"
            " start_at, end_at, anchor_at, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.protection,
                request.scope,
                request.symbol,
                request.side,
                request.reason,
                ts(start),
                ts(request.end),
                ts(request.anchor),
                json.dumps(request.evidence, sort_keys=True, default=str),
            ),
        )
        if cur.rowcount != 1:
            return None
        row = cur.execute(
            f"SELECT {_COLS} FROM protection_locks WHERE id = ?", (cur.lastrowid,)
        ).fetchone()
    return _row_to_lock(row)


def active_locks(store: Store, now: datetime) -> list[LockRow]:
    """Locks in force at ``now`` (end exclusive), the longest first."""
    rows = store.query(
        f"SELECT {_COLS} FROM protection_locks WHERE unlocked_at IS NULL AND end_at > ?"
        " ORDER BY end_at DESC, id",
        (ts(now),),
    )
    return [_row_to_lock(r) for r in rows]


def matching_lock(store: Store, now: datetime, symbol: str, side: str) -> LockRow | None:
    """The longest active lock that blocks ``symbol`` on ``side`` (global, symbol or side)."""
    row = store.query_one(
        f"SELECT {_COLS} FROM protection_locks WHERE unlocked_at IS NULL AND end_at > ?"
        " AND (symbol IS NULL OR symbol = ?) AND (side IS NULL OR side = ?)"
        " ORDER BY end_at DESC, id LIMIT 1",
        (ts(now), symbol, side),
    )
    return _row_to_lock(row) if row else None


def lock_history(store: Store, limit: int = 50) -> list[LockRow]:
    """Every lock, newest first (active, expired and lifted)."""
    rows = store.query(
        f"SELECT {_COLS} FROM protection_locks ORDER BY id DESC LIMIT ?", (int(limit),)
    )
    return [_row_to_lock(r) for r in rows]


def unlock_locks(
    store: Store, now: datetime, *, symbol: str | None, all: bool, who: str, reason: str
) -> list[LockRow]:
    """End active locks early: every one (``all``) or those on ``symbol``; returns them."""
    with store.write() as cur:
        sql = "SELECT id FROM protection_locks WHERE unlocked_at IS NULL AND end_at > ?"
        params: list = [ts(now)]
        if not all:
            sql += " AND symbol = ?"
            params.append(symbol)
        ids = [r[0] for r in cur.execute(sql, params).fetchall()]
        if ids:
            marks = ",".join("?" * len(ids))
            cur.execute(
                "UPDATE protection_locks SET unlocked_at = ?, unlocked_by = ?, unlock_reason = ?"
                f" WHERE id IN ({marks})",
                (ts(now), who, reason, *ids),
            )
            rows = cur.execute(
                f"SELECT {_COLS} FROM protection_locks WHERE id IN ({marks}) ORDER BY id", ids
            ).fetchall()
        else:
            rows = []
    return [_row_to_lock(r) for r in rows]


def record_equity(store: Store, at: datetime, equity: Decimal) -> None:
    """Keep a broker equity sample (one per instant; the latest value wins)."""
    with store.write() as cur:
        cur.execute(
            "INSERT INTO protection_equity (at, equity) VALUES (?, ?)"
            " ON CONFLICT(at) DO UPDATE SET equity = excluded.equity",
            (ts(at), str(equity)),
        )


def equity_samples(store: Store, since: datetime) -> list[tuple[datetime, Decimal]]:
    """Broker equity samples from the last one at or before ``since`` onward, oldest first."""
    rows = store.query(
        "SELECT at, equity FROM protection_equity WHERE at >= coalesce("
        " (SELECT max(at) FROM protection_equity WHERE at <= ?), ?) ORDER BY at",
        (ts(since), ts(since)),
    )
    return [(datetime.fromisoformat(r["at"]), Decimal(r["equity"])) for r in rows]


def prune_equity(store: Store, before: datetime) -> int:
    """Drop samples older than ``before`` but keep the last one before it (it opens a window)."""
    with store.write() as cur:
        cur.execute(
            "DELETE FROM protection_equity WHERE at < ? AND at <"
            " (SELECT max(at) FROM protection_equity WHERE at <= ?)",
            (ts(before), ts(before)),
        )
        return cur.rowcount


def get_lock(store: Store, lock_id: int) -> LockRow | None:
    row = store.query_one(f"SELECT {_COLS} FROM protection_locks WHERE id = ?", (lock_id,))
    return _row_to_lock(row) if row else None
