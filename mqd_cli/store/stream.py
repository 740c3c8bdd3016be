"""The trade_updates stream lease: which process holds the account's one connection.

The holder heartbeats the row; a lease whose heartbeat is older than its ttl is dead and may be
taken over. ``mqd stream tail`` reads the journal instead of connecting while a live lease
exists. The holder also writes its stream health as JSON so other processes can show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mqd_cli.store import Store

COMPONENT = "stream"
MIGRATIONS = [
    """
    CREATE TABLE stream_lease (
        account TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        health TEXT NOT NULL DEFAULT '{}'
    );
    """,
]


@dataclass(frozen=True)
class Lease:
    account: str
    holder: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    health: dict[str, Any]

    def is_live(self, now: datetime) -> bool:
        return now < self.expires_at


def _row(row) -> Lease:
    return Lease(
        account=row["account"],
        holder=row["holder"],
        acquired_at=datetime.fromisoformat(row["acquired_at"]),
        heartbeat_at=datetime.fromisoformat(row["heartbeat_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]),
        health=json.loads(row["health"] or "{}"),
    )


def acquire(store: Store, account: str, holder: str, now: datetime, ttl: timedelta) -> Lease | None:
    """Take the lease if it is free, expired or already ours; None when another holds it."""
    with store.write() as cur:
        row = cur.execute("SELECT * FROM stream_lease WHERE account = ?", (account,)).fetchone()
        if row is not None:
            current = _row(row)
            if current.holder != holder and current.is_live(now):
                return None
        cur.execute(
            "INSERT INTO stream_lease(account, holder, acquired_at, heartbeat_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(account) DO UPDATE SET holder = excluded.holder,"
            " acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at,"
            " expires_at = excluded.expires_at, health = '{}'",
            (account, holder, now.isoformat(), now.isoformat(), (now + ttl).isoformat()),
        )
    return current_lease(store, account)


def heartbeat(
    store: Store,
    account: str,
    holder: str,
    now: datetime,
    ttl: timedelta,
    health: dict[str, Any] | None = None,
) -> bool:
    """Extend our lease; False when we no longer hold it."""
    with store.write() as cur:
        cur.execute(
            "UPDATE stream_lease SET heartbeat_at = ?, expires_at = ?,"
            " health = COALESCE(?, health) WHERE account = ? AND holder = ?",
            (
                now.isoformat(),
                (now + ttl).isoformat(),
                json.dumps(health, default=str) if health is not None else None,
                account,
                holder,
            ),
        )
        return cur.rowcount == 1


def release(store: Store, account: str, holder: str) -> None:
    with store.write() as cur:
        cur.execute("DELETE FROM stream_lease WHERE account = ? AND holder = ?", (account, holder))


def current_lease(store: Store, account: str) -> Lease | None:
    row = store.query_one("SELECT * FROM stream_lease WHERE account = ?", (account,))
    return _row(row) if row else None


def live_lease(store: Store, account: str, now: datetime) -> Lease | None:
    lease = current_lease(store, account)
    return lease if lease is not None and lease.is_live(now) else None
