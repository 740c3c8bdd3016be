"""Broker-held protective stops: distances, leg prices, the ATR and the [risk] settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli.config.loading import loads
from mqd_cli.errors import ConfigError
from mqd_cli.model import Bar, Side
from mqd_cli.trading.protective import AverageTrueRange, Distance, leg_prices, tick

D = Decimal


def test_a_distance_is_a_percentage_or_an_atr_multiple():
    assert Distance.parse("2%") == Distance(D(2), "%")
    assert Distance.parse(" 1.5 ATR ") == Distance(D("1.5"), "atr")
    assert Distance.parse("") is None
    assert str(Distance.parse("2.50%")) == "2.5%"


@pytest.mark.parametrize("text", ["2", "2 pct", "-1%", "0%", "0atr", "100%", "abc", "1e3%"])
def test_a_malformed_distance_is_refused_with_the_reason(text):
    with pytest.raises(ValueError):
        Distance.parse(text)


def test_a_long_entry_gets_a_stop_below_and_a_take_profit_above_in_cents():
    legs = leg_prices(Side.BUY, D("180.00"), Distance(D(2), "%"), Distance(D(3), "%"))
    assert legs is not None
    assert legs.stop_price == D("176.40") and legs.take_profit == D("185.40")


def test_a_short_entry_gets_its_stop_above_and_rounds_away_from_the_entry():
    legs = leg_prices(Side.SELL, D("100.003"), Distance(D("1.234"), "%"))
    assert legs is not None and legs.take_profit is None
    assert legs.stop_price == D("101.24")  # 101.237... rounded up, never tighter


def test_an_atr_stop_waits_for_the_atr():
    stop = Distance(D(2), "atr")
    assert leg_prices(Side.BUY, D(50), stop, atr=None) is None
    legs = leg_prices(Side.BUY, D(50), stop, atr=D("0.75"))
    assert legs is not None and legs.stop_price == D("48.50")


def test_a_stop_that_would_reach_zero_is_not_sent():
    assert leg_prices(Side.BUY, D("1.00"), Distance(D(5), "atr"), atr=D(1)) is None


@given(
    st.decimals(min_value=D("0.05"), max_value=D(5000), places=4),
    st.decimals(min_value=D("0.01"), max_value=D(50), places=2),
    st.sampled_from([Side.BUY, Side.SELL]),
)
def test_legs_sit_on_the_right_side_at_least_a_tick_away_on_the_tick(price, pct, side):
    legs = leg_prices(side, price, Distance(pct, "%"), Distance(pct, "%"))
    if legs is None:
        return
    stop, target = legs.stop_price, legs.take_profit
    assert target is not None
    for p in (stop, target):
        assert p > 0 and p == p.quantize(tick(price))
    t = tick(price)
    if side is Side.BUY:
        assert stop <= price - t and target >= price + t
        assert stop <= price * (1 - pct / 100)  # never tighter than asked
    else:
        assert stop >= price + t and target <= price - t
        assert stop >= price * (1 + pct / 100)


def _bar(i: int, high: str, low: str, close: str, symbol: str = "AAPL") -> Bar:
    at = datetime(2026, 1, 5, 14, 30, tzinfo=UTC) + timedelta(minutes=i)
    return Bar(symbol, at, D(close), D(high), D(low), D(close), D(100))


def test_the_atr_is_the_mean_true_range_of_the_last_bars_gaps_included():
    atr = AverageTrueRange(bars=2)
    atr.update(_bar(0, "10", "9", "9.5"))
    assert atr.value("AAPL") is None
    atr.update(_bar(1, "12", "11", "11.5"))  # gap up: true range 12 - 9.5
    assert atr.value("AAPL") == (D(1) + D("2.5")) / 2
    atr.update(_bar(2, "11.6", "11.4", "11.5"))
    assert atr.value("AAPL") == (D("2.5") + D("0.2")) / 2
    assert atr.value("MSFT") is None


def test_risk_settings_take_a_protective_stop_and_refuse_a_bad_one():
    risk = loads('[risk]\nprotective_stop = "2%"\ntake_profit = "3atr"\n').settings.risk
    assert risk.protective_stop == "2%" and risk.take_profit == "3atr"
    with pytest.raises(ConfigError, match="risk.protective_stop"):
        loads('[risk]\nprotective_stop = "2 pct"\n')
    with pytest.raises(ConfigError, match="needs risk.protective_stop"):
        loads('[risk]\ntake_profit = "4%"\n')


# -- the engine sends entries with legs the broker holds ------------------------------------------

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def _session(tmp_path, risk: str, closes: list[tuple[str, str, str, str]]):
    """An engine over the simulated exchange replaying ``closes`` (o, h, l, c) as AAPL's minute
    bars from 14:30, with ``risk`` added to [risk]."""
    from mqd_cli.factory import Services
    from mqd_cli.store.trades import insert_closed_trade
    from mqd_cli.symbols.sync import sync
    from tests.test_engine import Scripted

    data = tmp_path / "aapl.csv"
    rows = ["timestamp,open,high,low,close,volume,symbol"]
    for i, (o, h, lo, c) in enumerate(closes):
        rows.append(f"{(START + timedelta(minutes=i)).isoformat()},{o},{h},{lo},{c},100000,AAPL")
    data.write_text("\n".join(rows) + "\n")
    text = f"[sim]\npartial_fill_probability = 0.0\n[risk]\n{risk}\n"
    services = Services(loads(text).settings).backtest_session(START, data)
    clock, broker, store = services.clock, services.sim_broker, services.store
    sync(store, broker, clock)
    strategy = Scripted()
    protections = services.session_protections()
    events: list = []
    engine = services.engine(
        strategy,
        tracker=services.session_tracker(strategy.name),
        protections=protections,
        listener=events.append,
        trade_sink=lambda trade: insert_closed_trade(store, trade),
    )
    protections.notify = engine.on_protection
    broker.subscribe(engine.on_trade_update)
    return engine, strategy, broker, clock, events, closes


def _bars(engine, clock, strategy, closes, frm: int, to: int, plan=()):
    """Hand bars ``frm`` .. ``to`` - 1 to the engine; ``plan`` goes out on the first."""
    strategy.plan = list(plan)
    for i in range(frm, to):
        clock.advance(60)
        o, h, lo, c = (D(x) for x in closes[i])
        engine.on_bar(Bar("AAPL", START + timedelta(minutes=i), o, h, lo, c, D(1000)))


FLAT_THEN_DROP = (
    [("100", "100", "100", "100")] * 5
    + [("100", "100", "97", "97.5")]
    + [("97.5", "97.5", "97.5", "97.5")] * 4
)


def test_an_entry_goes_out_with_a_stop_leg_the_broker_fills_when_the_price_falls(tmp_path):
    from mqd_cli.model import OrderClass, OrderIntent, OrderStatus

    engine, strategy, broker, clock, events, closes = _session(
        tmp_path, 'protective_stop = "1%"', FLAT_THEN_DROP
    )
    entry = OrderIntent("AAPL", Side.BUY, qty=D(10), reason="entry")
    _bars(engine, clock, strategy, closes, 0, 2, [entry])
    [parent] = [o for o in broker.list_orders("all") if o.side is Side.BUY]
    assert parent.order_class is OrderClass.OTO
    legs = [o for o in engine.tracker.orders() if o.parent is not None]
    assert len(legs) == 1 and legs[0].stop_price == D("99.00") and legs[0].side is Side.SELL
    assert engine.ctx.position("AAPL") == D(10)
    _bars(engine, clock, strategy, closes, 2, 8)  # the drop crosses the stop at the broker
    assert engine.ctx.position("AAPL") == 0
    [trade] = [e.data["trade"] for e in events if e.kind == "trade"]
    assert trade.exit_reason == "stop_loss" and trade.qty == D(10)
    assert engine.tracker.order(legs[0].client_order_id).status is OrderStatus.FILLED


def test_a_strategy_exit_cancels_the_leg_first_and_closes_the_position_once(tmp_path):
    from mqd_cli.model import OrderIntent, OrderStatus

    flat = [("100", "100", "100", "100")] * 10
    engine, strategy, broker, clock, events, closes = _session(
        tmp_path, 'protective_stop = "1%"', flat
    )
    _bars(engine, clock, strategy, closes, 0, 2, [OrderIntent("AAPL", Side.BUY, qty=D(10))])
    [leg] = [o for o in engine.tracker.orders() if o.parent is not None]
    exit_ = OrderIntent("AAPL", Side.SELL, qty=D(10), reason="signal")
    _bars(engine, clock, strategy, closes, 2, 6, [exit_])
    assert engine.tracker.order(leg.client_order_id).status is OrderStatus.CANCELED
    assert engine.ctx.position("AAPL") == 0 and broker.list_positions() == []
    sells = [o for o in broker.list_orders("all") if o.side is Side.SELL]
    filled = [o for o in sells if o.status is OrderStatus.FILLED]
    assert len(filled) == 1 and filled[0].filled_qty == D(10)  # closed once, never short
    [trade] = [e.data["trade"] for e in events if e.kind == "trade"]
    assert trade.exit_reason == "signal"
    assert any("waits: canceling 1 protective leg" in e.message for e in events)


def test_with_a_take_profit_the_entry_is_a_bracket_and_one_leg_cancels_the_other(tmp_path):
    from mqd_cli.model import OrderClass, OrderIntent, OrderStatus

    rise = [("100", "100", "100", "100")] * 3 + [("100", "103", "100", "102.5")] * 4
    engine, strategy, broker, clock, events, closes = _session(
        tmp_path, 'protective_stop = "1%"\ntake_profit = "2%"', rise
    )
    _bars(engine, clock, strategy, closes, 0, 2, [OrderIntent("AAPL", Side.BUY, qty=D(5))])
    [parent] = [o for o in broker.list_orders("all") if o.side is Side.BUY]
    assert parent.order_class is OrderClass.BRACKET
    _bars(engine, clock, strategy, closes, 2, 6)
    legs = {o.reason: o for o in engine.tracker.orders() if o.parent is not None}
    assert legs["take_profit"].status is OrderStatus.FILLED
    assert legs["take_profit"].limit_price == D("102.00")
    assert legs["stop_loss"].status is OrderStatus.CANCELED
    [trade] = [e.data["trade"] for e in events if e.kind == "trade"]
    assert trade.exit_reason == "take_profit" and engine.ctx.position("AAPL") == 0


def test_an_atr_stop_refuses_entries_until_the_atr_is_known(tmp_path):
    from mqd_cli.model import OrderIntent

    flat = [("100", "101", "99", "100")] * 8
    engine, strategy, broker, clock, events, closes = _session(
        tmp_path, 'protective_stop = "2atr"\natr_bars = 3', flat
    )
    _bars(engine, clock, strategy, closes, 0, 1, [OrderIntent("AAPL", Side.BUY, qty=D(1))])
    assert engine.stats.refused_rules["risk:protective_stop"] == 1
    assert broker.list_orders("all") == []
    _bars(engine, clock, strategy, closes, 1, 4, [])
    _bars(engine, clock, strategy, closes, 4, 5, [OrderIntent("AAPL", Side.BUY, qty=D(1))])
    [leg] = [o for o in engine.tracker.orders() if o.parent is not None]
    assert leg.stop_price == D("96.00")  # 100 - 2 x ATR 2


def test_without_the_setting_entries_stay_simple(tmp_path):
    from mqd_cli.model import OrderClass, OrderIntent

    flat = [("100", "100", "100", "100")] * 4
    engine, strategy, broker, clock, events, closes = _session(tmp_path, "", flat)
    _bars(engine, clock, strategy, closes, 0, 2, [OrderIntent("AAPL", Side.BUY, qty=D(1))])
    [order] = broker.list_orders("all")
    assert order.order_class is OrderClass.SIMPLE and order.legs == ()


def test_shares_added_to_a_position_go_without_legs_with_a_warning(tmp_path):
    from mqd_cli.model import OrderClass, OrderIntent

    flat = [("100", "100", "100", "100")] * 6
    engine, strategy, broker, clock, events, closes = _session(
        tmp_path, 'protective_stop = "1%"', flat
    )
    _bars(engine, clock, strategy, closes, 0, 2, [OrderIntent("AAPL", Side.BUY, qty=D(5))])
    _bars(engine, clock, strategy, closes, 2, 4, [OrderIntent("AAPL", Side.BUY, qty=D(5))])
    buys = sorted(
        (o for o in broker.list_orders("all") if o.side is Side.BUY), key=lambda o: o.created_at
    )
    assert [o.order_class for o in buys] == [OrderClass.OTO, OrderClass.SIMPLE]
    assert engine.ctx.position("AAPL") == D(10)
    assert any("entries only" in e.message for e in events if e.kind == "warning")
