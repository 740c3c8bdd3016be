"""`mqd run` end to end against the emulator (`mqd sim serve`) through the Alpaca adapter and the
user stream: orders placed, filled and tracked; a stop-loss sequence trips StoplossGuard and no
order is sent during the lock; a risk refusal; an invalid intent rounded or refused before
submission; a user strategy loaded from a file."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import timedelta
from decimal import Decimal

from mqd_cli.clock import AcceleratedClock
from mqd_cli.config.loading import loads
from mqd_cli.config.settings import SimSettings
from mqd_cli.factory import Services
from mqd_cli.trading.live import RunOptions

SPEED = 300.0  # emulator and loop clocks: a 1-minute bar every 0.2 s

# A user strategy, loaded from a file by `[strategy] name = "scripted.py:Scripted"`.
STRATEGY = '''
from decimal import Decimal
from mqd_cli.model import OrderIntent, OrderType, Side
from mqd_cli.strategies.base import BaseStrategy

class Scripted(BaseStrategy):
    """Bar 1: a sub-penny limit (rounded), an unknown symbol (refused), an oversized order
    (risk). Then round trips that always exit as stop-losses."""
    name = "scripted"

    def __init__(self, params=None, symbols=()):
        super().__init__(params, symbols)
        self.bars = 0

    def warm_up(self, bar):
        pass

    def on_bar(self, bar, ctx):
        if bar.symbol != "AAPL":
            return []
        self.bars += 1
        if self.bars == 1:
            limit = (bar.close * Decimal("1.01")).quantize(Decimal("0.0001")) + Decimal("0.0003")
            return [
                OrderIntent("AAPL", Side.BUY, qty=Decimal(1), type=OrderType.LIMIT,
                            limit_price=limit, reason="entry"),
                OrderIntent("NOSUCH", Side.BUY, qty=Decimal(1), reason="entry"),
                OrderIntent("AAPL", Side.BUY, qty=Decimal(100000), reason="entry"),
            ]
        if ctx.open_orders("AAPL") and self.bars > 2:
            return []
        pos = ctx.position("AAPL")
        if pos > 0:
            return [OrderIntent("AAPL", Side.SELL, qty=pos, reason="stop_loss")]
        return [OrderIntent("AAPL", Side.BUY, qty=Decimal(5), reason="entry")]
'''


def config_text(srv, tmp_path, extra: str = "") -> str:
    (tmp_path / "scripted.py").write_text(STRATEGY)
    return (
        srv.config_toml()
        + textwrap.dedent(f"""
        [store]
        path = "{tmp_path / "mqd.db"}"
        [strategy]
        name = "{tmp_path / "scripted.py"}:Scripted"
        symbols = ["AAPL"]
        [run]
        warmup_bars = 5
        poll_interval = "20ms"
        [protections.stoploss_guard]
        trade_limit = 3
        lookback = "1h"
        stop_duration = "1h"
        [protections.cooldown]
        enabled = false
        [risk]
        max_order_notional = "50000"
        [stream]
        heartbeat_interval = "30s"
        """)
        + extra
    )


def test_the_loop_trades_through_the_emulator_and_every_safety_system_acts(emulator, tmp_path):
    srv = emulator(
        speed=SPEED, sim=SimSettings(slippage_bps=Decimal(25), partial_fill_probability=0.0)
    )
    settings = loads(config_text(srv, tmp_path)).settings
    from mqd_cli.symbols.sync import sync

    clock = AcceleratedClock(SPEED)
    services = Services(settings, clock=clock)
    sync(services.store, services.broker, clock)
    events = []
    session = services.live_session(
        RunOptions(duration=timedelta(minutes=20)),
        listener=events.append,
        base_dir=tmp_path,
    )
    try:
        session.prepare()
        summary = asyncio.run(asyncio.wait_for(session.run(), timeout=60))
        tracker = session.services.tracker
        broker_orders = services.broker.list_orders("all")
        from mqd_cli.store import stream as lease_db
        from mqd_cli.stream.lease import account_key

        lease_after = lease_db.current_lease(services.store, account_key(settings))
    finally:
        session.close()

    engine = session.engine
    refused = {(r.stage, r.rule) for r in engine.refusals}
    # an invalid intent: the unknown symbol is refused before submission ...
    assert ("symbols", "UNKNOWN_SYMBOL") in refused
    # ... and the sub-penny limit was rounded down (never more aggressive) and sent
    limits = [o for o in broker_orders if o.limit_price is not None]
    assert len(limits) == 1 and limits[0].limit_price == limits[0].limit_price.quantize(
        Decimal("0.01")
    )
    assert any(e.kind == "adjusted" for e in events)
    # a risk refusal
    assert ("risk", "max_order_notional") in refused
    assert not any(o.qty == Decimal(100000) for o in broker_orders)
    # orders placed, filled and tracked through the stream: broker and journal agree
    filled = [o for o in broker_orders if o.status.value == "filled"]
    assert len(filled) >= 6
    for o in broker_orders:
        mine = tracker.order(o.client_order_id)
        assert mine is not None and mine.filled_qty == o.filled_qty
    assert summary.stream["connects"] >= 1 and sum(summary.stream["events"].values()) > 0
    # three losing stop-loss exits trip StoplossGuard; nothing is sent while it holds
    locks = [e for e in events if e.kind == "protection" and e.data["kind"] == "locked"]
    assert len(locks) == 1
    lock = locks[0].data["lock"]
    assert lock.protection == "stoploss_guard"
    # (the exit that closed the third trade was created at the very instant the lock starts)
    during = [o for o in broker_orders if lock.start < o.created_at < lock.end]
    assert during == []
    assert ("protections", "stoploss_guard") in refused
    assert summary.stats["stop_losses"] >= 3
    # the stream lease was taken for the run and released at shutdown
    assert lease_after is None


def test_duration_is_market_time_against_an_accelerated_emulator(emulator, tmp_path):
    """One rule for time options: the clock the session trades on. At 600x, 10 minutes of the
    emulator's time pass in a second of ours, so the run stops long before 10 real minutes."""
    from mqd_cli.symbols.sync import sync

    srv = emulator(speed=600.0)
    text = srv.config_toml() + textwrap.dedent(f"""
        [store]
        path = "{tmp_path / "mqd.db"}"
        [strategy]
        name = "buy_and_hold"
        symbols = ["AAPL"]
        [run]
        warmup_bars = 1
        poll_interval = "20ms"
        """)
    services = Services(loads(text).settings)  # the real clock: no acceleration on our side
    sync(services.store, services.broker, services.clock)
    session = services.live_session(RunOptions(duration=timedelta(minutes=10)), base_dir=tmp_path)
    try:
        session.prepare()
        summary = asyncio.run(asyncio.wait_for(session.run(), timeout=30))
    finally:
        session.close()
    assert summary.reason == "duration 10m reached"
