"""Core tables: key/value metadata shared by every component."""

from __future__ import annotations

from mqd_cli.store import Store

COMPONENT = "core"
MIGRATIONS = [
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]


def get_meta(store: Store, key: str) -> str | None:
    row = store.query_one("SELECT value FROM meta WHERE key = ?", (key,))
    return row["value"] if row else None


def set_meta(store: Store, key: str, value: str) -> None:
    with store.write() as cur:
        cur.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
