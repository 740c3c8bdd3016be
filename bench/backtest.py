"""Backtest throughput: the full mqd engine against backtrader on the same synthetic bars.

Both get the same 1-minute bars of the simulator's seeded random walk, already in memory (mqd:
``Bar`` objects; backtrader: a pandas DataFrame), and run the same fast/slow SMA crossover.
mqd runs its whole pipeline on every intent (protections, risk gate, symbol validation and
rounding, order tracker) and fills on the simulated exchange; backtrader uses its own broker.
The script checks that both engines see exactly the same crossover signals.

    .venv/bin/python bench/backtest.py                 # 1,000,000 bars (backtrader: ~3-4 min)
    .venv/bin/python bench/backtest.py --bars 200000 --repeat 3

backtrader is installed for the benchmark only (``pip install backtrader``); without it the
script reports mqd alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqd_cli.brokers.sim.prices import DEFAULT_ORIGIN  # noqa: E402
from mqd_cli.config.settings import Settings  # noqa: E402
from mqd_cli.factory import Services
from mqd_cli.strategies.sma_cross import SmaCross  # noqa: E402
from mqd_cli.trading.backtest import sim_bars

FAST, SLOW = 10, 30
SYMBOL = "AAPL"


def settings() -> Settings:
    s = Settings()
    params = {"fast": FAST, "slow": SLOW}
    return dataclasses.replace(
        s,
        strategy=dataclasses.replace(s.strategy, symbols=[SYMBOL], params=params),
        sim=dataclasses.replace(s.sim, partial_fill_probability=0.0),
    )


def make_bars(n: int) -> list:
    s = settings()
    broker = Services(s).backtest_session(DEFAULT_ORIGIN).broker
    end = DEFAULT_ORIGIN + timedelta(minutes=n)
    return list(sim_bars(broker, SYMBOL, DEFAULT_ORIGIN, end, timedelta(minutes=1)))


def run_mqd(bars: list) -> tuple[float, list[tuple], dict]:
    s = settings()
    strategy = SmaCross({"fast": FAST, "slow": SLOW}, symbols=(SYMBOL,))
    end = bars[-1].timestamp + timedelta(minutes=1)
    t0 = time.perf_counter()
    result = Services(s).backtest(start=DEFAULT_ORIGIN, end=end, bars=bars, strategy=strategy)
    seconds = time.perf_counter() - t0
    signals = [(x.timestamp.replace(tzinfo=None), x.direction) for x in strategy.signals]
    info = {
        "orders": result.stats["submitted"],
        "trades": len(result.trades),
        "locks": sum(result.locks_by_protection().values()),
        "refused": sum(result.refusals.values()),
    }
    return seconds, signals, info


def run_backtrader(bars: list) -> tuple[float, list[tuple], dict] | None:
    try:
        import backtrader as bt
    except ImportError:
        return None
    import pandas as pd

    frame = pd.DataFrame(
        {
            "open": [float(b.open) for b in bars],
            "high": [float(b.high) for b in bars],
            "low": [float(b.low) for b in bars],
            "close": [float(b.close) for b in bars],
            "volume": [float(b.volume) for b in bars],
        },
        index=pd.DatetimeIndex([b.timestamp.astimezone(UTC).replace(tzinfo=None) for b in bars]),
    )

    class SmaCrossBT(bt.Strategy):
        def __init__(self):
            fast = bt.ind.SMA(self.data.close, period=FAST)
            slow = bt.ind.SMA(self.data.close, period=SLOW)
            self.cross = bt.ind.CrossOver(fast, slow)
            self.signals: list[tuple] = []

        def next(self):
            c = self.cross[0]
            if c:
                # mqd stamps a bar with its start, as backtrader's pandas feed does
                self.signals.append((self.data.datetime.datetime(0), 1 if c > 0 else -1))
                if c > 0 and not self.position:
                    self.buy(size=10)
                elif c < 0 and self.position:
                    self.close()

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame, timeframe=bt.TimeFrame.Minutes))
    cerebro.addstrategy(SmaCrossBT)
    cerebro.broker.setcash(100_000)
    t0 = time.perf_counter()
    (strategy,) = cerebro.run()
    seconds = time.perf_counter() - t0
    done = [o for o in strategy._orders if o.status == o.Completed]
    return seconds, strategy.signals, {"orders": len(done)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="mqd runs (median reported)")
    ap.add_argument("--bt-repeat", type=int, default=1, help="backtrader runs")
    args = ap.parse_args()

    t0 = time.perf_counter()
    bars = make_bars(args.bars)
    print(
        f"{len(bars):,} synthetic 1-minute bars of {SYMBOL} generated in "
        f"{time.perf_counter() - t0:.1f}s (not timed below)"
    )

    runs = [run_mqd(bars) for _ in range(args.repeat)]
    mqd_s = statistics.median(r[0] for r in runs)
    _, mqd_signals, info = runs[0]
    mqd_rate = len(bars) / mqd_s
    print(
        f"mqd engine   : median {mqd_s:7.2f}s over {args.repeat} run(s) = "
        f"{mqd_rate:>10,.0f} bars/s  ({info['orders']:,} orders, {info['trades']:,} trades, "
        f"{info['locks']} protection locks, {info['refused']:,} refused intents)"
    )

    bt_runs = []
    for _ in range(args.bt_repeat):
        r = run_backtrader(bars)
        if r is None:
            print("backtrader   : not installed (pip install backtrader)")
            return
        bt_runs.append(r)
    bt_s = statistics.median(r[0] for r in bt_runs)
    _, bt_signals, bt_info = bt_runs[0]
    bt_rate = len(bars) / bt_s
    print(
        f"backtrader   : median {bt_s:7.2f}s over {args.bt_repeat} run(s) = "
        f"{bt_rate:>10,.0f} bars/s  ({bt_info['orders']:,} orders filled)"
    )
    print(f"ratio        : mqd is {mqd_rate / bt_rate:.1f}x backtrader (target >= 5x)")

    same = mqd_signals == bt_signals
    ties = explained_by_ties(bars, mqd_signals, bt_signals)
    if same:
        verdict = "identical"
    elif ties is not None:
        verdict = (
            f"identical except {ties} signals at exact ties (fast == slow to the cent: Decimal"
            " sees no cross, backtrader's float sums cross a bar early or cross and back)"
        )
    else:
        verdict = "DIFFERENT"
    print(f"signals      : mqd {len(mqd_signals):,}, backtrader {len(bt_signals):,}: {verdict}")
    if not same and ties is None:
        a, b = set(mqd_signals), set(bt_signals)
        print(f"               only mqd: {sorted(a - b)[:5]}  only backtrader: {sorted(b - a)[:5]}")
        sys.exit(1)


def explained_by_ties(bars: list, mine: list[tuple], theirs: list[tuple]) -> int | None:
    """How many signals differ, if every difference sits at an exact tie; None otherwise.

    When the fast and slow averages are exactly equal (to the cent, which Decimal sees and a
    float sum does not), backtrader's rounding puts the difference a hair above or below zero:
    it may cross one bar before mqd, or cross and cross back where mqd sees no cross at all.
    A difference is explained when the Decimal averages tie on its bar or the bar before."""
    index = {b.timestamp.astimezone(UTC).replace(tzinfo=None): i for i, b in enumerate(bars)}

    def tie(i: int) -> bool:
        if i < SLOW - 1:
            return False
        closes = [b.close for b in bars[i - SLOW + 1 : i + 1]]
        return sum(closes[-FAST:]) * SLOW == sum(closes) * FAST

    differences = set(mine) ^ set(theirs)
    for t, _ in differences:
        i = index[t]
        if not (tie(i) or tie(i - 1)):
            return None
    return len(differences)


if __name__ == "__main__":
    main()
