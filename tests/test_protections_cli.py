"""`mqd protections status|unlock` against a real store under tmp_path."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

from mqd_cli.clock import RealTimeClock
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.protections.base import Lock, LockRequest
from mqd_cli.store import Store
from mqd_cli.store.protections import insert_lock
from mqd_cli.store.trades import insert_closed_trade


@pytest.fixture
def db(tmp_path):
    """The store the `mqd` fixture's config points at."""
    store = Store.open(tmp_path / "mqd.db")
    yield store
    store.close()


def place(store, *, protection="cooldown", symbol="AAPL", side=None, hours=1.0, reason="r"):
    now = RealTimeClock().now()
    req = LockRequest(
        protection=protection,
        symbol=symbol,
        side=side,
        reason=reason,
        end=now + timedelta(hours=hours),
        anchor=now,
        evidence={"trade_id": "t1"},
    )
    return Lock(**insert_lock(store, req, now))


def test_status_without_locks_lists_every_protection_and_exits_0(mqd):
    r = mqd("protections", "status")
    for name in ("stoploss_guard", "max_drawdown", "cooldown", "low_profit"):
        assert name in r.stdout
    assert "0 of 3 stop-losses in the last 1h" in r.stdout
    assert "no active locks" in r.stdout


def test_status_json_shows_measure_threshold_and_active_lock_with_remaining(mqd, db):
    lock = place(db, symbol="AAPL", reason="cooldown after a loss of 800.00")
    now = RealTimeClock().now()
    for i in range(2):
        insert_closed_trade(
            db,
            ClosedTrade(
                trade_id=f"x{i}",
                symbol="MSFT",
                side="long",
                qty=Decimal(1),
                entry_price=Decimal(100),
                exit_price=Decimal(95),
                opened_at=now - timedelta(minutes=10),
                closed_at=now - timedelta(minutes=5 - i),
                pnl=Decimal(-5),
                fees=Decimal(0),
                exit_reason="stop_loss",
                strategy="s",
            ),
        )
    doc = mqd("protections", "status", "--json").json
    by_name = {p["name"]: p for p in doc["protections"]}
    slg = by_name["stoploss_guard"]
    assert slg["measure"] == "2 of 3 stop-losses in the last 1h"
    assert (slg["value"], slg["threshold"], slg["tripped"]) == ("2", "3", False)
    assert by_name["cooldown"]["locks"][0]["id"] == lock.id
    (active,) = doc["active_locks"]
    assert active["scope"] == "symbol" and active["symbol"] == "AAPL"
    assert active["reason"] == "cooldown after a loss of 800.00"
    assert 3500 < active["remaining_seconds"] <= 3600
    assert active["end"] == lock.end.isoformat()
    assert "history" not in doc


def test_status_text_shows_active_lock_table(mqd, db):
    place(db, protection="max_drawdown", symbol=None, reason="equity drawdown 31%")
    r = mqd("protections", "status")
    assert "active locks (1)" in r.stdout
    assert "all symbols" in r.stdout and "global" in r.stdout
    assert "LOCKED" in r.stdout


def test_unlock_without_symbol_or_all_is_a_usage_error_exit_2(mqd):
    r = mqd("protections", "unlock", "--reason", "x", expect=2)
    assert "error: name a SYMBOL to unlock, or pass --all" in r.stderr


def test_unlock_without_reason_is_a_usage_error_exit_2(mqd):
    r = mqd("protections", "unlock", "AAPL", expect=2)
    assert "--reason is required" in r.stderr


def test_unlock_symbol_records_the_os_user_and_reason_and_history_keeps_it(mqd, db):
    lock = place(db, symbol="AAPL")
    other = place(db, symbol="MSFT")
    r = mqd("protections", "unlock", "aapl", "--reason", "checked the feed")
    assert f"unlocked #{lock.id} cooldown on AAPL" in r.stdout
    doc = mqd("protections", "status", "--json", "--history").json
    assert [lk["id"] for lk in doc["active_locks"]] == [other.id]
    (past,) = doc["history"]
    assert past["id"] == lock.id
    assert past["unlocked_by"] == getpass.getuser()
    assert past["unlock_reason"] == "checked the feed"
    text = mqd("protections", "status", "--history").stdout
    assert "lock history" in text and "checked the feed" in text


def test_unlock_symbol_warns_when_a_global_lock_still_blocks_it(mqd, db):
    place(db, protection="max_drawdown", symbol=None)
    r = mqd("protections", "unlock", "AAPL", "--reason", "why")
    assert "no active lock on AAPL" in r.stdout
    assert "still blocked by the global lock" in r.stderr


def test_unlock_all_json_lists_every_lifted_lock(mqd, db):
    place(db, symbol="AAPL")
    place(db, protection="stoploss_guard", symbol=None, side="long")
    doc = mqd("protections", "unlock", "--all", "--reason", "new day", "--json").json
    assert len(doc["unlocked"]) == 2
    assert doc["by"] == getpass.getuser()
    assert mqd("protections", "status", "--json").json["active_locks"] == []


def test_status_with_a_bad_protection_key_exits_2_naming_the_path(mqd, config_file):
    path = config_file("[protections.cooldown]\nloss_treshold = 10\n", name="bad.toml")
    r = mqd("protections", "status", "--config", path, expect=2)
    assert "protections.cooldown.loss_treshold: unknown key" in r.stderr
    assert "did you mean 'protections.cooldown.loss_threshold'" in r.stderr


def test_status_imports_no_broker_or_network_library(config_file):
    path = config_file("")
    code = (
        "import sys; from typer.testing import CliRunner; from mqd_cli.app import app;"
        f"r = CliRunner().invoke(app, ['protections', 'status', '--config', {str(path)!r}]);"
        "assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('alpaca', 'httpx', 'websockets', 'pandas', 'uvicorn')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=True,
    )
    assert out.stdout.strip() == "[]"
