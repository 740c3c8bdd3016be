"""Backtest metrics: Sharpe, Sortino, profit factor, expectancy, longest drawdown, per symbol."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli.trading import metrics as m

D = Decimal
T0 = datetime(2026, 1, 5, 21, 0, tzinfo=UTC)


@dataclass(frozen=True)
class P:
    at: datetime
    equity: Decimal


@dataclass(frozen=True)
class Tr:
    symbol: str
    pnl: Decimal


def curve(*equities: str, step: timedelta = timedelta(days=1)) -> list[P]:
    return [P(T0 + i * step, D(e)) for i, e in enumerate(equities)]


def test_daily_returns_take_each_days_last_equity():
    points = curve("100", "110", "99") + [P(T0 + timedelta(days=2, hours=1), D("121"))]
    assert m.daily_returns(points) == pytest.approx([0.1, 0.1])


def test_sharpe_and_sortino_by_hand():
    returns = [0.01, -0.02, 0.03]
    mean = 0.02 / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    assert m.sharpe(returns) == pytest.approx(mean / std * math.sqrt(252))
    downside = math.sqrt(0.02**2 / 3)
    assert m.sortino(returns) == pytest.approx(mean / downside * math.sqrt(252))


def test_ratios_need_two_returns_and_some_variation():
    assert m.sharpe([0.01]) is None and m.sortino([]) is None
    assert m.sharpe([0.01, 0.01]) is None  # no variation
    assert m.sortino([0.01, 0.02]) is None  # no downside


def test_profit_factor_and_expectancy():
    trades = [Tr("AAPL", D("30")), Tr("AAPL", D("-10")), Tr("MSFT", D("-5")), Tr("MSFT", D(0))]
    assert m.profit_factor(trades) == D(2)
    assert m.expectancy(trades) == D("3.75")
    assert m.profit_factor([Tr("AAPL", D(1))]) is None and m.expectancy([]) is None


def test_per_symbol_trades_win_rate_and_pnl():
    stats = m.by_symbol([Tr("MSFT", D(-5)), Tr("AAPL", D(30)), Tr("AAPL", D(-10))])
    assert list(stats) == ["AAPL", "MSFT"]
    assert stats["AAPL"].trades == 2 and stats["AAPL"].win_rate == 0.5
    assert stats["AAPL"].pnl == D(20) and stats["MSFT"].pnl == D(-5)


def test_the_longest_drawdown_runs_from_the_peak_to_recovery_or_the_end():
    hour = timedelta(hours=1)
    points = curve("100", "90", "95", "100", "101", "99", step=hour)
    assert m.longest_drawdown(points) == 3 * hour  # 100 at 0h .. back to 100 at 3h
    still = curve("100", "99", "98", "97", "96", step=hour)
    assert m.longest_drawdown(still) == 4 * hour  # never recovered: to the end


@given(st.lists(st.integers(min_value=50, max_value=150), min_size=1, max_size=40))
def test_the_longest_drawdown_is_zero_only_for_a_curve_that_never_falls(values):
    points = curve(*[str(v) for v in values], step=timedelta(minutes=1))
    falls = any(b < max(values[: i + 1]) for i, b in enumerate(values))
    assert (m.longest_drawdown(points) > timedelta(0)) == falls
    assert m.longest_drawdown(points) <= points[-1].at - points[0].at
