"""``EquityHistory``: the simulated account's equity at every minute, for the portfolio history.

The reference is the account itself: a second, identical market stepped minute by minute, whose
``account.totals(t)`` at each minute is what the history must hold for that minute however
large the jumps it was recorded in.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqd_cli.brokers.sim.history import MINUTE, EquityHistory, day_close
from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.model import OrderIntent, OrderType, Side, TimeInForce
from tests.support import T0, make_sim

ORDER = st.tuples(
    st.sampled_from(["AAPL", "MSFT", "BTC/USD"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(min_value=1, max_value=30),
    st.sampled_from([None, Decimal("-0.5"), Decimal("0.5")]),  # market, or a limit off the price
)
SEGMENT = st.tuples(st.integers(min_value=1, max_value=90), st.lists(ORDER, max_size=3))


def submit(sim, symbol, side, qty, offset, n):
    crypto = "/" in symbol
    size = Decimal(qty) / 100 if crypto else Decimal(qty)
    limit = None
    if offset is not None:
        limit = sim.broker.last_price(symbol) * (1 + offset / 100)
        limit = limit.quantize(Decimal("0.01"))
    intent = OrderIntent(
        symbol=symbol,
        side=side,
        qty=size,
        type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        limit_price=limit,
        time_in_force=TimeInForce.GTC if crypto else TimeInForce.DAY,
        client_order_id=f"o-{n}",
    )
    try:
        sim.broker.submit_order(intent)
    except Exception as exc:  # a refusal (buying power, shorting rules) is part of the walk
        assert getattr(exc, "status", None) in (403, 422), exc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segments=st.lists(SEGMENT, min_size=1, max_size=4),
    fee=st.sampled_from([Decimal(0), Decimal("0.005")]),
)
def test_samples_recorded_in_jumps_equal_the_equity_seen_minute_by_minute(segments, fee):
    stepped = make_sim(partial_fill_probability=0.5, liquidity=Decimal(7), fee_per_share=fee)
    jumped = make_sim(partial_fill_probability=0.5, liquidity=Decimal(7), fee_per_share=fee)
    history = EquityHistory(jumped.broker)
    truth = {T0: stepped.broker.account.totals(T0)[0]}
    n = 0
    for minutes, orders in segments:
        for _ in range(minutes):
            stepped.minutes(1)
            now = stepped.clock.now()
            truth[now] = stepped.broker.account.totals(now)[0]
        jumped.clock.advance(minutes * MINUTE)
        jumped.broker.step()
        history.record(jumped.clock.now())
        for order in orders:
            n += 1
            submit(stepped, *order, n)
            submit(jumped, *order, n)
    assert jumped.broker.fills == stepped.broker.fills
    for t, equity in truth.items():
        assert history.equity_at(t) == equity, t
    assert history.equity_at(T0 - MINUTE) is None
    assert history.equity_at(stepped.clock.now() + MINUTE) is None


def test_a_long_jump_keeps_only_the_recent_minutes_but_every_days_close():
    sim = make_sim()
    sim.broker.submit_order(
        OrderIntent(symbol="AAPL", side=Side.BUY, qty=Decimal(10), client_order_id="b")
    )
    history = EquityHistory(sim.broker, keep=timedelta(hours=1))
    sim.clock.advance(timedelta(days=3))
    sim.broker.step()
    added = history.record(sim.clock.now())
    assert added == 3 * 24 * 60 + 1
    now = sim.clock.now()
    assert history.equity_at(now) == sim.broker.account.totals(now)[0]
    assert history.equity_at(now - 59 * MINUTE) is not None
    assert history.equity_at(now - 60 * MINUTE) is None  # older than the hour kept
    start_day = T0.astimezone(EXCHANGE_TZ).date()
    for back in range(3):
        day = start_day + timedelta(days=back)
        expected = sim.broker.account.totals(day_close(day))[0]  # position unchanged since
        assert history.close_of(day) == expected
    assert history.close_of(start_day + timedelta(days=3)) is None  # not 20:00 yet
    assert history.record(now) == 0  # nothing new until the next minute
