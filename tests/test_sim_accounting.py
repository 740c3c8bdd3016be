"""SimBroker positions, cash, equity and buying power: exact Decimal arithmetic from fills."""

from __future__ import annotations

from decimal import Decimal

from mqd_cli.model import PositionSide, Side
from tests.support import make_sim, scripted

D = Decimal
# open 100, then 110, then 90, then 95 (each bar flat, so the fill price is the open)
STEPS = [("100", "100", "100", "100"), ("110", "110", "110", "110"), ("90", "90", "90", "90")]
STEPS += [("95", "95", "95", "95")] * 3


def test_buy_moves_cash_by_qty_times_price_plus_fee():
    sim = make_sim(scripted("AAPL", STEPS), fee_per_share=D("0.005"))
    sim.submit(qty="10")
    account = sim.broker.get_account()
    assert account.cash == D(100000) - D(1000) - D("0.05")
    assert account.long_market_value == D(1000)
    assert account.equity == D(100000) - D("0.05")
    assert sim.broker.fees_paid == D("0.05")
    assert sim.broker.fills[-1].fee == D("0.05")


def test_position_average_entry_and_unrealized_pl_follow_the_price():
    sim = make_sim(scripted("AAPL", STEPS))
    sim.submit(qty="10")
    sim.minutes(1)
    sim.submit(qty="10")  # at 110
    pos = sim.broker.get_position("AAPL")
    assert (pos.qty, pos.avg_entry_price, pos.cost_basis) == (D(20), D(105), D(2100))
    assert pos.market_value == D(2200) and pos.unrealized_pl == D(100)
    assert pos.side is PositionSide.LONG and pos.current_price == D(110)
    sim.minutes(1)  # 90
    pos = sim.broker.get_position("AAPL")
    assert pos.unrealized_pl == D(-300)
    assert sim.broker.get_account().equity == D(100000) - D(300)


def test_partial_close_realizes_pl_and_keeps_the_average():
    sim = make_sim(scripted("AAPL", STEPS))
    sim.submit(qty="10")  # 100
    sim.minutes(1)
    sim.submit(side=Side.SELL, qty="4")  # 110
    pos = sim.broker.get_position("AAPL")
    assert (pos.qty, pos.avg_entry_price, pos.cost_basis) == (D(6), D(100), D(600))
    assert sim.broker.realized_pl == D(40)
    assert sim.broker.get_account().cash == D(100000) - D(1000) + D(440)


def test_short_sale_credits_cash_and_shows_a_negative_market_value():
    sim = make_sim(scripted("AAPL", STEPS))
    sim.submit(side=Side.SELL, qty="10")  # short at 100
    pos = sim.broker.get_position("AAPL")
    assert pos.qty == D(-10) and pos.side is PositionSide.SHORT
    sim.minutes(2)  # 90
    account = sim.broker.get_account()
    assert account.cash == D(101000)
    assert account.short_market_value == D(-900)
    assert account.equity == D(100100)
    buy = sim.submit(qty="10")  # cover at 90
    assert buy.raw["position_intent"] == "buy_to_close"
    assert sim.broker.list_positions() == []
    assert sim.broker.realized_pl == D(100)
    assert sim.broker.get_account().cash == D(100100)


def test_fill_events_report_the_position_after_each_fill():
    sim = make_sim(scripted("AAPL", STEPS))
    sim.submit(qty="10")
    sim.submit(side=Side.SELL, qty="10")
    sim.submit(side=Side.SELL, qty="3")
    assert [e.position_qty for e in sim.events if e.event.is_fill] == [D(10), D(0), D(-3)]


def test_buying_power_reg_t_is_twice_equity_less_initial_margin():
    sim = make_sim(scripted("AAPL", STEPS))
    assert sim.broker.get_account().buying_power == D(200000)
    sim.submit(qty="100")  # 10,000 long -> 5,000 initial margin
    account = sim.broker.get_account()
    assert account.initial_margin == D(5000)
    assert account.buying_power == (account.equity - D(5000)) * 2 == D(190000)


def test_buying_power_of_a_cash_account_is_cash():
    sim = make_sim(scripted("AAPL", STEPS), multiplier=1)
    sim.submit(qty="100")
    account = sim.broker.get_account()
    assert account.buying_power == account.cash == D(90000)
    assert not account.shorting_enabled


def test_buying_power_with_multiplier_four_uses_maintenance_margin():
    sim = make_sim(scripted("AAPL", STEPS), multiplier=4)
    sim.submit(qty="100")
    account = sim.broker.get_account()
    assert account.maintenance_margin == D(3000)
    assert account.buying_power == (account.equity - D(3000)) * 4


def test_crypto_positions_are_named_with_or_without_the_slash():
    sim = make_sim()
    sim.submit(symbol="BTC/USD", qty="0.0125", time_in_force="gtc")
    assert sim.broker.get_position("BTCUSD").qty == D("0.0125")
    assert sim.broker.get_position("btc/usd").symbol == "BTC/USD"


def test_close_position_flattens_with_a_market_order():
    sim = make_sim(scripted("AAPL", STEPS))
    sim.submit(qty="7")
    order = sim.broker.close_position("AAPL")
    assert (order.side, order.qty) == (Side.SELL, D(7))
    assert sim.broker.list_positions() == []


def test_last_equity_is_the_equity_when_the_new_york_day_rolled():
    from datetime import timedelta

    sim = make_sim(scripted("AAPL", STEPS))
    sim.submit(qty="10")
    assert sim.broker.get_account().last_equity == D(100000)
    sim.clock.advance(timedelta(days=1))
    sim.broker.step()
    assert sim.broker.get_account().last_equity == sim.broker.get_account().equity
