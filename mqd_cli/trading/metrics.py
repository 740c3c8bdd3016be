"""Performance metrics of a backtest: risk-adjusted return, trade statistics, drawdown length.

Pure functions of the equity curve and the closed trades. Money stays ``Decimal`` (profit
factor is a ratio of money, so it is one too); the return ratios (Sharpe, Sortino) are floats,
computed from daily returns (the last equity of each UTC day) and annualised over 252 trading
days. Each is ``None`` when the data cannot support it (fewer than two daily returns, no
losing trade for the profit factor, a flat curve for Sharpe).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Protocol

ZERO = Decimal(0)
TRADING_DAYS = 252


class _Point(Protocol):
    @property
    def at(self) -> Any: ...
    @property
    def equity(self) -> Decimal: ...


class _Trade(Protocol):
    @property
    def symbol(self) -> str: ...
    @property
    def pnl(self) -> Decimal: ...


def daily_returns(curve: Iterable[_Point]) -> list[float]:
    """Simple returns between the last equity of consecutive UTC days of the curve."""
    closes: dict[date, Decimal] = {}
    for p in curve:
        closes[p.at.date()] = p.equity
    values = [closes[d] for d in sorted(closes)]
    return [float(b / a - 1) for a, b in zip(values, values[1:], strict=False) if a > 0]


def sharpe(returns: Sequence[float]) -> float | None:
    """Annualised mean over standard deviation of daily returns (risk-free rate 0)."""
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(TRADING_DAYS)


def sortino(returns: Sequence[float]) -> float | None:
    """Like Sharpe, over the downside deviation (returns below 0 only)."""
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    downside = sum(min(r, 0.0) ** 2 for r in returns) / len(returns)
    if downside <= 0:
        return None
    return mean / math.sqrt(downside) * math.sqrt(TRADING_DAYS)


def profit_factor(trades: Iterable[_Trade]) -> Decimal | None:
    """Gross profit over gross loss; None without a losing trade."""
    won = lost = ZERO
    for t in trades:
        if t.pnl > 0:
            won += t.pnl
        elif t.pnl < 0:
            lost -= t.pnl
    return won / lost if lost > 0 else None


def expectancy(trades: Sequence[_Trade]) -> Decimal | None:
    """The mean PnL of a trade."""
    if not trades:
        return None
    return sum((t.pnl for t in trades), ZERO) / len(trades)


def longest_drawdown(curve: Sequence[_Point]) -> timedelta:
    """The longest time equity spent below a previous peak (to recovery, or to the end)."""
    longest = timedelta(0)
    peak: Decimal | None = None
    since: Any = None  # when the current drawdown began (the peak's time)
    prev_at: Any = None
    for p in curve:
        if peak is None or p.equity >= peak:
            if since is not None:
                longest = max(longest, p.at - since)
            peak, since = p.equity, None
        elif since is None:
            since = prev_at
        prev_at = p.at
    if since is not None and curve:
        longest = max(longest, curve[-1].at - since)
    return longest


@dataclass(frozen=True)
class SymbolStats:
    """One symbol's closed trades."""

    trades: int
    wins: int
    pnl: Decimal

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0


def by_symbol(trades: Iterable[_Trade]) -> dict[str, SymbolStats]:
    """Closed trades per symbol, symbols in order."""
    acc: dict[str, tuple[int, int, Decimal]] = {}
    for t in trades:
        n, w, pnl = acc.get(t.symbol, (0, 0, ZERO))
        acc[t.symbol] = (n + 1, w + (t.pnl > 0), pnl + t.pnl)
    return {s: SymbolStats(*acc[s]) for s in sorted(acc)}
