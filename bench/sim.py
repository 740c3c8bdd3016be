"""The simulated exchange in-process: order throughput, matching cost, price generation.

Prints medians of several runs:
  * market orders submitted and filled per second (SimBroker on a BacktestClock),
  * one ``step()`` (a minute of market) with 1,000 resting limit orders,
  * a year of 1-minute bars generated for one symbol, and as daily bars aggregated,
  * ``generate_universe(35_000)``.

Usage: .venv/bin/python bench/sim.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta
from decimal import Decimal

from mqd_cli.brokers.sim.assets import generate_universe
from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.brokers.sim.prices import DEFAULT_ORIGIN, SyntheticPrices
from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import SimSettings
from mqd_cli.model import OrderIntent, OrderType, Side, TimeInForce


def orders_per_second(n: int = 2_000) -> float:
    broker = SimBroker(SimSettings(), BacktestClock())
    start = time.perf_counter()
    for i in range(n):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        broker.submit_order(
            OrderIntent(symbol="AAPL", side=side, qty=Decimal(1), client_order_id=f"b{i}")
        )
    return n / (time.perf_counter() - start)


def step_with_resting(n: int = 1_000) -> float:
    clock = BacktestClock()
    broker = SimBroker(SimSettings(), clock)
    symbols = ["AAPL", "MSFT", "SPY", "NVDA", "QQQ"]
    for i in range(n):
        broker.submit_order(
            OrderIntent(
                symbol=symbols[i % 5],
                side=Side.BUY,
                qty=Decimal(1),
                type=OrderType.LIMIT,
                limit_price=Decimal("1.00"),
                time_in_force=TimeInForce.GTC,
                client_order_id=f"r{i}",
            )
        )
    clock.advance(60)
    start = time.perf_counter()
    broker.step()
    return time.perf_counter() - start


def year_of_minutes() -> float:
    walk = SyntheticPrices(1)
    start = time.perf_counter()
    walk.bars("AAPL", DEFAULT_ORIGIN, DEFAULT_ORIGIN + timedelta(days=365))
    return time.perf_counter() - start


def year_of_days() -> float:
    walk = SyntheticPrices(1)
    start = time.perf_counter()
    walk.bars("AAPL", DEFAULT_ORIGIN, DEFAULT_ORIGIN + timedelta(days=365), timedelta(days=1))
    return time.perf_counter() - start


def universe() -> float:
    start = time.perf_counter()
    generate_universe(35_000)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    SyntheticPrices(0).bars("AAPL", DEFAULT_ORIGIN, DEFAULT_ORIGIN + timedelta(minutes=1))  # numpy
    rate = statistics.median(orders_per_second() for _ in range(runs))
    print(f"market orders submitted+filled: {rate:,.0f}/s (median of {runs})")
    step = statistics.median(step_with_resting() for _ in range(runs))
    print(
        f"step() with 1,000 resting orders: {step * 1000:.1f} ms ({step * 1e6 / 1000:.0f} us/order)"
    )
    minutes = statistics.median(year_of_minutes() for _ in range(runs))
    print(f"365 days of 1-minute bars (525,600): {minutes:.2f} s")
    days = statistics.median(year_of_days() for _ in range(runs))
    print(f"365 daily bars aggregated from the minute walk: {days * 1000:.0f} ms")
    print(f"  ratio minute bars / daily bars: {minutes / days:.1f}x")
    gen = statistics.median(universe() for _ in range(runs))
    print(f"generate_universe(35,000): {gen * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
