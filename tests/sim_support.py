"""Helpers for the SimBroker tests: a broker on a BacktestClock over scripted bars."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.brokers.sim.prices import CsvPrices, SyntheticPrices
from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import SimSettings
from mqd_cli.model import Bar, OrderIntent, OrderType, Side, TimeInForce, TradeUpdate

T0 = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)  # Monday 09:35 New York
MINUTE = timedelta(minutes=1)


def scripted(symbol: str, ohlc: list[tuple[str, str, str, str]], start: datetime = T0):
    """Minute bars of ``symbol`` from ``start``: (open, high, low, close) as strings."""
    return {
        symbol: [
            Bar(
                symbol=symbol,
                timestamp=start + i * MINUTE,
                open=Decimal(o),
                high=Decimal(h),
                low=Decimal(lo),
                close=Decimal(c),
                volume=Decimal(1000),
            )
            for i, (o, h, lo, c) in enumerate(ohlc)
        ]
    }


@dataclass
class Sim:
    broker: SimBroker
    clock: BacktestClock
    events: list[TradeUpdate] = field(default_factory=list)

    def minutes(self, n: int = 1) -> list[TradeUpdate]:
        out = []
        for _ in range(n):
            self.clock.advance(MINUTE)
            out.extend(self.broker.step())
        return out

    def kinds(self, order_id: str | None = None) -> list[str]:
        return [e.event.value for e in self.events if order_id is None or e.order.id == order_id]

    def submit(self, symbol: str = "AAPL", side: Side = Side.BUY, qty: str | None = "10", **kw):
        kw.setdefault("client_order_id", f"t-{len(self.broker.list_orders('all'))}")
        for key in ("limit_price", "stop_price", "trail_price", "trail_percent", "notional"):
            if isinstance(kw.get(key), str):
                kw[key] = Decimal(kw[key])
        if isinstance(kw.get("type"), str):
            kw["type"] = OrderType(kw["type"])
        if isinstance(kw.get("time_in_force"), str):
            kw["time_in_force"] = TimeInForce(kw["time_in_force"])
        return self.broker.submit_order(
            OrderIntent(
                symbol=symbol, side=side, qty=Decimal(qty) if qty is not None else None, **kw
            )
        )


def make_sim(bars: dict | None = None, start: datetime = T0, **settings) -> Sim:
    settings.setdefault("partial_fill_probability", 0.0)
    settings.setdefault("liquidity", Decimal(0))
    sim_settings = SimSettings(**settings)
    clock = BacktestClock(start)
    prices = None
    if bars is not None:
        prices = CsvPrices(bars, SyntheticPrices(sim_settings.seed))
    broker = SimBroker(sim_settings, clock, prices=prices)
    sim = Sim(broker, clock)
    broker.subscribe(sim.events.append)
    return sim
