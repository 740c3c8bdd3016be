"""The SQLite store: pragmas, versioned migrations on a real file, future schemas, concurrency."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import mqd_cli.store as store_pkg
from mqd_cli.errors import ExitCode, StateError
from mqd_cli.store import Store, core

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "state" / "mqd.db"


def test_open_creates_the_file_in_wal_mode_with_foreign_keys_and_busy_timeout(db):
    store = Store.open(db, busy_timeout_ms=1234)
    try:
        assert db.exists()
        assert store.query_one("PRAGMA journal_mode")[0] == "wal"
        assert store.query_one("PRAGMA foreign_keys")[0] == 1
        assert store.query_one("PRAGMA busy_timeout")[0] == 1234
    finally:
        store.close()


def test_open_applies_every_component_migration_and_records_versions(db):
    store = Store.open(db)
    versions = store.schema_versions()
    store.close()
    expected = {m.COMPONENT: len(m.MIGRATIONS) for m in store_pkg._components()}
    assert versions == expected
    assert versions["core"] == len(core.MIGRATIONS)
    assert store.applied["core"] == (0, len(core.MIGRATIONS))


def test_reopening_a_current_database_applies_nothing_and_keeps_data(db):
    store = Store.open(db)
    core.set_meta(store, "greeting", "hello")
    store.close()
    again = Store.open(db)
    try:
        assert again.applied == {}
        assert core.get_meta(again, "greeting") == "hello"
    finally:
        again.close()


def _fake_component(name: str, migrations: list[str]) -> types.ModuleType:
    mod = types.ModuleType(f"mqd_cli.store.{name}")
    mod.COMPONENT = name
    mod.MIGRATIONS = migrations
    return mod


def test_only_pending_migrations_run_in_order_on_an_older_database(db, monkeypatch):
    real = store_pkg._components
    v1 = "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
    v2 = """
        ALTER TABLE widgets ADD COLUMN colour TEXT NOT NULL DEFAULT 'red';
        CREATE INDEX widgets_name ON widgets(name);
    """
    monkeypatch.setattr(store_pkg, "_components", lambda: [*real(), _fake_component("w", [v1])])
    store = Store.open(db)
    with store.write() as cur:
        cur.execute("INSERT INTO widgets(name) VALUES ('a')")
    store.close()

    monkeypatch.setattr(store_pkg, "_components", lambda: [*real(), _fake_component("w", [v1, v2])])
    store = Store.open(db)
    try:
        assert store.applied == {"w": (1, 2)}
        assert store.schema_versions()["w"] == 2
        row = store.query_one("SELECT name, colour FROM widgets")
        assert (row["name"], row["colour"]) == ("a", "red")
    finally:
        store.close()


def test_failing_migration_rolls_back_and_leaves_the_version_unchanged(db, monkeypatch):
    real = store_pkg._components
    Store.open(db).close()
    bad = ["CREATE TABLE ok_table (x INTEGER);", "CREATE TABLE ok_table (x INTEGER);"]
    monkeypatch.setattr(store_pkg, "_components", lambda: [*real(), _fake_component("bad", bad)])
    with pytest.raises(StateError, match="migration bad v2 failed") as info:
        Store.open(db)
    assert "left unchanged" in info.value.hint
    monkeypatch.setattr(store_pkg, "_components", real)
    store = Store.open(db)
    try:
        assert "bad" not in store.schema_versions()
        assert store.query_one("SELECT 1 FROM sqlite_master WHERE name = 'ok_table'") is None
    finally:
        store.close()


def test_database_from_a_newer_mqd_is_refused_with_exit_4_and_a_clear_message(db):
    store = Store.open(db)
    with store.write() as cur:
        cur.execute("UPDATE schema_version SET version = 999 WHERE component = 'core'")
    store.close()
    with pytest.raises(StateError) as info:
        Store.open(db)
    err = info.value
    assert err.exit_code == ExitCode.STATE == 4
    assert "written by a newer mqd" in err.message
    assert "core v999" in err.message and str(db) in err.message
    assert "upgrade mqd" in err.hint


def test_unknown_component_from_a_newer_mqd_is_refused(db):
    store = Store.open(db)
    with store.write() as cur:
        cur.execute("INSERT INTO schema_version(component, version) VALUES ('future', 1)")
    store.close()
    with pytest.raises(StateError, match=r"future v1 \(this mqd knows v0\)"):
        Store.open(db)


def test_a_file_that_is_not_a_database_is_a_state_error(db):
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite at all, just text " * 200)
    with pytest.raises(StateError) as info:
        Store.open(db)
    assert info.value.exit_code == ExitCode.STATE
    assert "move the damaged file aside" in info.value.hint


def test_write_commits_on_success_and_rolls_back_on_error(db):
    store = Store.open(db)
    try:
        core.set_meta(store, "k", "1")
        with pytest.raises(RuntimeError), store.write() as cur:
            cur.execute("UPDATE meta SET value = '2' WHERE key = 'k'")
            raise RuntimeError("boom")
        assert core.get_meta(store, "k") == "1"
    finally:
        store.close()


def test_split_sql_keeps_statements_and_trigger_bodies_whole():
    script = """
        CREATE TABLE a (x INTEGER);
        CREATE TRIGGER t AFTER INSERT ON a BEGIN
            UPDATE a SET x = x + 1 WHERE rowid = new.rowid;
        END;
        CREATE INDEX a_x ON a(x);
    """
    parts = store_pkg._split_sql(script)
    assert len(parts) == 3
    assert parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")


WRITER = textwrap.dedent("""
    import sys, time
    from mqd_cli.store import Store
    store = Store.open(sys.argv[1])
    with store.write() as cur:
        cur.execute("UPDATE meta SET value = 'uncommitted' WHERE key = 'k'")
        print("holding", flush=True)
        sys.stdin.readline()  # hold the write lock until the test says so
    print("committed", flush=True)
""")


def test_readers_in_another_process_never_see_database_is_locked_while_a_writer_works(db):
    store = Store.open(db)
    core.set_meta(store, "k", "committed-before")
    store.close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert writer.stdout.readline().strip() == "holding"
        # A tiny busy timeout: the reader must not need to wait for the writer at all.
        for _ in range(20):
            reader = Store.open(db, busy_timeout_ms=1)
            try:
                assert core.get_meta(reader, "k") == "committed-before"
                assert reader.schema_versions()["core"] == len(core.MIGRATIONS)
            finally:
                reader.close()
        # Sanity: the lock really is held (a writer with a 1 ms timeout gives up).
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            quick = Store.open(db, busy_timeout_ms=1)
            try:
                core.set_meta(quick, "other", "x")
            finally:
                quick.close()
    finally:
        out, err = writer.communicate("go\n", timeout=30)
    assert writer.returncode == 0, err
    assert "committed" in out
    after = Store.open(db)
    try:
        assert core.get_meta(after, "k") == "uncommitted"
    finally:
        after.close()


def test_deferred_checkpoints_leave_the_wal_to_a_checkpoint_run_off_the_writer(tmp_path):
    from mqd_cli.store import Store

    store = Store.open(tmp_path / "mqd.db")
    try:
        store.defer_checkpoints()
        with store.write() as cur:
            cur.execute("CREATE TABLE bench_rows (k INTEGER PRIMARY KEY, v TEXT)")
        for _ in range(300):  # well past SQLite's 1,000-page autocheckpoint
            with store.write() as cur:
                cur.executemany(
                    "INSERT INTO bench_rows (v) VALUES (?)", [("x" * 400,) for _ in range(20)]
                )
        wal = tmp_path / "mqd.db-wal"
        assert wal.stat().st_size > 1000 * 4096  # nothing checkpointed inside the commits
        busy, frames, done = store.checkpoint()
        assert busy == 0 and frames > 1000 and done == frames
        with store.write() as cur:  # the writer goes on, and the WAL restarts from the top
            cur.execute("INSERT INTO bench_rows (v) VALUES ('after')")
        assert store.query_one("SELECT count(*) AS n FROM bench_rows")["n"] == 6001
    finally:
        store.close()
