"""The SQLite store: the only place in mqd that holds SQL.

One database file in WAL mode with a busy timeout and foreign keys on. Each component of the
schema (``core``, ``throttle``, ``orders``, ...) lives in its own submodule of this package that
defines ``COMPONENT`` and ``MIGRATIONS`` (an ordered list of SQL scripts) next to the queries
that use those tables. ``Store.open`` applies the pending migrations of every component in one
short ``BEGIN IMMEDIATE`` transaction each, and refuses a database written by a newer mqd.

Writers keep transactions short (``with store.write() as cur:``); readers in other processes
never block the running loop because WAL readers do not take write locks.
"""

from __future__ import annotations

import importlib
import pkgutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from mqd_cli.errors import StateError

BUSY_TIMEOUT_MS = 10_000


def _components() -> list[ModuleType]:
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "MIGRATIONS") and hasattr(mod, "COMPONENT"):
            mods.append(mod)
    # core first: it owns schema_version itself.
    mods.sort(key=lambda m: (m.COMPONENT != "core", m.COMPONENT))
    return mods


class Store:
    """An open SQLite database with every component's schema current."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn
        self._lock = threading.RLock()
        self.applied: dict[str, tuple[int, int]] = {}  # component -> (from, to) at open

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Store:
        path = Path(path).expanduser()
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path),
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,  # autocommit; write() opens explicit transactions
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"cannot open the store at {path}: {exc}",
                "check [store] path and the file's permissions, or move the damaged file aside",
            ) from exc
        store = cls(path, conn)
        try:
            store.migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(
                f"the store at {path} is unreadable: {exc}",
                "move the damaged file aside; mqd creates a fresh one",
            ) from exc
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- WAL checkpoints ---------------------------------------------------------------------

    def defer_checkpoints(self) -> None:
        """No automatic WAL checkpoint inside a commit on this connection (SQLite runs one in
        the commit that crosses 1,000 pages, and the writer waits for it). The owner calls
        ``checkpoint()`` at a time it chooses instead: ``mqd run`` does, off its event loop."""
        with self._lock:
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")

    def checkpoint(self) -> tuple[int, int, int] | None:
        """A PASSIVE checkpoint on a connection of its own, so it never takes this store's
        lock and a worker thread can run it while the writer goes on (SQLite releases the GIL).
        Returns (busy, WAL frames, frames checkpointed); None for a store in memory."""
        if str(self.path) == ":memory:":
            return None
        conn = sqlite3.connect(str(self.path), timeout=5, check_same_thread=False)
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        return int(row[0]), int(row[1]), int(row[2])

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        """A short ``BEGIN IMMEDIATE`` transaction: commit on success, roll back on error."""
        with self._lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                # SQLite has rolled back already on some errors (a full disk): then a ROLLBACK
                # would raise "no transaction is active" and hide the error that matters.
                if self.conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        with self._lock:
            return self.conn.execute(sql, params).fetchone()

    # -- migrations ----------------------------------------------------------------------------

    def schema_versions(self) -> dict[str, int]:
        rows = self.query("SELECT component, version FROM schema_version")
        return {r["component"]: r["version"] for r in rows}

    def _current_versions(self, cur: sqlite3.Cursor) -> dict[str, int]:
        exists = cur.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if not exists:
            return {}
        return {r[0]: r[1] for r in cur.execute("SELECT component, version FROM schema_version")}

    def _refuse_newer(self, current: dict[str, int], known: dict[str, int]) -> None:
        newer = [
            f"{name} v{ver} (this mqd knows v{known.get(name, 0)})"
            for name, ver in sorted(current.items())
            if ver > known.get(name, 0)
        ]
        if newer:
            raise StateError(
                f"the store at {self.path} was written by a newer mqd: {', '.join(newer)}",
                "upgrade mqd (pip install -U mqd) or point [store] path at another file",
            )

    def migrate(self) -> dict[str, int]:
        """Apply pending migrations; refuse a database from a newer mqd (exit 4).

        A current database is only read (no write lock), so opening the store from a reader
        process never waits on, or blocks, a running writer.
        """
        components = _components()
        known = {m.COMPONENT: len(m.MIGRATIONS) for m in components}
        with self._lock:
            current = self._current_versions(self.conn.cursor())
        self._refuse_newer(current, known)
        if all(current.get(name, 0) == ver for name, ver in known.items()):
            return known
        with self.write() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            current = self._current_versions(cur)  # another process may have migrated
            self._refuse_newer(current, known)
            for mod in components:
                have = current.get(mod.COMPONENT, 0)
                for number, script in enumerate(mod.MIGRATIONS[have:], start=have + 1):
                    try:
                        for statement in _split_sql(script):
                            cur.execute(statement)
                    except sqlite3.DatabaseError as exc:
                        raise StateError(
                            f"migration {mod.COMPONENT} v{number} failed on {self.path}: {exc}",
                            "the database was left unchanged; this is a bug in mqd, report it",
                        ) from exc
                if len(mod.MIGRATIONS) > have:
                    cur.execute(
                        "INSERT INTO schema_version(component, version) VALUES (?, ?)"
                        " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                        (mod.COMPONENT, len(mod.MIGRATIONS)),
                    )
                    self.applied[mod.COMPONENT] = (have, len(mod.MIGRATIONS))
        return known


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
