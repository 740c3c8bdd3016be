"""Protections benchmark: is_locked latency, evaluate() cost, `mqd protections status` start-up.

Run: .venv/bin/python bench/protections.py   (prints medians and ratios)

``evaluate`` and the cost of a closed trade are measured for the incremental evaluation (what
mqd runs) and the straightforward reference (``ProtectionManager(incremental=False)``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import Settings
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.protections.manager import ProtectionManager
from mqd_cli.store import Store
from mqd_cli.store.trades import insert_closed_trade

T0 = datetime(2026, 1, 6, 15, 0, tzinfo=UTC)


def median_us(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e6)
    return statistics.median(samples)


def seed(store: Store, trades: int) -> None:
    for i in range(trades):
        closed = T0 + timedelta(minutes=i * 2)
        pnl = Decimal("-3") if i % 3 else Decimal("5")
        insert_closed_trade(
            store,
            ClosedTrade(
                trade_id=f"b{i}",
                symbol=f"S{i % 20}",
                side="long" if i % 2 else "short",
                qty=Decimal(10),
                entry_price=Decimal(100),
                exit_price=Decimal(100) + pnl / 10,
                opened_at=closed - timedelta(minutes=1),
                closed_at=closed,
                pnl=pnl,
                fees=Decimal(0),
                exit_reason="signal" if i % 5 else "stop_loss",
                strategy="b",
            ),
        )


def closing_cost(s) -> dict[str, tuple[float, float]]:
    """Mean cost of ``on_trade_closed`` (store write excluded) for the first and the last
    1,000 of 5,000 losing trades a minute apart, all inside the lookback, per evaluation."""
    out = {}
    for mode, incremental in (("incremental", True), ("reference", False)):
        tmp = Path(tempfile.mkdtemp())
        store = Store.open(tmp / "close.db")
        clock = BacktestClock(T0)
        mgr = ProtectionManager(s, store, clock, incremental=incremental)
        spent = []
        for i in range(5000):
            clock.advance_to(T0 + timedelta(minutes=i))
            t = ClosedTrade(
                trade_id=f"c{i:05d}",
                symbol=f"S{i % 50}",
                side="long",
                qty=Decimal(1),
                entry_price=Decimal(100),
                exit_price=Decimal("99.99"),
                opened_at=clock.now() - timedelta(minutes=1),
                closed_at=clock.now(),
                pnl=Decimal("-0.01"),
                fees=Decimal(0),
                exit_reason="signal",
                strategy="b",
            )
            insert_closed_trade(store, t)
            t0 = time.perf_counter()
            mgr.on_trade_closed(t)
            spent.append((time.perf_counter() - t0) * 1e6)
        store.close()
        out[mode] = (statistics.mean(spent[:1000]), statistics.mean(spent[-1000:]))
    return out


def main() -> None:
    logging.getLogger("mqd.protections").setLevel(logging.ERROR)  # quiet the lock messages
    tmp = Path(tempfile.mkdtemp())
    store = Store.open(tmp / "bench.db")
    trades = 1000  # about 33 hours of trades, 2 minutes apart
    seed(store, trades)
    clock = BacktestClock(T0 + timedelta(minutes=trades * 2))
    s = Settings().protections
    s = dataclasses.replace(s, low_profit=dataclasses.replace(s.low_profit, enabled=True))
    mgr = ProtectionManager(s, store, clock)
    mgr.start()
    print(f"active locks after start: {len(mgr.active_locks())}")

    locked = median_us(lambda: mgr.is_locked("S1", "long"), 2000)
    evaluate = median_us(mgr.evaluate, 30)
    reference = ProtectionManager(s, store, clock, incremental=False)
    reference.start()
    evaluate_ref = median_us(reference.evaluate, 30)
    reference.stop()
    status = median_us(mgr.status, 30)
    per_trade = closing_cost(s)

    # Broker equity: one sample a minute for 3 days.
    for m in range(3 * 24 * 60):
        from mqd_cli.store.protections import record_equity

        record_equity(store, clock.now() - timedelta(minutes=m), Decimal(100000 - m % 700))
    evaluate_eq = median_us(mgr.evaluate, 10)
    mgr.stop()
    store.close()

    env = dict(os.environ, MQD_CONFIG=str(tmp / "c.toml"))
    (tmp / "c.toml").write_text(f'[store]\npath = "{tmp / "bench.db"}"\n')
    py = sys.executable

    def cli(*args: str) -> float:
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([py, "-m", "mqd_cli", *args], env=env, check=True, capture_output=True)
            runs.append(time.perf_counter() - t)
        return statistics.median(runs) * 1000

    help_ms = cli("--help")
    status_ms = cli("protections", "status")
    status_json_ms = cli("protections", "status", "--json")

    print(f"is_locked (store query)            median {locked:8.1f} us")
    print(f"evaluate, {trades} trades in store   median {evaluate / 1000:8.2f} ms (incremental)")
    print(f"                                   median {evaluate_ref / 1000:8.2f} ms (reference)")
    for mode, (first, last) in per_trade.items():
        print(
            f"closing a losing trade, {mode:<11} {first:8.1f} us with 0-1,000 trades in the"
            f" window, {last:8.1f} us with 4,000-5,000"
        )
    print(f"evaluate + 4320 equity samples     median {evaluate_eq / 1000:8.2f} ms")
    print(f"status()                           median {status / 1000:8.2f} ms")
    print(f"`mqd --help`                       median {help_ms:8.1f} ms")
    print(
        f"`mqd protections status`           median {status_ms:8.1f} ms "
        f"(x{status_ms / help_ms:.2f} of --help)"
    )
    print(
        f"`mqd protections status --json`    median {status_json_ms:8.1f} ms "
        f"(x{status_json_ms / help_ms:.2f} of --help)"
    )
    from _results import Row, save

    inc, ref = per_trade["incremental"], per_trade["reference"]
    save(
        "protections",
        [
            Row(
                f"`evaluate()` with {trades:,} trades in the store (peer: the straightforward "
                "evaluation)",
                f"{evaluate / 1000:.2f} ms",
                peer=f"{evaluate_ref / 1000:.2f} ms",
            ),
            Row(
                "a losing trade closed with 0-1,000 / 4,000-5,000 trades in the window",
                f"{inc[0]:.0f} / {inc[1]:.0f} µs",
                peer=f"{ref[0]:.0f} / {ref[1]:.0f} µs",
            ),
            Row("`is_locked()`", f"{locked:.0f} µs"),
        ],
        {
            "trades": trades,
            "is_locked_us": locked,
            "evaluate_us": evaluate,
            "evaluate_reference_us": evaluate_ref,
            "closing_us": per_trade,
            "evaluate_with_equity_us": evaluate_eq,
            "status_us": status,
            "cli_ms": {"help": help_ms, "status": status_ms, "status_json": status_json_ms},
        },
    )


if __name__ == "__main__":
    main()
