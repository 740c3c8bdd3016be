"""Backtest speed at many symbols (issue 17): the shortcuts keep every result the same.

The simulated account values its positions once per instant (a backtest's clock stands still
while an order is checked, sent and filled), the backtest keeps its closed trades in memory
instead of reading them back from the store, and the exchange formats its ids directly. Each
test pins that the shortcut answers what the long way answers.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from mqd_cli.brokers.sim.account import SimPosition
from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.config.loading import loads
from mqd_cli.factory import Services
from mqd_cli.model import Side
from tests.support import make_sim, scripted

D = Decimal
STEPS = [("100", "100", "100", "100"), ("110", "110", "110", "110"), ("90", "90", "90", "90")]
STEPS += [("95", "95", "95", "95")] * 3


def test_sim_ids_are_the_uuid4_strings_of_the_seeded_bits():
    class Ids:
        _id_rng = random.Random("mqd-sim|7|ids")

    same = random.Random("mqd-sim|7|ids")
    for _ in range(2000):
        expected = str(uuid.UUID(int=same.getrandbits(128), version=4))
        assert SimBroker._new_id(Ids()) == expected  # type: ignore[arg-type]


def test_account_asked_twice_at_one_instant_sees_a_fill_between():
    sim = make_sim(scripted("AAPL", STEPS))
    sim.submit(qty="10")
    sim.minutes(1)  # 110: the clock stands still from here
    before = sim.broker.get_account()
    assert before.long_market_value == D(1100)
    sim.submit(side=Side.SELL, qty="4")  # fills now, at the same instant
    after = sim.broker.get_account()
    assert after.long_market_value == D(660)
    assert after.cash == before.cash + D(440)
    assert after.equity == before.equity


def test_positions_changed_outside_a_fill_are_valued_again_once_told():
    sim = make_sim(scripted("AAPL", STEPS))
    sim.submit(qty="10")
    account = sim.broker.account
    now = sim.clock.now()
    assert sim.broker.get_account().long_market_value == D(1000)
    # Shares arriving without an order (a transfer), at the same instant: tell the account.
    asset = sim.broker.get_asset("AAPL")
    pos = account.positions.get("AAPL") or SimPosition(asset)
    pos.qty += D(5)
    pos.cost += D(500)
    account.positions["AAPL"] = pos
    account.changed()
    assert sim.clock.now() is now
    assert sim.broker.get_account().long_market_value == D(1500)


MANY = """
[strategy]
symbols = ["AAPL", "MSFT", "NVDA", "SPY", "QQQ", "GME", "AMC"]
[strategy.params]
fast = 3
slow = 8
"""
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def test_backtest_trades_come_in_the_stores_order_once_each():
    services = Services(loads(MANY).settings)
    r = services.backtest(start=START, end=START + timedelta(hours=6))
    assert len(r.trades) == r.stats["trades"] > 20
    ids = [t.trade_id for t in r.trades]
    assert len(set(ids)) == len(ids)
    # The store's order: by close time, then trade id (several symbols close at one instant).
    assert r.trades == sorted(r.trades, key=lambda t: (t.closed_at, t.trade_id))
    assert any(a.closed_at == b.closed_at for a, b in zip(r.trades, r.trades[1:], strict=False))
    assert r.realized_pnl == r.stats["realized_pnl"]
