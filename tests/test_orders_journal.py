"""Order tracker storage: journal payloads, the columns an event rewrites, the v1 -> v2
migration, and what survives a restart."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import pytest
from orders_support import T0, D, fill, intent, report, update

from mqd_cli.clock import BacktestClock
from mqd_cli.model import OrderStatus
from mqd_cli.orders import journal as order_journal
from mqd_cli.orders.states import PENDING, PREVIOUS, STEPS, TERMINAL, TRANSITIONS, next_status
from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.store import Store
from mqd_cli.store import orders as q
from mqd_cli.wire.parse import parse_order

S = OrderStatus


@pytest.fixture
def clock():
    return BacktestClock(T0)


def test_steps_table_resolves_every_transition_like_next_status():
    assert STEPS.keys() == TRANSITIONS.keys()
    for (state, event), (nxt, enters_pending, completed) in STEPS.items():
        if nxt is None:
            assert TRANSITIONS[(state, event)] is PREVIOUS
            continue
        assert nxt is next_status(state, event)
        assert enters_pending == (nxt in PENDING and state not in PENDING)
        assert completed == (state not in TERMINAL and nxt in TERMINAL)


def test_update_payload_is_json_with_awkward_strings_escaped():
    u = update("partial_fill", 'c"1\\', filled="5", avg="10", exec_id="x\n1", price="10")
    u = replace(u, order=replace(u.order, symbol="BRK.B\u00e9", replaces='old"id'))
    doc = json.loads(order_journal.update_payload(u))
    assert doc["order"]["client_order_id"] == 'c"1\\' and doc["order"]["symbol"] == "BRK.B\u00e9"
    assert doc["order"]["replaces"] == 'old"id' and doc["execution_id"] == "x\n1"
    assert doc["event"] == "partial_fill" and doc["price"] == "10" and doc["qty"] is None


def test_report_payload_parses_back_to_the_same_order():
    r = report("c1", status="partially_filled", filled="40", avg="10.25", limit="10.5")
    back = parse_order(json.loads(order_journal.report_payload(r))["order"])
    assert (back.client_order_id, back.status, back.filled_qty) == ("c1", r.status, D(40))
    assert back.filled_avg_price == D("10.25") and back.limit_price == D("10.5")
    assert back.created_at == r.created_at and back.updated_at == r.updated_at


def test_raw_wire_payload_is_journaled_verbatim():
    r = replace(report("c1"), raw={"id": "id-c1", "extra": "kept"})
    assert json.loads(order_journal.report_payload(r)) == {
        "order": {"id": "id-c1", "extra": "kept"}
    }


def test_an_event_rewrites_the_progress_columns_and_keeps_the_terms(tmp_path, clock):
    store = Store.open(tmp_path / "m.db")
    t = OrderTracker(store, clock)
    cid = t.start(intent()).client_order_id
    terms = store.query_one("SELECT state FROM orders")["state"]
    t.apply(fill(cid, "x1", "40", "10", "40", "10"))
    row = store.query_one("SELECT * FROM orders")
    assert row["state"] == terms and "status" not in json.loads(terms)
    assert (row["status"], row["cum_qty"], row["filled_qty"]) == ("partially_filled", "40", "40")


def test_illegal_transition_count_survives_a_restart(tmp_path, clock):
    path = tmp_path / "m.db"
    t = OrderTracker(Store.open(path), clock)
    t.apply(fill("c1", "x1", "100", "10", "100", "10"))
    t.apply(update("new", "c1"))
    assert OrderTracker.restore(Store.open(path), clock).order("c1").illegal == 1


def test_definite_submit_refusal_is_written_at_once(tmp_path, clock):
    path = tmp_path / "m.db"
    t = OrderTracker(Store.open(path), clock)
    cid = t.start(intent()).client_order_id
    t.on_submit_failed(cid, ValueError("422 insufficient buying power"), definitely_rejected=True)
    o = OrderTracker.restore(Store.open(path), clock).order(cid)
    assert (o.status, o.submit_state) == (S.REJECTED, "refused")


def test_batch_restores_positions_and_round_trips(tmp_path, clock):
    path = tmp_path / "m.db"
    t = OrderTracker(Store.open(path), clock)
    with t.batch():
        t.apply(fill("b", "x1", "10", "10", "10", "10", qty="10"))
        t.apply(fill("s", "x2", "4", "12", "4", "12", qty="10", side="sell", seconds=1))
    p = OrderTracker.restore(Store.open(path), clock).all_positions()["AAPL"]
    ref = t.all_positions()["AAPL"]
    assert (p.qty, p.cost, p.realized_pnl, p.opened_at, p.entry_key) == (
        ref.qty,
        ref.cost,
        ref.realized_pnl,
        ref.opened_at,
        ref.entry_key,
    )


V1_ORDER_STATE = {
    "client_order_id": "c1",
    "symbol": "AAPL",
    "side": "buy",
    "qty": "100",
    "notional": None,
    "type": "market",
    "time_in_force": "day",
    "limit_price": None,
    "stop_price": None,
    "strategy": "sma",
    "reason": "entry",
    "seq": 3,
    "intent_key": "k",
    "status": "pending_cancel",
    "previous_status": "partially_filled",
    "broker_id": "id-c1",
    "external": False,
    "submit_state": "acked",
    "created_at": "2026-09-16T14:00:00+00:00",
    "updated_at": "2026-09-16T14:00:05+00:00",
    "last_event_at": "2026-09-16T14:00:05+00:00",
    "replaces": None,
    "replaced_by": None,
    "cum_qty": "40",
    "cum_avg": "10.5",
    "fallback_price": "10.5",
    "illegal": 2,
    "flags": ["trade_bust"],
    "synthetic_fill_ids": [],
}
V1_POSITION_STATE = {
    "symbol": "AAPL",
    "qty": "40",
    "cost": "420.0",
    "realized_pnl": "0",
    "fees": "0",
    "opened_at": "2026-09-16T14:00:05+00:00",
    "entry_key": "c1",
    "strategy": "sma",
    "rt_entry_qty": "40",
    "rt_entry_notional": "420.0",
    "rt_exit_qty": "0",
    "rt_exit_notional": "0",
    "rt_realized": "0",
    "rt_fees": "0",
}


def test_a_v1_store_is_migrated_and_restores_the_same_state(tmp_path, clock):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER)")
    conn.execute("INSERT INTO schema_version VALUES ('orders', 1)")
    conn.executescript(q.MIGRATIONS[0])
    conn.execute(
        "INSERT INTO orders VALUES ('c1', 'id-c1', 'AAPL', 'buy', 'pending_cancel', 'sma', 0,"
        " '40', '10.5', '2026-09-16T14:00:00.000000+00:00', '2026-09-16T14:00:05.000000+00:00',"
        " ?)",
        (json.dumps(V1_ORDER_STATE),),
    )
    conn.execute(
        "INSERT INTO positions VALUES ('AAPL', '40', '10.5', '0', ?)",
        (json.dumps(V1_POSITION_STATE),),
    )
    conn.close()
    t = OrderTracker.restore(Store.open(path), clock)
    o = t.order("c1")
    assert (o.status, o.previous_status, o.broker_id, o.submit_state) == (
        S.PENDING_CANCEL,
        S.PARTIALLY_FILLED,
        "id-c1",
        "acked",
    )
    assert (o.cum_qty, o.cum_avg, o.illegal, o.flags, o.seq) == (
        D(40),
        D("10.5"),
        2,
        ["trade_bust"],
        3,
    )
    assert o.filled_qty == 40 and o.avg_price == D("10.5") and o.strategy == "sma"
    assert t.order_by_broker_id("id-c1") is o
    p = t.positions()["AAPL"]
    assert (p.qty, p.cost, p.entry_key, p.rt_entry_notional) == (D(40), D("420.0"), "c1", D(420))
    # the migrated order keeps working: a cancel reject returns to partially_filled
    r = t.apply(update("order_cancel_rejected", "c1", status="partially_filled", filled="40"))
    assert r.status is S.PARTIALLY_FILLED
