"""A small backtest's results, pinned: speed work on the backtest path must not change them.

Four symbols over eight hours of the seeded walk, with every protection tight enough to lock
(all four do), so the engine, the simulated exchange, the order tracker and the protections
are all on the path. The figures and the digest were taken from the code before the
incremental protections and the backtest speed-ups (commit 07c0e86) and are unchanged since:
a change here is a change in behaviour, never noise.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from mqd_cli.config.loading import loads
from mqd_cli.factory import Services

PINNED = """
[strategy]
symbols = ["AAPL", "MSFT", "NVDA", "SPY"]
[strategy.params]
fast = 5
slow = 20
stop_loss_pct = 0.1
take_profit_pct = 0.3
[sim]
starting_cash = "5000"
[protections.stoploss_guard]
trade_limit = 2
lookback = "30m"
stop_duration = "20m"
only_per_symbol = true
[protections.max_drawdown]
max_drawdown = 0.004
lookback = "2h"
stop_duration = "15m"
[protections.cooldown]
loss_threshold = "8"
stop_duration = "10m"
[protections.low_profit]
enabled = true
trade_limit = 3
lookback = "2h"
stop_duration = "30m"
"""
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def test_a_small_backtest_gives_the_pinned_trades_locks_and_figures():
    r = Services(loads(PINNED).settings).backtest(start=START, end=START + timedelta(hours=8))
    assert len(r.trades) == 39
    assert r.final_equity == Decimal("4969.72")
    assert r.locks_by_protection() == {
        "stoploss_guard": 4,
        "low_profit": 10,
        "cooldown": 2,
        "max_drawdown": 5,
    }
    assert r.refusals == {"risk": 3, "protections": 15}
    assert (r.stats["submitted"], r.stats["fills"]) == (78, 86)
    assert r.max_drawdown_amount == Decimal("45.00")
    assert r.max_drawdown == Decimal("0.008989392516830140434287540702")
    assert r.exposure == 0.6046875
    rows: list[list] = [
        [t.symbol, t.side, t.qty, t.entry_price, t.exit_price, t.opened_at, t.closed_at]
        + [t.pnl, t.fees, t.exit_reason]
        for t in r.trades
    ]
    rows += [
        [k.protection, k.symbol, k.side, k.start, k.end, k.reason, k.evidence] for k in r.locks
    ]
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
    assert digest == "9e58ccf5c7a0e498bb4c9373475af0394e6427ec622469019c369785c170b68b"
