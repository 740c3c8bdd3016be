"""Bracket, oco and oto orders on the simulated exchange (``brokers/sim/legs.py``): the legs'
life cycles, one-cancels-other, Alpaca's refusals, flat and nested listings, replacing a leg.

Prices are scripted minute bars from T0 (Monday 09:35 New York), so every fill is known: the
market is at 100 when the orders are sent. Alpaca's messages come from its docs and captured
answers (README, "Order classes in the emulator"); the tests of the emulator with alpaca-py and
of the tracker and reconcile with legs are in ``test_order_classes_emulator.py`` and
``test_order_classes_tracking.py``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqd_cli.brokers.errors import InsufficientFunds, OrderRejected
from mqd_cli.model import OrderClass, OrderStatus, OrderType, Side, TradeEvent
from tests.support import T0, make_sim, scripted

D = Decimal
S = OrderStatus
FLAT = ("100", "100.5", "99.5", "100")  # a quiet minute at 100


def market(*bars: tuple[str, str, str, str], **settings):
    """A simulated exchange whose AAPL minutes are ``FLAT`` then ``bars``."""
    return make_sim(scripted("AAPL", [FLAT, *bars, FLAT, FLAT]), **settings)


def bracket(sim, *, tp="105", sl="95", sl_limit=None, cls=OrderClass.BRACKET, **kw):
    kw.setdefault("time_in_force", "gtc")
    return sim.submit(
        order_class=cls,
        take_profit_limit_price=None if tp is None else D(tp),
        stop_loss_stop_price=None if sl is None else D(sl),
        stop_loss_limit_price=None if sl_limit is None else D(sl_limit),
        **kw,
    )


def legs_of(sim, parent_id):
    """(take-profit, stop-loss) of a bracket as the broker reports them now."""
    legs = sim.broker.get_order(parent_id).legs
    by_type = {leg.type: leg for leg in legs}
    tp = by_type.get(OrderType.LIMIT)
    sl = by_type.get(OrderType.STOP) or by_type.get(OrderType.STOP_LIMIT)
    return tp, sl


def position(sim, symbol="AAPL") -> Decimal:
    return sum((p.qty for p in sim.broker.list_positions() if p.symbol == symbol), D(0))


# -- bracket --------------------------------------------------------------------------------------


def test_bracket_legs_are_held_until_the_entry_fills_then_the_target_works_and_the_stop_waits():
    sim = market(("100", "100.2", "98.9", "99"))
    order = bracket(sim, type="limit", limit_price=D("99"))
    assert order.order_class is OrderClass.BRACKET and order.status is S.NEW
    tp, sl = legs_of(sim, order.id)
    assert (tp.status, sl.status) == (S.HELD, S.HELD)
    assert (tp.side, sl.side) == (Side.SELL, Side.SELL) and tp.qty == sl.qty == 10
    assert tp.limit_price == D("105") and (sl.type, sl.stop_price) == (OrderType.STOP, D("95"))
    assert tp.order_class is sl.order_class is OrderClass.BRACKET
    assert tp.client_order_id not in (order.client_order_id, sl.client_order_id)
    assert sim.kinds(tp.id) == sim.kinds(sl.id) == []  # held legs send no events

    sim.minutes(2)  # the 99 limit fills in the second minute
    assert sim.broker.get_order(order.id).status is S.FILLED
    tp, sl = legs_of(sim, order.id)
    assert (tp.status, sl.status) == (S.NEW, S.HELD)
    assert sim.kinds(tp.id) == ["new"] and sim.kinds(sl.id) == []
    assert position(sim) == 10


def test_bracket_take_profit_fill_cancels_the_stop_loss_leg():
    sim = market(("100", "101", "99.8", "100.5"), ("100.5", "106", "100.4", "105.5"))
    order = bracket(sim)
    tp, sl = legs_of(sim, order.id)
    sim.minutes(4)
    assert sim.kinds(tp.id) == ["new", "fill"] and sim.kinds(sl.id) == ["canceled"]
    tp, sl = legs_of(sim, order.id)
    assert (tp.status, tp.filled_avg_price) == (S.FILLED, D("105"))
    assert sl.status is S.CANCELED and sl.filled_qty == 0
    assert position(sim) == 0
    fill = next(e for e in sim.events if e.order.id == tp.id and e.event is TradeEvent.FILL)
    assert fill.order.side is Side.SELL and fill.position_qty == 0


def test_bracket_stop_trigger_makes_the_stop_new_cancels_the_take_profit_and_fills_the_stop():
    sim = market(("100", "100.1", "96", "96.5"), ("96.5", "96.6", "94", "94.5"))
    order = bracket(sim)
    tp, sl = legs_of(sim, order.id)
    sim.minutes(4)
    assert sim.kinds(sl.id) == ["new", "fill"] and sim.kinds(tp.id) == ["new", "canceled"]
    # the stop triggers before the take-profit is canceled, and fills after
    ids = [(e.order.id, e.event.value) for e in sim.events if e.order.id in (tp.id, sl.id)]
    assert ids[1:] == [(sl.id, "new"), (tp.id, "canceled"), (sl.id, "fill")]
    assert legs_of(sim, order.id)[1].filled_avg_price == D("95")
    assert position(sim) == 0


def test_a_stop_limit_leg_gapped_through_its_limit_rests_new_and_its_target_stays_canceled():
    sim = market(("93", "93.5", "92", "93"))  # gaps below both the stop and its limit
    order = bracket(sim, sl="95", sl_limit="94.5")
    sim.minutes(2)
    tp, sl = legs_of(sim, order.id)
    assert sl.type is OrderType.STOP_LIMIT and sl.status is S.NEW and sl.filled_qty == 0
    assert tp.status is S.CANCELED
    assert position(sim) == 10  # a stop-limit protects nothing below its limit
    sim.minutes(1)  # back at 100: the resting sell limit fills at the open
    sl = legs_of(sim, order.id)[1]
    assert (sl.status, sl.filled_avg_price) == (S.FILLED, D("100"))


def test_a_partial_take_profit_fill_shrinks_the_stop_loss_to_what_is_left():
    # At most 6 shares per order per minute: the entry fills 6 then 4, the take-profit 6, then
    # the stop triggers and closes the other 4.
    sim = market(
        ("100", "100.5", "99.5", "100"),
        ("100", "106", "99.9", "104"),
        ("104", "104.5", "94", "94.5"),
        liquidity=D(6),
    )
    order = bracket(sim)
    tp, sl = legs_of(sim, order.id)
    sim.minutes(1)
    assert legs_of(sim, order.id) == (tp, sl)  # the entry is 6/10 filled: the legs are held
    assert sim.broker.get_order(order.id).status is S.PARTIALLY_FILLED
    sim.minutes(2)
    tp, sl = legs_of(sim, order.id)
    assert (tp.status, tp.filled_qty) == (S.PARTIALLY_FILLED, 6)
    assert (sl.status, sl.qty) == (S.HELD, 4)
    sim.minutes(1)
    tp, sl = legs_of(sim, order.id)
    assert (tp.status, tp.filled_qty) == (S.CANCELED, 6)
    assert (sl.status, sl.filled_qty) == (S.FILLED, 4)
    assert position(sim) == 0


def test_canceling_a_bracket_entry_before_it_fills_cancels_its_held_legs():
    sim = market()
    order = bracket(sim, type="limit", limit_price=D("90"), tp="99", sl="85")
    tp, sl = legs_of(sim, order.id)
    sim.broker.cancel_order(order.id)
    assert sim.kinds(order.id)[-2:] == ["pending_cancel", "canceled"]
    assert sim.kinds(tp.id) == sim.kinds(sl.id) == ["canceled"]
    assert {leg.status for leg in sim.broker.get_order(order.id).legs} == {S.CANCELED}
    assert sim.broker.list_orders("open") == []


def test_canceling_one_leg_cancels_its_sibling_and_leaves_the_filled_entry():
    sim = market()
    order = bracket(sim)
    tp, sl = legs_of(sim, order.id)
    sim.broker.cancel_order(tp.id)
    assert sim.kinds(tp.id) == ["new", "pending_cancel", "canceled"]
    assert sim.kinds(sl.id) == ["canceled"]
    assert sim.broker.get_order(order.id).status is S.FILLED
    assert position(sim) == 10


def test_canceling_a_held_leg_before_the_entry_fills_cancels_the_entry_too():
    sim = market()
    order = bracket(sim, type="limit", limit_price=D("90"), tp="99", sl="85")
    _, sl = legs_of(sim, order.id)
    sim.broker.cancel_order(sl.id)
    assert sim.broker.get_order(order.id).status is S.CANCELED
    assert {leg.status for leg in sim.broker.get_order(order.id).legs} == {S.CANCELED}


def test_cancel_all_cancels_a_resting_bracket_with_one_row_per_order_of_it():
    sim = market()
    order = bracket(sim, type="limit", limit_price=D("90"), tp="99", sl="85")
    rows = sim.broker.cancel_all_orders()
    assert {r.order_id for r in rows} == {order.id, *(leg.id for leg in order.legs)}
    assert {(r.status, r.order.status) for r in rows} == {(200, S.CANCELED)}


def test_a_day_bracket_entry_expiring_unfilled_cancels_its_legs():
    sim = make_sim(scripted("AAPL", [FLAT] * 3), market_hours="nyse")
    order = bracket(sim, type="limit", limit_price=D("90"), tp="99", sl="85", time_in_force="day")
    sim.minutes(60 * 7)  # past the 16:00 close
    assert sim.broker.get_order(order.id).status is S.EXPIRED
    assert {leg.status for leg in sim.broker.get_order(order.id).legs} == {S.CANCELED}


def test_the_legs_hold_the_position_once_so_no_more_shares_can_be_sold():
    sim = market()
    bracket(sim)
    (p,) = sim.broker.list_positions()
    assert p.qty == 10 and p.qty_available == 0  # 10 held by two legs, counted once
    with pytest.raises(InsufficientFunds, match=r"requested: 1, available: 0"):
        sim.submit(side=Side.SELL, qty="1")


# -- oco and oto ----------------------------------------------------------------------------------


def long_ten(sim):
    sim.submit(qty="10")
    assert position(sim) == 10


def test_oco_is_the_take_profit_limit_with_a_held_stop_leg_working_at_once():
    sim = market(("100", "100.1", "94", "94.5"))
    long_ten(sim)
    oco = bracket(sim, cls=OrderClass.OCO, side=Side.SELL, type="limit")
    assert (oco.type, oco.limit_price, oco.status) == (OrderType.LIMIT, D("105"), S.NEW)
    (leg,) = oco.legs
    assert (leg.type, leg.side, leg.stop_price, leg.status) == (
        OrderType.STOP,
        Side.SELL,
        D("95"),
        S.HELD,
    )
    assert leg.order_class is OrderClass.OCO and leg.qty == 10
    (p,) = sim.broker.list_positions()
    assert p.qty_available == 0
    sim.minutes(2)
    assert sim.kinds(leg.id) == ["new", "fill"] and sim.kinds(oco.id)[-1] == "canceled"
    assert position(sim) == 0


def test_oco_take_profit_fill_cancels_its_stop_leg():
    sim = market(("100", "106", "99.9", "105.5"))
    long_ten(sim)
    oco = bracket(sim, cls=OrderClass.OCO, side=Side.SELL, type="limit")
    sim.minutes(2)
    assert sim.broker.get_order(oco.id).status is S.FILLED
    assert sim.kinds(oco.legs[0].id) == ["canceled"]
    assert position(sim) == 0


@pytest.mark.parametrize(
    ("leg", "kind"),
    [({"tp": "105", "sl": None}, OrderType.LIMIT), ({"tp": None, "sl": "95"}, OrderType.STOP)],
)
def test_an_oto_leg_is_held_until_the_entry_fills_then_new(leg, kind):
    sim = market()
    order = bracket(sim, cls=OrderClass.OTO, type="limit", limit_price=D("99.5"), **leg)
    (held,) = order.legs
    assert (held.type, held.status) == (kind, S.HELD)
    sim.minutes(2)
    (working,) = sim.broker.get_order(order.id).legs
    assert working.status is S.NEW and sim.kinds(held.id) == ["new"]


def test_an_oto_stop_fills_on_its_own_once_working():
    sim = market(("100", "100.1", "94", "94.5"))
    order = bracket(sim, cls=OrderClass.OTO, tp=None)
    sim.minutes(2)
    (stop,) = sim.broker.get_order(order.id).legs
    assert stop.status is S.FILLED and position(sim) == 0


# -- replacing a leg ------------------------------------------------------------------------------


def test_replacing_the_held_stop_leg_moves_its_stop_and_the_successor_stays_held_in_the_group():
    sim = market(("100", "100.1", "96.5", "96.8"))  # above the old stop, below the new one
    order = bracket(sim)
    tp, sl = legs_of(sim, order.id)
    new = sim.broker.replace_order(sl.id, stop_price=D("97"))
    assert (new.status, new.stop_price, new.replaces) == (S.HELD, D("97"), sl.id)
    assert new.order_class is OrderClass.BRACKET and new.type is OrderType.STOP
    assert sim.kinds(sl.id) == ["pending_replace", "replaced"]
    assert sim.kinds(new.id) == ["held"]
    assert {leg.id for leg in sim.broker.get_order(order.id).legs} == {tp.id, new.id}
    sim.minutes(2)
    assert sim.broker.get_order(new.id).status is S.FILLED
    assert sim.broker.get_order(tp.id).status is S.CANCELED
    assert position(sim) == 0


def test_replacing_the_take_profit_with_a_marketable_limit_closes_at_once_and_cancels_the_stop():
    sim = market()
    order = bracket(sim)
    tp, sl = legs_of(sim, order.id)
    new = sim.broker.replace_order(tp.id, limit_price=D("99"))
    assert new.replaces == tp.id and new.order_class is OrderClass.BRACKET
    assert sim.broker.get_order(new.id).status is S.FILLED
    assert sim.broker.get_order(sl.id).status is S.CANCELED
    assert position(sim) == 0


def test_replacing_a_bracket_entry_keeps_its_legs_with_the_successor():
    sim = market(("100", "100.2", "98.9", "99"))
    order = bracket(sim, type="limit", limit_price=D("90"), tp="99", sl="85")
    legs = {leg.id for leg in order.legs}
    new = sim.broker.replace_order(order.id, limit_price=D("99"))
    assert {leg.id for leg in new.legs} == legs
    sim.minutes(2)
    tp, sl = legs_of(sim, new.id)
    assert sim.broker.get_order(new.id).status is S.FILLED and tp.status is S.NEW


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"qty": D(5)}, "qty of an order with legs or of a leg cannot be replaced"),
        ({"limit_price": D("94")}, "stop orders must not have limit_price"),
    ],
)
def test_a_leg_replace_that_alpaca_refuses_is_a_422(change, message):
    sim = market()
    order = bracket(sim)
    _, sl = legs_of(sim, order.id)
    with pytest.raises(OrderRejected, match=message) as err:
        sim.broker.replace_order(sl.id, **change)
    assert (err.value.status, err.value.code) == (422, 40010001)


def test_a_limit_order_replaced_with_a_stop_price_is_refused_as_alpaca_does():
    sim = market()
    order = sim.submit(type="limit", limit_price=D("90"))
    with pytest.raises(OrderRejected, match="limit orders must not have stop_price"):
        sim.broker.replace_order(order.id, stop_price=D("89"))


# -- listings -------------------------------------------------------------------------------------


def test_flat_listings_show_every_leg_as_an_order_and_nested_ones_under_their_parent():
    sim = market()
    order = bracket(sim)
    tp, sl = legs_of(sim, order.id)
    flat = sim.broker.list_orders("all")
    assert {o.id for o in flat} == {order.id, tp.id, sl.id} and all(not o.legs for o in flat)
    (nested,) = sim.broker.list_orders("all", nested=True)
    assert nested.id == order.id and {leg.id for leg in nested.legs} == {tp.id, sl.id}
    # flat: each order by its own status; nested: a group is open while any of it is
    assert {o.id for o in sim.broker.list_orders("open")} == {tp.id, sl.id}
    assert [o.id for o in sim.broker.list_orders("closed")] == [order.id]
    assert [o.id for o in sim.broker.list_orders("open", nested=True)] == [order.id]
    assert sim.broker.list_orders("closed", nested=True) == []


def test_archiving_keeps_a_group_until_every_order_of_it_is_done():
    sim = market(("100", "106", "99.9", "105.5"))
    bracket(sim)
    assert sim.broker.archive_finished() == 0  # the entry filled, its legs still work
    sim.minutes(2)
    assert sim.broker.archive_finished() == 3


# -- Alpaca's refusals ----------------------------------------------------------------------------

BASE = {"tp": "105", "sl": "95"}


@pytest.mark.parametrize(
    ("kw", "code", "message"),
    [
        ({"tp": None}, 40010001, "bracket orders require take_profit.limit_price"),
        ({"sl": None}, 40010001, "bracket orders require stop_loss.stop_price"),
        ({"cls": OrderClass.OTO, "tp": None, "sl": None}, 40010001, "oto orders require either"),
        ({"cls": OrderClass.OTO}, 40010001, "oto orders take either take_profit or stop_loss"),
        ({"time_in_force": "ioc"}, 42210000, "bracket orders must be DAY or GTC orders"),
        (
            {
                "type": "limit",
                "limit_price": D("100"),
                "time_in_force": "day",
                "extended_hours": True,
            },
            42210000,
            "extended hours orders must be simple orders",
        ),
        ({"qty": "1.5", "time_in_force": "day"}, 42210000, "fractional orders must be simple"),
        ({"qty": "1.5"}, 40010001, "fractional orders must be DAY orders"),
        (
            {"qty": None, "notional": D("500"), "time_in_force": "day"},
            42210000,
            "fractional orders must be simple orders",
        ),
        (
            {"type": "trailing_stop", "trail_percent": D("1")},
            42210000,
            "bracket orders cannot be trailing_stop orders",
        ),
        ({"tp": "100"}, 42210000, r"take_profit.limit_price must be >= base_price \+ 0.01"),
        ({"sl": "100"}, 42210000, r"stop_loss.stop_price must be <= base_price - 0.01"),
        ({"tp": "95", "sl": "105"}, 42210000, "take_profit.limit_price must be > stop_loss"),
        ({"side": Side.SELL}, 42210000, "take_profit.limit_price must be < stop_loss"),
        ({"tp": "105.005"}, 42210000, "invalid take_profit.limit_price 105.005. sub-penny"),
        ({"sl": "-1"}, 40010001, "stop_loss.stop_price must be > 0"),
        ({"cls": OrderClass.OCO, "type": "market"}, 42210000, "oco orders must be limit orders"),
        ({"cls": OrderClass.OCO, "type": "limit"}, 42210000, "oco orders must be exit orders"),
        ({"cls": OrderClass.MLEG}, 42210000, "order_class mleg is not supported for AAPL"),
    ],
)
def test_advanced_orders_alpaca_refuses_get_its_status_code_and_message(kw, code, message):
    sim = market()
    args = {**BASE, **kw}
    with pytest.raises(OrderRejected, match=message) as err:
        bracket(sim, **args)
    assert (err.value.status, err.value.code) == (422, code)
    assert sim.broker.list_orders("all") == []


def test_a_leg_on_the_wrong_side_of_the_base_price_names_the_base_price_in_the_body():
    sim = market()
    with pytest.raises(OrderRejected) as err:
        bracket(sim, type="limit", limit_price=D("99"), tp="99")  # the base is the entry limit
    assert err.value.body == {
        "code": 42210000,
        "message": "take_profit.limit_price must be >= base_price + 0.01",
        "base_price": "99",
    }


def test_a_bracket_while_holding_the_symbol_is_refused_as_not_an_entry():
    sim = market()
    long_ten(sim)
    with pytest.raises(OrderRejected, match="bracket orders must be entry orders"):
        bracket(sim)


def test_an_oco_limit_price_other_than_its_take_profit_is_refused():
    sim = market()
    long_ten(sim)
    with pytest.raises(OrderRejected, match="limit_price must equal take_profit.limit_price"):
        bracket(sim, cls=OrderClass.OCO, side=Side.SELL, type="limit", limit_price=D("104"))


def test_crypto_orders_with_legs_are_refused():
    sim = make_sim()
    with pytest.raises(OrderRejected, match="crypto orders must be simple orders"):
        sim.submit(
            symbol="BTC/USD",
            qty="0.01",
            time_in_force="gtc",
            order_class=OrderClass.BRACKET,
            take_profit_limit_price=D("1000000"),
            stop_loss_stop_price=D("1"),
        )


def test_a_simple_order_ignores_leg_prices_as_alpaca_does():
    sim = market()
    order = sim.submit(take_profit_limit_price=D("105"), stop_loss_stop_price=D("95"))
    assert order.order_class is OrderClass.SIMPLE and order.legs == ()


# -- one of two siblings, on any path -------------------------------------------------------------


@st.composite
def price_paths(draw):
    """Minute bars from 100 in cent steps: (open, high, low, close) strings."""
    bars, price = [], 10_000
    for _ in range(draw(st.integers(1, 12))):
        close = max(100, price + draw(st.integers(-400, 400)))
        high = max(price, close) + draw(st.integers(0, 300))
        low = max(50, min(price, close) - draw(st.integers(0, 300)))
        bars.append(tuple(str(D(c) / 100) for c in (price, high, low, close)))
        price = close
    return bars


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=price_paths(),
    tp=st.integers(1, 600),
    sl=st.integers(1, 600),
    liquidity=st.sampled_from([0, 3, 7]),
    stop_limit=st.booleans(),
)
def test_at_most_one_sibling_leg_fills_and_the_position_follows_the_fills(
    path, tp, sl, liquidity, stop_limit
):
    sim = make_sim(scripted("AAPL", [FLAT, *path, FLAT]), liquidity=D(liquidity))
    stop = D(10_000 - sl) / 100
    order = bracket(
        sim,
        tp=str(D(10_000 + tp) / 100),
        sl=str(stop),
        sl_limit=str(stop - D("0.5")) if stop_limit else None,
    )
    sim.minutes(len(path) + 1)
    entry = sim.broker.get_order(order.id)
    tp_leg, sl_leg = legs_of(sim, order.id)
    filled = [leg for leg in (tp_leg, sl_leg) if leg.status is S.FILLED]
    assert len(filled) <= 1
    closed = tp_leg.filled_qty + sl_leg.filled_qty
    assert closed <= entry.filled_qty
    assert position(sim) == entry.filled_qty - closed
    if filled:
        (other,) = [leg for leg in (tp_leg, sl_leg) if leg is not filled[0]]
        assert other.status is S.CANCELED and position(sim) == 0
    if entry.status is not S.FILLED:  # legs wait for the whole entry
        assert tp_leg.status is sl_leg.status is S.HELD and closed == 0
    if sl_leg.filled_qty:  # the stop fills only after it triggered, which cancels the target
        assert tp_leg.status is S.CANCELED
    fills = [f for f in sim.broker.fills if f.symbol == "AAPL"]
    assert sum(f.qty if f.side is Side.BUY else -f.qty for f in fills) == position(sim)
    assert min(f.timestamp for f in fills) >= T0
