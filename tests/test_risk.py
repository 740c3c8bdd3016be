"""The pre-trade risk gate: every rule refuses with its numbers and allows at its boundary."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli.config.settings import RiskSettings
from mqd_cli.model import OrderIntent, OrderType, Side
from mqd_cli.trading.risk import RiskGate, RiskState

D = Decimal


def gate(**kw) -> RiskGate:
    base = dict(
        max_order_notional=D(10000),
        max_position_notional=D(25000),
        max_gross_exposure=D(100000),
        max_open_orders=5,
        check_buying_power=True,
    )
    base.update(kw)
    return RiskGate(RiskSettings(**base))


def check(
    g: RiskGate,
    intent: OrderIntent,
    *,
    price="100",
    positions=None,
    prices=None,
    open_orders=0,
    buying_power="1000000",
):
    return g.check(
        intent,
        price=D(price),
        positions=positions or {},
        prices=prices or {},
        open_orders=open_orders,
        buying_power=D(buying_power),
    )


def buy(qty="1", symbol="AAPL", **kw) -> OrderIntent:
    return OrderIntent(symbol, Side.BUY, qty=D(qty), **kw)


def sell(qty="1", symbol="AAPL", **kw) -> OrderIntent:
    return OrderIntent(symbol, Side.SELL, qty=D(qty), **kw)


def test_max_order_notional_refuses_above_and_allows_at_the_limit():
    g = gate()
    d = check(g, buy("125"))
    assert not d.allowed and d.rule == "max_order_notional"
    assert d.reason == "max_order_notional: order 12,500.00 > limit 10,000.00"
    assert check(g, buy("100")).allowed  # exactly 10,000.00


def test_notional_intents_are_valued_at_their_notional():
    g = gate()
    d = check(g, OrderIntent("AAPL", Side.BUY, notional=D("10000.01")))
    assert d.rule == "max_order_notional" and "10,000.01 > limit 10,000.00" in d.reason
    assert check(g, OrderIntent("AAPL", Side.BUY, notional=D("10000"))).allowed


def test_limit_buy_above_market_is_valued_at_its_limit_price():
    g = gate()
    intent = buy("100", type=OrderType.LIMIT, limit_price=D("101"))
    d = check(g, intent)
    assert d.rule == "max_order_notional" and "10,100.00" in d.reason


def test_max_position_notional_counts_the_position_after_the_order():
    g = gate()
    d = check(g, buy("60"), positions={"AAPL": D(200)}, prices={"AAPL": D(100)})
    assert d.rule == "max_position_notional"
    assert d.reason == "max_position_notional: AAPL position would be 26,000.00 > limit 25,000.00"
    assert check(g, buy("50"), positions={"AAPL": D(200)}).allowed  # exactly 25,000.00


def test_max_position_notional_applies_to_growing_shorts():
    g = gate()
    d = check(g, sell("60"), positions={"AAPL": D(-200)})
    assert d.rule == "max_position_notional"


def test_max_gross_exposure_sums_every_position_after_the_order():
    g = gate(max_gross_exposure=D(50000), max_order_notional=D(0))
    positions = {"MSFT": D(100), "TSLA": D(-100)}
    prices = {"MSFT": D(200), "TSLA": D(150)}  # 20,000 + 15,000 held
    d = check(g, buy("151"), positions=positions, prices=prices)
    assert d.rule == "max_gross_exposure"
    assert d.reason == "max_gross_exposure: gross exposure would be 50,100.00 > limit 50,000.00"
    assert check(g, buy("150"), positions=positions, prices=prices).allowed  # exactly 50,000


def test_max_gross_exposure_refuses_when_a_held_symbol_has_no_price():
    g = gate()
    d = check(g, buy("1"), positions={"MSFT": D(5)}, prices={})
    assert d.rule == "max_gross_exposure" and "no price for held symbol MSFT" in d.reason


def test_max_open_orders_counts_this_order():
    g = gate(max_open_orders=5)
    d = check(g, buy(), open_orders=5)
    assert d.rule == "max_open_orders" and d.reason == "max_open_orders: 5 orders open, limit 5"
    assert check(g, buy(), open_orders=4).allowed


def test_buying_power_refuses_buys_only():
    g = gate()
    d = check(g, buy("50"), buying_power="4999.99")
    assert d.rule == "buying_power"
    assert d.reason == "buying_power: order 5,000.00 > buying power 4,999.99"
    assert check(g, buy("50"), buying_power="5000").allowed
    assert check(g, sell("50"), buying_power="0").allowed  # a short sell is not a cash buy


def test_buying_power_check_can_be_switched_off():
    assert check(gate(check_buying_power=False), buy("50"), buying_power="0").allowed


def test_allowed_symbols_refuses_others_case_insensitively():
    g = gate(allowed_symbols=["aapl", "MSFT"])
    d = check(g, buy(symbol="TSLA"))
    assert d.rule == "allowed_symbols"
    assert d.reason == "allowed_symbols: TSLA is not in [risk] allowed_symbols (AAPL, MSFT)"
    assert check(g, buy(symbol="AAPL")).allowed


def test_zero_limits_switch_rules_off():
    g = gate(
        max_order_notional=D(0),
        max_position_notional=D(0),
        max_gross_exposure=D(0),
        max_open_orders=0,
    )
    assert check(g, buy("100000"), open_orders=999, buying_power="1e9").allowed


@pytest.mark.parametrize(
    "intent",
    [
        OrderIntent("AAPL", Side.BUY),
        OrderIntent("AAPL", Side.BUY, qty=D(0)),
        OrderIntent("AAPL", Side.BUY, qty=D(-1)),
        OrderIntent("AAPL", Side.UNKNOWN, qty=D(1)),
    ],
)
def test_invalid_intents_are_refused(intent):
    d = check(gate(), intent)
    assert not d.allowed and d.rule == "invalid_intent"


def test_no_price_is_refused():
    d = check(gate(), buy(), price="0")
    assert d.rule == "invalid_intent" and "no usable price" in d.reason


def test_reducing_orders_pass_limits_that_cap_risk():
    g = gate(allowed_symbols=["MSFT"], max_open_orders=1)
    positions = {"AAPL": D(1000)}  # 100,000 worth: far above every limit
    d = check(g, sell("1000"), positions=positions, open_orders=3, buying_power="0")
    assert d.allowed and d.reason == "reduces AAPL position 1000 -> 0"
    # Past zero is not reducing: the gate checks it like any new exposure.
    assert not check(g, sell("1001"), positions=positions).allowed


def test_reducing_state_allows_only_exits():
    g = gate()
    g.reduce_only("max drawdown lock")
    assert g.state is RiskState.REDUCING
    d = check(g, buy("1"))
    assert d.rule == "reducing"
    assert d.reason.startswith("reducing: only exits are allowed (max drawdown lock)")
    assert check(g, sell("1"), positions={"AAPL": D(5)}).allowed
    assert check(g, buy("5"), positions={"AAPL": D(-5)}).allowed  # covering a short
    assert not check(g, sell("6"), positions={"AAPL": D(5)}).allowed  # would flip short
    g.resume()
    assert g.state is RiskState.ACTIVE and check(g, buy("1")).allowed


def test_halted_refuses_everything_including_exits():
    g = RiskGate(RiskSettings(), halted=True)
    assert g.state is RiskState.HALTED
    d = check(g, sell("1"), positions={"AAPL": D(5)})
    assert not d.allowed and d.rule == "halted"
    assert d.reason == "halted: halted at start (--halt); no orders are sent"
    g.resume()
    assert check(g, sell("1"), positions={"AAPL": D(5)}).allowed


def test_halt_wins_over_reduce_only():
    g = gate()
    g.halt("operator")
    g.reduce_only("later")
    assert g.state is RiskState.HALTED


def test_kill_switch_file_halts_on_the_next_check(tmp_path):
    kill = tmp_path / "mqd.halt"
    g = gate(kill_switch_file=str(kill))
    assert check(g, buy()).allowed
    kill.touch()
    d = check(g, buy())
    assert d.rule == "halted" and f"kill switch file {kill} exists" in d.reason
    assert g.state is RiskState.HALTED
    # Deleting the file does not resume a running loop by itself...
    kill.unlink()
    assert not check(g, buy()).allowed
    # ...resume() does, and resume() while the file exists stays halted.
    kill.touch()
    g.resume()
    assert g.state is RiskState.HALTED
    kill.unlink()
    g.resume()
    assert check(g, buy()).allowed


@given(
    pos=st.integers(-50, 50),
    qty=st.integers(1, 60),
    side=st.sampled_from([Side.BUY, Side.SELL]),
)
def test_reducing_state_never_allows_an_order_that_grows_or_flips_a_position(pos, qty, side):
    g = gate(max_order_notional=D(0), max_position_notional=D(0), max_gross_exposure=D(0))
    g.reduce_only("test")
    d = check(
        g,
        OrderIntent("AAPL", side, qty=D(qty)),
        positions={"AAPL": D(pos)},
        prices={"AAPL": D(100)},
    )
    after = pos + (qty if side is Side.BUY else -qty)
    reduces = pos != 0 and abs(after) <= abs(pos) and (after == 0 or (after > 0) == (pos > 0))
    assert d.allowed == reduces
