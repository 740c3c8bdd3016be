"""`mqd reconcile` end to end: exit codes 0/1/3, JSON, stored runs, against sim and emulator."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal

from orders_support import intent

from mqd_cli.clock import BacktestClock
from mqd_cli.errors import ExitCode
from mqd_cli.model import OrderIntent, OrderType, Side
from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.store import Store
from mqd_cli.store import orders as q

LONG_AGO = datetime(2020, 3, 2, 15, 0, tzinfo=UTC)


def test_in_sync_exits_0_and_records_the_run(mqd, tmp_path):
    out = mqd("reconcile", "--json")
    assert out.json["in_sync"] and out.json["outcome"] == "in_sync"
    (run,) = q.runs(Store.open(tmp_path / "mqd.db"))
    assert run["outcome"] == "in_sync" and run["cash"] is not None


def test_quiet_prints_nothing_when_in_sync(mqd):
    assert mqd("reconcile", "--quiet").stdout == ""


def test_shadow_exits_1_and_apply_resolves_it(mqd, tmp_path):
    store = Store.open(tmp_path / "mqd.db")
    t = OrderTracker(store, BacktestClock(LONG_AGO), strategy="sma_cross")
    cid = t.start(intent()).client_order_id  # recorded, never sent, long ago
    store.close()
    out = mqd("reconcile", "--json", expect=1)
    assert [(f["kind"], f["subject"]) for f in out.json["findings"]] == [("shadow", cid)]
    out = mqd("reconcile", "--apply", expect=1)
    assert "mark_not_found" in out.stdout and "pending_new -> rejected" in out.stdout
    mqd("reconcile")
    runs = q.runs(Store.open(tmp_path / "mqd.db"))
    assert [r["outcome"] for r in runs] == ["in_sync", "drift", "drift"]
    assert runs[1]["actions"][0]["kind"] == "mark_not_found"


def test_bad_lookback_is_a_usage_error(mqd):
    out = mqd("reconcile", "--lookback", "two days", expect=2)
    assert "--lookback" in out.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_broker_exits_3_and_is_recorded(mqd, config_file, tmp_path):
    port = _closed_port()
    cfg = config_file(
        f'broker = "alpaca"\n[alpaca]\nbase_url = "http://127.0.0.1:{port}"\n'
        'key_id = "k"\nsecret_key = "s"\ntimeout = "1s"\n'
        "[throttle]\nmax_attempts = 1\n"
    )
    out = mqd("reconcile", "--config", cfg, expect=3)
    assert out.stderr.startswith("error:")
    (run,) = q.runs(Store.open(tmp_path / "mqd.db"))
    assert run["outcome"] == "unreachable" and run["cash"] is None


def test_orphan_at_the_emulator_is_found_adopted_and_then_in_sync(
    mqd, config_file, emulator, tmp_path
):
    from mqd_cli.brokers.alpaca import AlpacaBroker

    srv = emulator()
    by_hand = AlpacaBroker(srv.alpaca_settings())
    by_hand.submit_order(
        OrderIntent(
            "AAPL",
            Side.BUY,
            qty=Decimal(3),
            type=OrderType.LIMIT,
            limit_price=Decimal("1.00"),
            client_order_id="by-hand",
        )
    )
    cfg = config_file(srv.config_toml())
    out = mqd("reconcile", "--config", cfg, "--json", expect=1)
    assert [(f["kind"], f["subject"]) for f in out.json["findings"]] == [("orphan", "by-hand")]
    out = mqd("reconcile", "--config", cfg, "--apply", "--json", expect=1)
    assert out.json["actions"][0]["kind"] == "adopt"
    mqd("reconcile", "--config", cfg)
    t = OrderTracker.restore(Store.open(tmp_path / "mqd.db"), BacktestClock(LONG_AGO))
    assert t.order("by-hand").external
    out = mqd("reconcile", "--config", cfg, "--cancel-orphans", "--json")
    assert out.json["actions"] == []


def test_confirmation_options_are_checked(mqd):
    assert "--looks" in mqd("reconcile", "--looks", "0", expect=2).stderr
    assert "--confirm-pause" in mqd("reconcile", "--confirm-pause", "31s", expect=2).stderr
    assert "--confirm-pause" in mqd("reconcile", "--confirm-pause", "soon", expect=2).stderr


def test_a_shadow_is_confirmed_by_a_second_look(mqd, tmp_path):
    store = Store.open(tmp_path / "mqd.db")
    cid = OrderTracker(store, BacktestClock(LONG_AGO), strategy="sma_cross").start(intent())
    store.close()
    out = mqd("reconcile", "--json", "--confirm-pause", "0s", expect=1)
    assert [(f["kind"], f["subject"]) for f in out.json["findings"]] == [
        ("shadow", cid.client_order_id)
    ]
    assert out.json["looks"] == 2 and out.json["unconfirmed"] == 0
    out = mqd("reconcile", "--json", "--looks", "1", expect=1)
    assert out.json["looks"] == 1


def test_in_sync_takes_one_look_and_says_what_it_could_not_check(mqd):
    out = mqd("reconcile", "--json")
    assert out.json["looks"] == 1 and out.json["in_flight"] == 0
    assert out.json["unchecked"] == [] and out.json["unconfirmed"] == 0


def test_an_internal_error_never_exits_1(mqd, monkeypatch):
    import sqlite3

    from mqd_cli.reconcile import collect as rc

    def bug(*a, **kw):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(rc, "check", bug)
    out = mqd("reconcile", "--json", expect=int(ExitCode.INTERNAL))
    assert "internal error: ZeroDivisionError: bug" in out.stderr and out.stdout == ""

    def locked(*a, **kw):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(rc, "check", locked)
    out = mqd("reconcile", expect=4)
    assert "database is locked" in out.stderr
