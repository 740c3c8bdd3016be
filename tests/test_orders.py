"""Order tracker: the state table, fills (dedup, cumulative, out of order), journal, restore."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from orders_support import T0, D, fill, intent, report, update

from mqd_cli.clock import BacktestClock
from mqd_cli.model import FillReport, OrderStatus, Side, TradeEvent
from mqd_cli.orders.tracker import (
    OPEN,
    STATES,
    TERMINAL,
    TRANSITIONS,
    OrderEvent,
    OrderTracker,
    next_status,
    synthetic_fill_id,
)
from mqd_cli.orders.trades import closed_trades
from mqd_cli.store import Store
from mqd_cli.store import orders as q

S = OrderStatus
E = OrderEvent


@pytest.fixture
def clock():
    return BacktestClock(T0)


def mem(clock, **kw) -> OrderTracker:
    return OrderTracker(None, clock, **kw)


def tracked(tracker: OrderTracker, cid: str = "c1", status: S = S.NEW, **kw):
    """An order the tracker knows, forced into ``status`` (for table tests)."""
    tracker.apply_order_report(report(cid, status="pending_new", **kw))
    o = tracker.order(cid)
    o.status = status
    return o


# -- the state table ------------------------------------------------------------------------------


def test_table_covers_every_alpaca_status_and_event():
    assert set(STATES) == set(S) - {S.UNKNOWN}
    assert set(OPEN) | set(TERMINAL) == set(STATES) and not set(OPEN) & set(TERMINAL)
    for ev in TradeEvent:
        assert OrderEvent(ev.value) in OrderEvent
    for state, event in TRANSITIONS:
        assert state in STATES and event in OrderEvent


# Independent expectations for the pairs that matter most (the table is the implementation).
EXPECTED = {
    (S.PENDING_NEW, E.NEW): S.NEW,
    (S.PENDING_NEW, E.FILL): S.FILLED,  # no `new` seen: a fill still completes the order
    (S.NEW, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, E.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, E.NEW): None,  # stale `new`: illegal
    (S.PARTIALLY_FILLED, E.REJECTED): None,  # nautilus PR #4479
    (S.FILLED, E.PARTIAL_FILL): S.FILLED,  # late partial after filled
    (S.FILLED, E.CANCELED): None,
    (S.FILLED, E.NEW): None,
    (S.CANCELED, E.PARTIAL_FILL): S.CANCELED,  # fill after cancel: applied, stays canceled
    (S.CANCELED, E.FILL): S.FILLED,  # complete fill after cancel: completion wins
    (S.CANCELED, E.NEW): None,
    (S.REJECTED, E.FILL): None,
    (S.PENDING_CANCEL, E.PARTIAL_FILL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, E.CANCELED): S.CANCELED,
    (S.PENDING_REPLACE, E.REPLACED): S.REPLACED,
    (S.NEW, E.REPLACED): S.REPLACED,  # pending_replace missed
    (S.DONE_FOR_DAY, E.NEW): S.NEW,  # resumes the next day
    (S.HELD, E.NEW): S.NEW,  # bracket leg activated
    (S.FILLED, E.ORDER_CANCEL_REJECTED): S.FILLED,  # too late to cancel: no-op
    (S.NEW, E.UNKNOWN): None,
    (S.PENDING_NEW, E.SUBMIT_REJECTED): S.REJECTED,
    (S.NEW, E.SUBMIT_REJECTED): None,
    (S.ACCEPTED, E.NOT_FOUND): S.REJECTED,
    (S.PARTIALLY_FILLED, E.NOT_FOUND): S.CANCELED,
    (S.FILLED, E.NOT_FOUND): None,
}


@pytest.mark.parametrize(
    ("pair", "expected"), list(EXPECTED.items()), ids=[f"{s.value}-{e.value}" for s, e in EXPECTED]
)
def test_real_world_pairs_have_the_expected_next_state(pair, expected):
    assert next_status(*pair) == expected


def test_terminal_states_only_accept_fills_and_no_ops():
    for state in TERMINAL:
        for event in OrderEvent:
            nxt = next_status(state, event)
            if nxt is not None and nxt != state:
                assert nxt is S.FILLED and event is E.FILL, (state, event)


def test_cancel_rejected_returns_to_the_status_before_pending_cancel(clock):
    t = mem(clock)
    t.apply(update("new"))
    t.apply(update("partial_fill", filled="10", avg="5", exec_id="x1", price="5", fill_qty="10"))
    t.apply(update("pending_cancel", filled="10", avg="5"))
    r = t.apply(update("order_cancel_rejected", status="partially_filled", filled="10", avg="5"))
    assert r.status is S.PARTIALLY_FILLED and not r.illegal


def _fire(t: OrderTracker, cid: str, event: OrderEvent):
    if event is E.SUBMIT_REJECTED:
        return t.on_submit_failed(cid, ValueError("422"), definitely_rejected=True)
    if event is E.NOT_FOUND:
        return t.mark_not_found(cid)
    if event.value in TradeEvent._value2member_map_ and event is not E.UNKNOWN:
        return t.apply(update(event.value, cid, status="new"))
    status = "unknown" if event is E.UNKNOWN else event.value
    return t.apply_order_report(report(cid, status=status))


ALL_PAIRS = [(s, e) for s in STATES for e in OrderEvent]


@pytest.mark.parametrize(
    ("state", "event"), ALL_PAIRS, ids=[f"{s.value}-{e.value}" for s, e in ALL_PAIRS]
)
def test_every_pair_is_applied_as_the_table_says_or_kept_as_evidence(clock, state, event):
    t = mem(clock)
    o = tracked(t, "c1", state)
    o.previous_status = S.NEW
    expected = next_status(state, event, S.NEW)
    r = _fire(t, "c1", event)
    if expected is None:
        assert r.illegal.startswith(f"illegal transition {state.value}")
        assert t.order("c1").status is state
    else:
        assert not r.illegal
        assert t.order("c1").status is expected


def test_illegal_transition_is_journaled_as_evidence_and_changes_nothing(tmp_path, clock):
    store = Store.open(tmp_path / "m.db")
    t = OrderTracker(store, clock)
    t.apply(fill("c1", "x1", "100", "10", "100", "10"))
    r = t.apply(update("new", "c1"))
    assert r.illegal == "illegal transition filled --new-->"
    assert t.order("c1").status is S.FILLED and t.order("c1").filled_qty == 100
    rows = q.events(store, "c1")
    assert [row["outcome"] for row in rows] == ["applied", "illegal"]
    assert rows[-1]["detail"] == r.illegal and '"event":"new"' in rows[-1]["payload"]


def test_unknown_event_is_evidence_not_state(clock):
    t = mem(clock)
    t.apply(update("new"))
    u = update("new")
    u = type(u)(
        event=TradeEvent("something_new"),
        timestamp=u.timestamp,
        order=u.order,
        event_raw="something_new",
    )
    r = t.apply(u)
    assert r.illegal and t.order("c1").status is S.NEW


# -- fills ----------------------------------------------------------------------------------------


def test_duplicate_execution_id_from_stream_and_rest_counts_once(clock):
    t = mem(clock)
    t.apply(fill("c1", "x1", "40", "10", "40", "10"))
    t.apply(fill("c1", "x1", "40", "10", "40", "10"))  # the stream redelivers
    r = t.apply_fill(
        FillReport("id-c1", "c1", "AAPL", Side.BUY, D(40), D(10), T0, execution_id="x1")
    )  # REST account activities
    assert r.duplicate and t.order("c1").filled_qty == 40
    assert [f.fill_id for f in t.order("c1").fills] == ["x1"]


def test_cumulative_fills_without_execution_ids_become_deltas(clock):
    t = mem(clock)
    got = []
    for cum in ("10", "10", "25"):
        r = t.apply(update("partial_fill", filled=cum, avg="10"))
        got += [f.qty for f in r.new_fills]
    assert got == [10, 15]
    o = t.order("c1")
    assert o.filled_qty == 25 and [f.qty for f in o.fills] == [10, 15]
    assert all(f.synthetic for f in o.fills)
    assert o.fills[1].fill_id == synthetic_fill_id("c1", D(25))


def test_synthetic_fill_price_makes_the_average_match_the_broker(clock):
    t = mem(clock)
    t.apply(fill("c1", "x1", "40", "178.48", "40", "178.48"))
    r = t.apply_order_report(report("c1", status="filled", filled="100", avg="178.492"))
    (f,) = r.new_fills
    assert f.synthetic and f.qty == 60 and f.price == D("178.5")
    assert t.order("c1").avg_price == D("178.492")


def test_filled_status_before_its_fill_yields_one_fill_and_one_completion(clock):
    t = mem(clock)
    first = t.apply_order_report(report("c1", status="filled", filled="100", avg="10"))
    second = t.apply(fill("c1", "x1", "100", "10", "100", "10"))
    assert first.completed and not second.completed
    assert len(first.new_fills) == 1 and second.new_fills == ()
    o = t.order("c1")
    assert o.filled_qty == 100 and len(o.fills) == 1 and o.fills[0].fill_id == "x1"
    assert t.positions()["AAPL"].qty == 100


def test_late_partial_fill_after_filled_only_adds_the_missing_quantity(clock):
    t = mem(clock)
    t.apply(fill("c1", "x2", "60", "10", "100", "10"))  # final fill first
    r = t.apply(fill("c1", "x1", "40", "10", "40", "10"))  # its earlier partial, late
    assert r.status is S.FILLED and r.new_fills == () and not r.illegal
    assert t.order("c1").filled_qty == 100
    assert sorted(f.fill_id for f in t.order("c1").fills) == ["x1", "x2"]


def test_fill_after_cancel_is_applied_and_order_stays_canceled(clock):
    t = mem(clock)
    t.apply(update("new"))
    t.apply(update("canceled"))
    r = t.apply(fill("c1", "x1", "30", "10", "30", "10"))
    assert r.status is S.CANCELED and r.filled_qty_delta == 30
    assert t.positions()["AAPL"].qty == 30


def test_partially_filled_order_canceled_keeps_its_fills(clock):
    t = mem(clock)
    t.apply(fill("c1", "x1", "30", "10", "30", "10"))
    r = t.apply(update("canceled", filled="30", avg="10"))
    assert r.completed and r.status is S.CANCELED and t.order("c1").filled_qty == 30


def test_replaced_links_the_successor_which_inherits_the_intent(clock):
    t = mem(clock)
    sent = t.start(intent(reason="take_profit"))
    cid = sent.client_order_id
    t.on_submitted(report(cid, status="new", oid="old"))
    t.apply(update("pending_replace", cid, oid="old"))
    t.apply(update("replaced", cid, oid="old", replaced_by="new-id"))
    r = t.apply(update("new", "successor", oid="new-id", replaces="old"))
    succ = t.order("successor")
    assert r.adopted and succ.replaces == cid and succ.reason == "take_profit"
    assert not succ.external and t.order(cid).replaced_by == "new-id"
    assert t.order(cid).status is S.REPLACED


def test_unknown_order_on_the_stream_is_adopted_as_external(clock):
    t = mem(clock)
    r = t.apply(fill("manual-1", "x1", "5", "10", "5", "10", qty="5"))
    assert r.adopted and t.order("manual-1").external and t.positions()["AAPL"].qty == 5


LIFECYCLES = {
    "fills": [
        update("pending_new"),
        update("new"),
        fill("c1", "x1", "10", "10", "10", "10"),
        fill("c1", "x2", "30", "11", "40", "10.75"),
        fill("c1", "x2", "30", "11", "40", "10.75"),
        fill("c1", "x3", "60", "12", "100", "11.5"),
        update("order_cancel_rejected", status="filled", filled="100", avg="11.5"),
    ],
    "cancel": [
        update("pending_new"),
        update("new"),
        fill("c1", "x1", "10", "10", "10", "10"),
        update("pending_cancel", filled="10", avg="10"),
        fill("c1", "x2", "5", "12", "15", "10.666666666666666666666666667"),
        update("canceled", filled="15", avg="10.666666666666666666666666667"),
    ],
    "mixed": [
        update("new"),
        update("partial_fill", filled="10", avg="10"),  # no execution id
        fill("c1", "x2", "15", "12", "25", "11.2"),
        update("partial_fill", filled="25", avg="11.2"),
        fill("c1", "x3", "75", "10", "100", "10.3"),
        update("fill", filled="100", avg="10.3"),
    ],
}


def _final(events):
    t = OrderTracker(None, BacktestClock(T0))
    for e in events:
        t.apply(e)
    o = t.order("c1")
    return (
        o.status,
        o.filled_qty,
        o.avg_price,
        o.first_fill_at,
        o.last_fill_at,
        t.positions()["AAPL"].qty,
        t.positions()["AAPL"].cost,
    )


@pytest.mark.parametrize("name", list(LIFECYCLES))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_same_events_in_any_order_reach_the_same_final_state(name, data):
    events = LIFECYCLES[name]
    shuffled = data.draw(st.permutations(events))
    assert _final(shuffled) == _final(events)


@settings(max_examples=30, deadline=None)
@given(cums=st.lists(st.integers(1, 100), min_size=1, max_size=8))
def test_cumulative_reports_in_any_order_never_exceed_the_highest(cums):
    t = OrderTracker(None, BacktestClock(T0))
    for c in cums:
        t.apply_order_report(report("c1", status="partially_filled", filled=str(c), avg="10"))
    o = t.order("c1")
    assert o.filled_qty == max(cums) == sum(f.qty for f in o.fills)


# -- ids, submit ----------------------------------------------------------------------------------


def test_ids_are_deterministic_and_the_sequence_survives_a_restart(tmp_path, clock):
    path = tmp_path / "m.db"
    t = OrderTracker(Store.open(path), clock, strategy="sma")
    a = t.start(intent(qty="1")).client_order_id
    b = t.start(intent(qty="2")).client_order_id
    ns = t.namespace
    assert (a, b) == (f"mqd-{ns}-sma-AAPL-1", f"mqd-{ns}-sma-AAPL-2")
    t.on_submitted(report(a, status="new"))
    t.on_submitted(report(b, status="new"))
    t2 = OrderTracker.restore(Store.open(path), clock, strategy="sma")
    assert t2.start(intent(qty="3")).client_order_id == f"mqd-{ns}-sma-AAPL-3"


def test_unanswered_identical_intent_gets_the_same_id_after_a_restart(tmp_path, clock):
    path = tmp_path / "m.db"
    t = OrderTracker(Store.open(path), clock, strategy="sma")
    first = t.start(intent())  # then kill -9 before the broker answered
    t2 = OrderTracker.restore(Store.open(path), clock, strategy="sma")
    again = t2.start(intent())
    assert again.client_order_id == first.client_order_id
    assert t2.order(first.client_order_id).status is S.PENDING_NEW


def test_ambiguous_submit_failure_keeps_the_order_pending(clock):
    t = mem(clock)
    cid = t.start(intent()).client_order_id
    r = t.on_submit_failed(cid, TimeoutError("read timeout"), definitely_rejected=False)
    assert r.status is S.PENDING_NEW and t.order(cid).submit_state == "uncertain"
    r = t.on_submit_failed(cid, ValueError("422 insufficient qty"), definitely_rejected=True)
    assert r.status is S.REJECTED and r.completed


# -- positions and closed trades ------------------------------------------------------------------


def test_round_trip_becomes_a_stored_closed_trade_with_the_exit_reason(tmp_path, clock):
    store = Store.open(tmp_path / "m.db")
    seen = []
    t = OrderTracker(store, clock, strategy="sma", on_trade_closed=seen.append)
    buy = t.start(intent(qty="100")).client_order_id
    t.apply(fill(buy, "x1", "100", "10", "100", "10"))
    sell = t.start(intent(side="sell", qty="100", reason="stop_loss")).client_order_id
    t.apply(fill(sell, "x2", "60", "9", "60", "9", side="sell", seconds=60))
    t.apply(fill(sell, "x3", "40", "8.5", "100", "8.8", side="sell", seconds=61))
    (trade,) = seen
    assert trade.exit_reason == "stop_loss" and trade.side == "long" and trade.qty == 100
    assert trade.entry_price == 10 and trade.exit_price == D("8.8")
    assert trade.pnl == D(-120) and trade.strategy == "sma"
    assert closed_trades(store) == [trade]
    assert "AAPL" not in t.positions() and t.all_positions()["AAPL"].realized_pnl == -120


def test_average_cost_short_round_trip_and_flip_through_zero(clock):
    seen = []
    t = mem(clock, on_trade_closed=seen.append)
    t.apply(fill("s1", "x1", "10", "20", "10", "20", qty="10", side="sell"))
    t.apply(fill("b1", "x2", "15", "18", "15", "18", qty="15", seconds=1))  # cover 10, long 5
    assert seen[0].side == "short" and seen[0].pnl == 20
    p = t.positions()["AAPL"]
    assert p.qty == 5 and p.avg_price == 18


def test_fees_are_deducted_from_the_closed_trade(clock):
    seen = []
    t = mem(clock, on_trade_closed=seen.append)
    t.apply_order_report(report("b", status="new", qty="1"))
    t.apply_fill(FillReport("id", "b", "AAPL", Side.BUY, D(1), D(10), T0, "e1", fee=D("0.5")))
    t.apply_order_report(report("b", status="filled", filled="1", avg="10", qty="1"))
    t.apply_order_report(report("s", status="filled", filled="1", avg="11", qty="1", side="sell"))
    assert seen[0].fees == D("0.5") and seen[0].pnl == D("0.5")


# -- journal and restore --------------------------------------------------------------------------


def _mid_fill_events(cid):
    return [
        update("new", cid),
        fill(cid, "x1", "40", "10", "40", "10", seconds=1),
        fill(cid, "x2", "60", "11", "100", "10.6", seconds=2),
    ]


def test_restart_from_the_journal_after_a_crash_mid_fill(tmp_path, clock):
    path = tmp_path / "m.db"
    t = OrderTracker(Store.open(path), clock)
    cid = t.start(intent()).client_order_id
    ev = _mid_fill_events(cid)
    t.apply(ev[0])
    t.apply(ev[1])
    # kill -9: the process dies; nothing is closed. A new process restores from the file.
    t2 = OrderTracker.restore(Store.open(path), clock)
    o = t2.order(cid)
    assert o.status is S.PARTIALLY_FILLED and o.filled_qty == 40
    assert t2.positions()["AAPL"].qty == 40 and t2.last_event_time() == ev[1].timestamp
    t2.apply(ev[1])  # the gap fill redelivers what was already applied
    t2.apply(ev[2])
    ref = mem(clock)
    ref.start(intent())
    for e in ev:
        ref.apply(e)
    assert t2.order(cid).filled_qty == 100 and t2.order(cid).avg_price == D("10.6")
    assert t2.positions()["AAPL"].cost == ref.positions()["AAPL"].cost


def test_failed_write_applies_nothing_and_the_event_can_be_redelivered(
    tmp_path, clock, monkeypatch
):
    path = tmp_path / "m.db"
    store = Store.open(path)
    t = OrderTracker(store, clock)
    t.apply(update("new"))
    real = q.write_changes

    def crash(store_, ch, recorded_at=""):
        with store_.write() as cur:
            cur.execute(
                "INSERT INTO order_events (recorded_at, source, event, outcome, payload)"
                " VALUES ('x', 'stream', 'partial_fill', 'applied', '{}')"
            )
            raise OSError("disk I/O error")  # dies mid-transaction

    monkeypatch.setattr(q, "write_changes", crash)
    with pytest.raises(OSError):
        t.apply(fill("c1", "x1", "40", "10", "40", "10"))
    assert t.order("c1").filled_qty == 0  # memory reloaded from the committed truth
    assert [r["event"] for r in q.events(store)] == ["new"]
    monkeypatch.setattr(q, "write_changes", real)
    t.apply(fill("c1", "x1", "40", "10", "40", "10"))
    t3 = OrderTracker.restore(Store.open(path), clock)
    assert t3.order("c1").filled_qty == 40


def test_every_event_is_journaled_before_state(tmp_path, clock):
    store = Store.open(tmp_path / "m.db")
    t = OrderTracker(store, clock)
    for e in LIFECYCLES["fills"]:
        t.apply(e)
    rows = q.events(store)
    assert len(rows) == len(LIFECYCLES["fills"])
    assert [r["outcome"] for r in rows] == ["applied"] * 4 + ["unchanged", "applied", "unchanged"]


def test_batch_apply_writes_once_and_restores_the_same(tmp_path, clock):
    path = tmp_path / "m.db"
    t = OrderTracker(Store.open(path), clock)
    t.apply_many(LIFECYCLES["mixed"])
    t2 = OrderTracker.restore(Store.open(path), clock)
    a, b = t.order("c1"), t2.order("c1")
    assert (a.status, a.filled_qty, a.avg_price) == (b.status, b.filled_qty, b.avg_price)
    assert [f.fill_id for f in a.fills] == [f.fill_id for f in b.fills]


def test_closed_trade_survives_a_crash_between_commit_and_store(tmp_path, clock, monkeypatch):
    path = tmp_path / "m.db"
    store = Store.open(path)
    t = OrderTracker(store, clock)
    t.apply(fill("b", "x1", "1", "10", "1", "10", qty="1"))
    import mqd_cli.store.trades as trades_store

    monkeypatch.setattr(
        trades_store, "insert_closed_trade", lambda *a: (_ for _ in ()).throw(SystemExit("killed"))
    )
    with pytest.raises(SystemExit):
        t.apply(fill("s", "x2", "1", "12", "1", "12", qty="1", side="sell"))
    monkeypatch.undo()
    seen = []
    OrderTracker.restore(Store.open(path), clock, on_trade_closed=seen.append)
    assert [tr.pnl for tr in closed_trades(Store.open(path))] == [2] and len(seen) == 1


def test_refresh_picks_up_changes_journaled_by_another_process(tmp_path, clock):
    path = tmp_path / "m.db"
    loop = OrderTracker(Store.open(path), clock)
    loop.apply(update("new"))
    cron = OrderTracker.restore(Store.open(path), clock)
    cron.apply_order_report(report("c1", status="partially_filled", filled="5", avg="10"))
    assert loop.refresh() and loop.order("c1").filled_qty == 5
    assert not loop.refresh()


def test_last_event_time_tracks_the_newest_event(clock):
    t = mem(clock)
    t.apply(update("new", seconds=5))
    t.apply(update("new", seconds=2))
    assert t.last_event_time() == T0 + timedelta(seconds=5)
    assert Decimal(0) == t.net_traded()


# -- open-order index and forgetting finished orders ---------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(TradeEvent)), max_size=12))
def test_open_orders_index_always_equals_the_orders_whose_status_is_open(events):
    t = OrderTracker(None, BacktestClock(T0))
    started = t.start(intent()).client_order_id
    for i, ev in enumerate(events):
        t.apply(update(ev.value, "c2" if i % 2 else started, filled="0"))
    assert t.open_orders() == [o for o in t.orders() if o.is_open]


def test_forget_closed_drops_finished_orders_but_keeps_positions_and_net_traded(clock):
    t = mem(clock)
    buy = t.start(intent(qty="10")).client_order_id
    t.apply(update("fill", buy, filled="10", avg="5", exec_id="b1", price="5", fill_qty="10"))
    sell = t.start(intent(side="sell", qty="10")).client_order_id
    t.apply(update("new", sell, side="sell", qty="10"))
    net = t.net_traded()
    assert t.forget_closed() == 1
    assert t.order(buy) is None and t.order_by_broker_id(f"id-{buy}") is None
    assert (
        [o.client_order_id for o in t.orders()]
        == [sell]
        == [o.client_order_id for o in t.open_orders()]
    )
    assert t.positions()["AAPL"].qty == 10 and t.net_traded() == net
    t.apply(update("fill", sell, side="sell", filled="10", avg="6", exec_id="s1", price="6"))
    assert t.positions() == {} and t.net_traded() == 10
    assert t.forget_closed() == 1 and t.orders() == [] and t.net_traded() == 10


def test_forget_closed_before_keeps_orders_updated_since(clock):
    t = mem(clock)
    old = t.start(intent(qty="1")).client_order_id
    t.on_submit_failed(old, ValueError("422"), definitely_rejected=True)
    clock.advance(timedelta(minutes=10))
    recent = t.start(intent(qty="2")).client_order_id
    t.on_submit_failed(recent, ValueError("422"), definitely_rejected=True)
    assert t.forget_closed(before=T0 + timedelta(minutes=5)) == 1
    assert t.order(old) is None and t.order(recent) is not None


def test_forgotten_orders_stay_in_the_store_and_come_back_on_restore(tmp_path, clock):
    path = tmp_path / "m.db"
    t = OrderTracker(Store.open(path), clock, strategy="sma")
    cid = t.start(intent(qty="10")).client_order_id
    t.apply(update("fill", cid, filled="10", avg="5", exec_id="x1", price="5", fill_qty="10"))
    net = t.net_traded()
    assert t.forget_closed() == 1 and t.order(cid) is None
    again = OrderTracker.restore(Store.open(path), clock, strategy="sma")
    assert again.order(cid).status is S.FILLED and again.net_traded() == net
    assert again.start(intent(qty="10")).client_order_id.endswith("-2")  # sequence kept


def test_start_reuses_the_id_of_an_unanswered_intent_among_many_finished_orders(clock):
    t = mem(clock)
    for _ in range(50):
        cid = t.start(intent(qty="1")).client_order_id
        t.on_submit_failed(cid, ValueError("422"), definitely_rejected=True)
    first = t.start(intent(qty="7"))
    assert t.start(intent(qty="7")).client_order_id == first.client_order_id
    assert [o.client_order_id for o in t.open_orders()] == [first.client_order_id]
