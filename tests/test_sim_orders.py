"""SimBroker matching: each order type against scripted bars, life cycles and their events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from mqd_cli.brokers.errors import NotFound, OrderRejected
from mqd_cli.model import OrderStatus, Side, TradeEvent
from tests.support import MINUTE, T0, make_sim, scripted

D = Decimal

FLAT_THEN_DIP = [
    ("100.00", "100.20", "99.90", "100.10"),  # 14:35
    ("100.10", "100.30", "99.40", "99.60"),  # 14:36: dips to 99.40
    ("99.60", "99.80", "98.70", "98.90"),  # 14:37: dips to 98.70
    ("98.90", "99.10", "98.80", "99.00"),  # 14:38
    ("99.00", "101.50", "98.95", "101.20"),  # 14:39: rallies to 101.50
    ("101.20", "101.30", "101.00", "101.10"),  # 14:40
]


def test_market_buy_fills_at_the_price_of_the_submission_moment():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    order = sim.submit(qty="10")
    assert order.status is OrderStatus.NEW
    assert sim.kinds() == ["pending_new", "new", "fill"]
    fill = sim.events[-1]
    assert (fill.price, fill.qty, fill.position_qty) == (D("100.00"), D(10), D(10))
    assert fill.timestamp == T0
    assert sim.broker.get_order(order.id).filled_avg_price == D("100.00")


def test_limit_buy_rests_until_a_bar_low_reaches_it_and_fills_at_the_limit():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    order = sim.submit(type="limit", limit_price="99.00", time_in_force="gtc")
    assert sim.kinds(order.id) == ["pending_new", "new"]
    assert sim.minutes(2) == []  # bar 14:35 low 99.90, bar 14:36 low 99.40
    (fill,) = sim.minutes(1)  # bar 14:37 low 98.70
    assert fill.event is TradeEvent.FILL
    assert fill.price == D("99.00")
    assert fill.timestamp == T0 + 3 * MINUTE  # the end of the bar it filled in


def test_limit_buy_above_the_market_fills_at_once_at_the_market_price():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    sim.submit(type="limit", limit_price="105.00")
    assert sim.events[-1].event is TradeEvent.FILL
    assert sim.events[-1].price == D("100.00")


def test_limit_sell_fills_when_the_high_reaches_it():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    sim.submit(qty="5")
    order = sim.submit(side=Side.SELL, qty="5", type="limit", limit_price="101.00")
    fills = [e for e in sim.minutes(5) if e.order.id == order.id]
    assert [(f.event.value, f.price, f.position_qty) for f in fills] == [
        ("fill", D("101.00"), D(0))
    ]
    assert fills[0].timestamp == T0 + 5 * MINUTE


def test_stop_sell_triggers_on_the_low_and_fills_at_the_stop():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    sim.submit(qty="10")
    order = sim.submit(side=Side.SELL, type="stop", stop_price="99.50", time_in_force="gtc")
    assert sim.minutes(1) == []
    (fill,) = sim.minutes(1)
    assert (fill.order.id, fill.price) == (order.id, D("99.50"))


def test_stop_sell_below_a_gap_down_fills_at_the_open():
    bars = scripted("AAPL", [("100", "100", "100", "100"), ("97", "97.5", "96.8", "97")])
    sim = make_sim(bars)
    sim.submit(qty="10")
    sim.submit(side=Side.SELL, type="stop", stop_price="99.00", time_in_force="gtc")
    assert sim.minutes(1) == []
    (fill,) = sim.minutes(1)
    assert fill.price == D("97")


def test_stop_buy_triggers_on_the_high():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    sim.submit(type="stop", stop_price="101.00", time_in_force="gtc")
    fills = sim.minutes(6)
    assert [(f.event.value, f.price) for f in fills] == [("fill", D("101.00"))]
    assert fills[0].timestamp == T0 + 5 * MINUTE


def test_stop_limit_buy_triggers_then_waits_for_its_limit():
    bars = scripted(
        "AAPL",
        [
            ("100", "100", "100", "100"),
            ("100", "102.00", "100", "101.90"),  # triggers at 101.00 -> within limit 101.50
        ],
    )
    sim = make_sim(bars)
    order = sim.submit(
        type="stop_limit", stop_price="101.00", limit_price="101.50", time_in_force="gtc"
    )
    (fill,) = sim.minutes(2)
    assert (fill.order.id, fill.price) == (order.id, D("101.00"))


def test_stop_limit_triggered_above_its_limit_rests_as_a_limit():
    bars = scripted(
        "AAPL",
        [
            ("100", "100", "100", "100"),
            ("103", "103.5", "102.8", "103"),  # gaps over the stop and the limit
            ("103", "103.2", "102.9", "103"),
            ("102", "102.2", "101.2", "101.5"),  # comes back through the limit
        ],
    )
    sim = make_sim(bars)
    order = sim.submit(
        type="stop_limit", stop_price="101.00", limit_price="101.50", time_in_force="gtc"
    )
    assert sim.minutes(3) == []
    (fill,) = sim.minutes(1)
    assert (fill.order.id, fill.price) == (order.id, D("101.50"))


def test_trailing_stop_sell_follows_the_high_water_mark():
    bars = scripted(
        "AAPL",
        [
            ("100", "100", "100", "100"),
            ("100", "105", "100", "104.5"),  # hwm 105 -> stop 103
            ("104.5", "104.8", "103.5", "104"),  # stays above 103
            ("104", "104", "102.5", "102.8"),  # breaks 103
        ],
    )
    sim = make_sim(bars)
    sim.submit(qty="10")
    order = sim.submit(
        side=Side.SELL, qty="10", type="trailing_stop", trail_price="2.00", time_in_force="gtc"
    )
    assert sim.minutes(3) == []
    report = sim.broker.get_order(order.id)
    assert (report.hwm, report.stop_price) == (D("105"), D("103.00"))
    (fill,) = sim.minutes(1)
    assert fill.price == D("103.00")


def test_trailing_stop_percent_buy_follows_the_low():
    bars = scripted(
        "AAPL",
        [("100", "100", "100", "100"), ("100", "100", "90", "91"), ("91", "95", "91", "94")],
    )
    sim = make_sim(bars)
    sim.submit(type="trailing_stop", trail_percent="5", time_in_force="gtc")
    assert sim.minutes(2) == []
    (fill,) = sim.minutes(1)
    assert fill.price == D("94.50")  # low-water 90 + 5 %


def test_slippage_moves_market_fills_against_the_taker_on_valid_ticks():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP), slippage_bps=D("7"))
    sim.submit(qty="1")
    assert sim.events[-1].price == D("100.07")
    sim.submit(side=Side.SELL, qty="1")
    assert sim.events[-1].price == D("99.93")


def test_liquidity_caps_each_bar_so_a_large_order_fills_in_parts():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP), liquidity=D(100))
    order = sim.submit(qty="250")
    sim.minutes(3)
    fills = [e for e in sim.events if e.order.id == order.id and e.event.is_fill]
    assert [(f.event.value, f.qty, f.position_qty) for f in fills] == [
        ("partial_fill", D(100), D(100)),
        ("partial_fill", D(100), D(200)),
        ("fill", D(50), D(250)),
    ]
    assert fills[0].order.status is OrderStatus.PARTIALLY_FILLED
    assert fills[0].order.filled_qty == D(100)
    assert len({f.execution_id for f in fills}) == 3
    final = sim.broker.get_order(order.id)
    assert final.filled_qty == D(250)
    expected = (D(100) * D("100.00") + D(100) * D("100.10") + D(50) * D("99.60")) / 250
    assert final.filled_avg_price == expected


def test_partial_fill_probability_one_always_splits_the_first_fill():
    sim = make_sim(partial_fill_probability=1.0)
    order = sim.submit(qty="100")
    first = [e for e in sim.events if e.event.is_fill][0]
    assert first.event is TradeEvent.PARTIAL_FILL
    assert D(10) <= first.qty <= D(90) and first.qty == first.qty.to_integral_value()
    sim.minutes(30)
    assert sim.broker.get_order(order.id).status is OrderStatus.FILLED


def test_ioc_cancels_what_it_cannot_fill_at_once():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP), liquidity=D(30))
    order = sim.submit(qty="50", time_in_force="ioc")
    assert sim.kinds(order.id) == ["pending_new", "new", "partial_fill", "canceled"]
    final = sim.broker.get_order(order.id)
    assert (final.status, final.filled_qty) == (OrderStatus.CANCELED, D(30))


def test_unmarketable_ioc_limit_is_canceled_without_a_fill():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    order = sim.submit(type="limit", limit_price="90.00", time_in_force="ioc")
    assert sim.kinds(order.id) == ["pending_new", "new", "canceled"]


def test_fok_larger_than_the_liquidity_is_canceled_whole():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP), liquidity=D(30))
    order = sim.submit(qty="50", time_in_force="fok")
    assert sim.kinds(order.id) == ["pending_new", "new", "canceled"]
    assert sim.broker.list_positions() == []
    small = sim.submit(qty="30", time_in_force="fok")
    assert sim.kinds(small.id)[-1] == "fill"


def test_cancel_emits_pending_cancel_then_canceled():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    order = sim.submit(type="limit", limit_price="50.00", time_in_force="gtc")
    sim.broker.cancel_order(order.id)
    assert sim.kinds(order.id) == ["pending_new", "new", "pending_cancel", "canceled"]
    assert sim.events[-1].order.status is OrderStatus.CANCELED


def test_cancel_of_a_filled_order_is_422_already_filled():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    order = sim.submit()
    with pytest.raises(OrderRejected) as caught:
        sim.broker.cancel_order(order.id)
    err = caught.value
    assert (err.status, err.code) == (422, 42210000)
    assert err.message == 'order is already in "filled" state'
    assert err.body == {"code": 42210000, "message": 'order is already in "filled" state'}


def test_replace_emits_pending_replace_replaced_then_new_and_links_both_orders():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    old = sim.submit(type="limit", limit_price="50.00", time_in_force="gtc")
    sim.events.clear()
    new = sim.broker.replace_order(old.id, qty=D(20), limit_price=D("99.00"))
    assert [(e.event.value, e.order.id) for e in sim.events] == [
        ("pending_replace", old.id),
        ("replaced", old.id),
        ("new", new.id),
    ]
    assert sim.events[1].order.replaced_by == new.id
    assert new.replaces == old.id and new.qty == D(20) and new.limit_price == D("99.00")
    assert sim.broker.get_order(old.id).status is OrderStatus.REPLACED
    (fill,) = sim.minutes(3)
    assert (fill.order.id, fill.price, fill.qty) == (new.id, D("99.00"), D(20))


def test_replace_of_a_replaced_order_is_422():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    old = sim.submit(type="limit", limit_price="50.00", time_in_force="gtc")
    sim.broker.replace_order(old.id, limit_price=D("51.00"))
    with pytest.raises(OrderRejected) as caught:
        sim.broker.replace_order(old.id, limit_price=D("52.00"))
    assert caught.value.message == 'order is already in "replaced" state'


def test_replace_of_a_partially_filled_order_keeps_what_was_left():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP), liquidity=D(4))
    old = sim.submit(qty="10", type="limit", limit_price="100.05", time_in_force="gtc")
    assert sim.broker.get_order(old.id).filled_qty == D(4)
    new = sim.broker.replace_order(old.id, limit_price=D("50.00"))
    assert new.qty == D(6)


def test_cancel_all_cancels_working_orders_only():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    filled = sim.submit()
    a = sim.submit(type="limit", limit_price="50.00", time_in_force="gtc")
    b = sim.submit(type="limit", limit_price="51.00", time_in_force="gtc")
    rows = sim.broker.cancel_all_orders()
    assert [(r.order_id, r.status) for r in rows] == [(a.id, 200), (b.id, 200)]
    assert rows[0].order.status is OrderStatus.CANCELED
    assert sim.broker.get_order(filled.id).status is OrderStatus.FILLED


def test_step_is_idempotent_while_the_clock_stands_still():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP), liquidity=D(3))
    sim.submit(qty="10", type="limit", limit_price="100.05", time_in_force="gtc")
    assert sim.broker.step() == []
    sim.clock.advance(timedelta(seconds=20))  # same bar: nothing new to match
    assert sim.broker.step() == []
    assert sim.minutes(1) == []  # bar 14:35 already gave its 3; 14:36 opens above the limit
    # 14:36 (its low) and the open of 14:37 each give 3 more
    assert [e.qty for e in sim.minutes(1) if e.event.is_fill] == [D(3), D(3)]


def test_without_auto_step_orders_wait_for_step():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    sim.broker.auto_step = False
    order = sim.submit()
    assert sim.kinds() == ["pending_new", "new"]
    events = sim.broker.step()
    assert [e.event.value for e in events] == ["fill"]
    assert sim.broker.step() == []
    assert sim.broker.get_order(order.id).status is OrderStatus.FILLED


def test_unsubscribe_stops_the_callbacks():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    seen = []
    stop = sim.broker.subscribe(seen.append)
    sim.submit()
    stop()
    sim.submit()
    assert [e.event.value for e in seen] == ["pending_new", "new", "fill"]


# -- market hours ---------------------------------------------------------------------------------

SATURDAY = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)
MONDAY_OPEN = datetime(2026, 1, 12, 14, 30, tzinfo=UTC)


def test_under_nyse_hours_an_order_off_hours_is_accepted_then_new_and_filled_at_the_open():
    sim = make_sim(start=SATURDAY, market_hours="nyse")
    order = sim.submit()
    assert order.status is OrderStatus.ACCEPTED
    assert sim.kinds() == ["accepted"]
    sim.clock.advance_to(MONDAY_OPEN + timedelta(seconds=30))
    events = sim.broker.step()
    assert [e.event.value for e in events] == ["new", "fill"]
    assert events[0].timestamp == MONDAY_OPEN
    assert events[1].price == sim.broker.prices.price_at("AAPL", MONDAY_OPEN)


def test_under_nyse_hours_a_day_order_expires_at_the_close():
    start = datetime(2026, 1, 5, 20, 50, tzinfo=UTC)  # 15:50 New York
    sim = make_sim(start=start, market_hours="nyse")
    order = sim.submit(type="limit", limit_price="1.00")
    sim.clock.advance(timedelta(minutes=20))
    events = sim.broker.step()
    assert [e.event.value for e in events] == ["expired"]
    assert events[0].timestamp == datetime(2026, 1, 5, 21, 0, tzinfo=UTC)
    assert sim.broker.get_order(order.id).expired_at == events[0].timestamp


def test_under_nyse_hours_gtc_survives_the_close_and_crypto_trades_at_night():
    sim = make_sim(start=SATURDAY, market_hours="nyse")
    sim.submit(symbol="BTC/USD", qty="0.01", time_in_force="gtc")
    assert sim.kinds() == ["pending_new", "new", "fill"]


def test_under_nyse_hours_opg_fills_at_the_open_and_cls_at_the_close():
    sim = make_sim(start=SATURDAY, market_hours="nyse")
    opg = sim.submit(time_in_force="opg")
    cls = sim.submit(time_in_force="cls", qty="3")
    sim.clock.advance_to(datetime(2026, 1, 12, 21, 5, tzinfo=UTC))
    sim.broker.step()
    opg_fill = next(e for e in sim.events if e.order.id == opg.id and e.event.is_fill)
    cls_fill = next(e for e in sim.events if e.order.id == cls.id and e.event.is_fill)
    assert opg_fill.timestamp == MONDAY_OPEN
    assert cls_fill.timestamp == datetime(2026, 1, 12, 21, 0, tzinfo=UTC)
    assert cls_fill.price == sim.broker.prices.price_at("AAPL", cls_fill.timestamp)


def test_under_nyse_hours_an_unfilled_opg_limit_expires_after_the_open():
    sim = make_sim(start=SATURDAY, market_hours="nyse")
    order = sim.submit(time_in_force="opg", type="limit", limit_price="1.00")
    sim.clock.advance_to(MONDAY_OPEN + timedelta(minutes=5))
    sim.broker.step()
    assert sim.kinds(order.id) == ["accepted", "new", "expired"]


def test_always_open_market_never_expires_day_orders():
    sim = make_sim(start=SATURDAY)
    order = sim.submit(type="limit", limit_price="1.00")
    assert order.status is OrderStatus.NEW
    sim.clock.advance(timedelta(days=3))
    sim.broker.step()
    assert sim.broker.get_order(order.id).status is OrderStatus.NEW
    assert sim.broker.get_clock().is_open


def test_clock_reports_closed_on_a_weekend_under_nyse_hours():
    sim = make_sim(start=SATURDAY, market_hours="nyse")
    clock = sim.broker.get_clock()
    assert not clock.is_open
    assert clock.next_open == MONDAY_OPEN


def test_long_clock_jump_catches_up_in_time_order():
    sim = make_sim()
    order = sim.submit(type="limit", limit_price="150.00", time_in_force="gtc")
    sim.clock.advance(timedelta(days=20))
    sim.broker.step()
    events = [e for e in sim.events if e.order.id == order.id]
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert all(e.timestamp <= sim.clock.now() for e in events)


def test_order_events_carry_position_intent():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    buy = sim.submit()
    sell = sim.submit(side=Side.SELL)
    assert buy.raw["position_intent"] == "buy_to_open"
    assert sell.raw["position_intent"] == "sell_to_close"


def test_events_are_in_time_order_across_symbols():
    sim = make_sim()
    sim.submit(symbol="AAPL", type="limit", limit_price="176.00", time_in_force="gtc")
    sim.submit(symbol="MSFT", type="limit", limit_price="430.00", time_in_force="gtc")
    sim.clock.advance(timedelta(hours=6))
    events = sim.broker.step()
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)


def test_archive_finished_keeps_working_orders_and_client_ids_stay_taken():
    sim = make_sim(scripted("AAPL", FLAT_THEN_DIP))
    filled = sim.submit(qty="10", client_order_id="a-1")
    resting = sim.submit(
        type="limit", limit_price="99.00", time_in_force="gtc", client_order_id="a-2"
    )
    cash = sim.broker.get_account().cash
    assert sim.broker.archive_finished() == 1
    assert [o.id for o in sim.broker.list_orders("all")] == [resting.id]
    with pytest.raises(NotFound, match="order not found"):
        sim.broker.get_order(filled.id)
    with pytest.raises(OrderRejected, match="client_order_id must be unique"):
        sim.submit(qty="1", client_order_id="a-1")
    assert sim.broker.get_account().cash == cash
    assert sim.broker.get_position("AAPL").qty == D(10)
    (fill,) = sim.minutes(3)  # the resting order still trades after the archive
    assert fill.order.id == resting.id and fill.event is TradeEvent.FILL
    assert sim.broker.archive_finished() == 1 and sim.broker.list_orders("all") == []
