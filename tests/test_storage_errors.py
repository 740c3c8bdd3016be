"""A full disk or a read-only store exits 4 with a clear message, never 1 ("found something")
and never 70 ("internal error"), and leaves nothing half-written.

The errors are SQLite's own: ``PRAGMA max_page_count`` caps the database at its size (SQLite then
answers SQLITE_FULL, "database or disk is full", exactly as on a full disk) and ``PRAGMA
query_only`` refuses writes ("attempt to write a readonly database"). Tests run as root in CI,
where file permissions cannot make a file read-only.
"""

from __future__ import annotations

import errno

import pytest

from mqd_cli.errors import ExitCode, StateError, storage_error
from mqd_cli.store import Store


@pytest.fixture
def constrain(monkeypatch):
    """Make every store the CLI opens full (``"full"``) or read-only (``"readonly"``)."""

    def apply(mode: str) -> None:
        real = Store.open.__func__

        def opened(cls, path, **kw):
            store = real(cls, path, **kw)
            if mode == "full":
                pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
                store.conn.execute(f"PRAGMA max_page_count = {pages}")
            else:
                store.conn.execute("PRAGMA query_only = ON")
            return store

        monkeypatch.setattr(Store, "open", classmethod(opened))

    return apply


def _assets(tmp_path) -> int:
    store = Store.open(tmp_path / "mqd.db")
    try:
        return store.query_one("SELECT count(*) AS n FROM assets")["n"]
    finally:
        store.close()


def test_symbols_sync_on_a_full_disk_exits_4_and_stores_nothing(
    mqd, config_file, constrain, tmp_path
):
    cfg = config_file("[sim]\nuniverse_size = 2000\n")  # more rows than the free pages hold
    Store.open(tmp_path / "mqd.db").close()
    constrain("full")
    r = mqd("symbols", "sync", "--config", cfg, expect=int(ExitCode.STATE))
    assert r.stderr.startswith("error: the store could not be written: the disk is full")
    assert "hint: free space on the disk" in r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert _assets(tmp_path) == 0  # the sync's transaction was rolled back whole


def test_reconcile_on_a_read_only_store_exits_4_not_1(mqd, constrain, tmp_path):
    Store.open(tmp_path / "mqd.db").close()
    constrain("readonly")
    r = mqd("reconcile", expect=int(ExitCode.STATE))
    assert "the store is read-only" in r.stderr and "hint:" in r.stderr
    assert "internal error" not in r.stderr


def test_storage_errors_from_the_os_are_state_errors_and_others_are_not():
    full = storage_error(OSError(errno.ENOSPC, "No space left on device", "/data/out.csv"))
    assert isinstance(full, StateError) and full.exit_code is ExitCode.STATE
    assert "no space left" in full.message and "/data/out.csv" in full.message
    assert storage_error(OSError(errno.ECONNREFUSED, "refused")) is None
    assert storage_error(ValueError("database or disk is full")) is None  # not sqlite's


def test_an_output_path_that_cannot_be_written_exits_4_with_the_path(mqd, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory\n")
    r = mqd("config", "init", "--config", blocker / "mqd.toml", expect=int(ExitCode.STATE))
    assert "could not write" in r.stderr and str(blocker) in r.stderr
    assert "internal error" not in r.stderr and "hint:" in r.stderr
    mqd("symbols", "sync")
    orders = tmp_path / "orders.csv"
    orders.write_text("symbol,side,qty\nAAPL,buy,1\n")
    r = mqd("symbols", "validate", orders, "--fix", tmp_path / "missing" / "out.csv", expect=4)
    assert "could not write" in r.stderr and "no such file or directory" in r.stderr
