"""``sma_cross``: fast/slow simple-moving-average crossover with a stop-loss and a take-profit.

Per symbol, on every bar close:

1. the fast and slow averages are updated in O(1) (running sums over deques, exact Decimal);
2. with a position and no open order for the symbol: a close at or past the stop-loss exits
   (``reason="stop_loss"``), at or past the take-profit exits (``reason="take_profit"``);
3. a cross up (fast above slow, after having been below) buys ``qty`` shares or ``notional``
   dollars (``reason="entry"``) and closes a short (``reason="signal"``); a cross down closes a
   long (``reason="signal"``) and, with ``allow_short``, sells short on the next bar once flat.

Cross detection follows backtrader's ``CrossOver``: the last non-zero difference of the two
averages changes sign. Equal averages are not a cross. Every cross is recorded in ``signals``
(also during warm-up and while orders are open), so a benchmark can compare it with another
engine on the same bars.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from mqd_cli.errors import ConfigError
from mqd_cli.model import Bar, OrderIntent, Side
from mqd_cli.orders.trades import SIGNAL, STOP_LOSS, TAKE_PROFIT
from mqd_cli.strategies.base import BaseStrategy, Param, StrategyContext, sizing_problems

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class CrossSignal:
    """One crossover: ``direction`` +1 = fast crossed above slow, -1 = below."""

    symbol: str
    timestamp: datetime
    direction: int
    close: Decimal


class MovingAverages:
    """Fast and slow simple moving averages of one series, O(1) per value.

    ``update`` returns the crossover direction (+1, -1) or 0. Sums are exact Decimals, so the
    averages equal the naive ``sum(window) / len(window)``.
    """

    __slots__ = ("fast", "slow", "_fq", "_sq", "fast_sum", "slow_sum", "last_sign")

    def __init__(self, fast: int, slow: int):
        self.fast = fast
        self.slow = slow
        self._fq: deque[Decimal] = deque()
        self._sq: deque[Decimal] = deque()
        self.fast_sum = _ZERO
        self.slow_sum = _ZERO
        self.last_sign = 0  # sign of the last non-zero (fast - slow)

    @property
    def ready(self) -> bool:
        return len(self._sq) >= self.slow

    @property
    def fast_average(self) -> Decimal | None:
        return self.fast_sum / len(self._fq) if len(self._fq) >= self.fast else None

    @property
    def slow_average(self) -> Decimal | None:
        return self.slow_sum / len(self._sq) if self.ready else None

    def update(self, close: Decimal) -> int:
        fq, sq = self._fq, self._sq
        fq.append(close)
        self.fast_sum += close
        if len(fq) > self.fast:
            self.fast_sum -= fq.popleft()
        sq.append(close)
        self.slow_sum += close
        if len(sq) > self.slow:
            self.slow_sum -= sq.popleft()
        elif len(sq) < self.slow:
            return 0
        # sign(fast_avg - slow_avg) without dividing: fast_sum/fast vs slow_sum/slow.
        diff = self.fast_sum * self.slow - self.slow_sum * self.fast
        if not diff:
            return 0
        sign = 1 if diff > 0 else -1
        prev, self.last_sign = self.last_sign, sign
        return sign if prev and sign != prev else 0


class SmaCross(BaseStrategy):
    """Fast/slow SMA crossover, long only by default, with percentage stop-loss/take-profit."""

    name = "sma_cross"
    PARAMS: Mapping[str, Param] = {
        "fast": Param(int, 10, "Bars in the fast average. Default 10.", min=1, max=100_000),
        "slow": Param(
            int, 30, "Bars in the slow average (> fast). Default 30.", min=2, max=100_000
        ),
        "qty": Param(
            Decimal, None, "Shares per entry (default 10 when notional is unset).", min=Decimal(0)
        ),
        "notional": Param(Decimal, None, "Dollars per entry instead of qty.", min=Decimal(0)),
        "stop_loss_pct": Param(
            Decimal,
            Decimal(2),
            "Exit at this % loss from the average entry price (2 = 2 %; 0 = off). Default 2.",
            min=Decimal(0),
            max=Decimal(100),
        ),
        "take_profit_pct": Param(
            Decimal,
            Decimal(4),
            "Exit at this % gain (0 = off). Default 4.",
            min=Decimal(0),
            max=Decimal(10_000),
        ),
        "allow_short": Param(bool, False, "Sell short on a cross down. Default false."),
    }

    @classmethod
    def check_params(cls, params: dict[str, Any], path: str = "strategy.params") -> None:
        problems = []
        if params["fast"] >= params["slow"]:
            problems.append(
                f"{path}.fast: must be less than {path}.slow "
                f"(fast = {params['fast']}, slow = {params['slow']})"
            )
        problems += sizing_problems(params, path)
        if problems:
            raise ConfigError(problems, "see sma_cross in the README (Strategies)")

    def __init__(self, params: Mapping[str, Any] | None = None, symbols: Sequence[str] = ()):
        full = {name: p.default for name, p in self.PARAMS.items()}
        full.update(params or {})
        super().__init__(full, symbols)
        self.fast: int = full["fast"]
        self.slow: int = full["slow"]
        self.notional: Decimal | None = full["notional"]
        self.qty: Decimal | None = full["qty"]
        if self.qty is None and self.notional is None:
            self.qty = Decimal(10)
        self.allow_short: bool = full["allow_short"]
        sl, tp = Decimal(full["stop_loss_pct"]), Decimal(full["take_profit_pct"])
        self._sl_long = 1 - sl / _HUNDRED if sl else None
        self._sl_short = 1 + sl / _HUNDRED if sl else None
        self._tp_long = 1 + tp / _HUNDRED if tp else None
        self._tp_short = 1 - tp / _HUNDRED if tp else None
        self._factors = (self._sl_long, self._tp_long, self._sl_short, self._tp_short)
        self._levels: dict[str, tuple[Decimal | None, ...]] = {}  # symbol -> ``_exit_levels``
        self._averages: dict[str, MovingAverages] = {}
        self._pending_entry: dict[str, int] = {}  # symbol -> direction to enter once flat
        self.signals: list[CrossSignal] = []

    # -- indicators -------------------------------------------------------------------------------

    def averages(self, symbol: str) -> MovingAverages:
        ma = self._averages.get(symbol)
        if ma is None:
            ma = self._averages[symbol] = MovingAverages(self.fast, self.slow)
        return ma

    def warm_up(self, bar: Bar) -> None:
        """Feed a history bar: averages and signals only, never an order."""
        self._update(bar)

    def _update(self, bar: Bar) -> int:
        ma = self._averages.get(bar.symbol) or self.averages(bar.symbol)
        sig = ma.update(bar.close)
        if sig:
            self.signals.append(CrossSignal(bar.symbol, bar.timestamp, sig, bar.close))
        return sig

    # -- trading ----------------------------------------------------------------------------------

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> list[OrderIntent]:
        symbol = bar.symbol
        close = bar.close
        ma = self._averages.get(symbol) or self.averages(symbol)
        sig = ma.update(close)
        if sig:
            self.signals.append(CrossSignal(symbol, bar.timestamp, sig, close))
        if ctx.open_orders(symbol):
            return []  # wait for the pending order before deciding again
        pos = ctx.position(symbol)
        if pos:
            reason = self._stop_or_take(symbol, pos, ctx.avg_entry_price(symbol), close)
            if reason:
                self._pending_entry.pop(symbol, None)
                return [self._exit(symbol, pos, reason)]
        if sig > 0:
            if pos < 0:
                self._pending_entry[symbol] = 1
                return [self._exit(symbol, pos, SIGNAL)]
            if pos == 0:
                return self._entry(symbol, 1, close)
        elif sig < 0:
            if pos > 0:
                if self.allow_short:
                    self._pending_entry[symbol] = -1
                return [self._exit(symbol, pos, SIGNAL)]
            if pos == 0 and self.allow_short:
                return self._entry(symbol, -1, close)
        elif pos == 0 and symbol in self._pending_entry:
            # A reversal's exit has filled: enter the other way if the trend still holds.
            direction = self._pending_entry.pop(symbol)
            if self.averages(symbol).last_sign == direction:
                return self._entry(symbol, direction, close)
        return []

    def _stop_or_take(
        self, symbol: str, pos: Decimal, entry: Decimal | None, close: Decimal
    ) -> str:
        if entry is None or entry <= 0:
            return ""
        levels = self._levels.get(symbol)
        if levels is None or levels[0] != entry:
            levels = self._levels[symbol] = self._exit_levels(entry)
        _, sl_long, tp_long, sl_short, tp_short = levels
        if pos > 0:
            if sl_long is not None and close <= sl_long:
                return STOP_LOSS
            if tp_long is not None and close >= tp_long:
                return TAKE_PROFIT
        else:
            if sl_short is not None and close >= sl_short:
                return STOP_LOSS
            if tp_short is not None and close <= tp_short:
                return TAKE_PROFIT
        return ""

    def _exit_levels(self, entry: Decimal) -> tuple[Decimal | None, ...]:
        """(entry, long stop, long take-profit, short stop, short take-profit) prices: kept
        per symbol while its entry price stays, so a held bar compares without multiplying."""
        return (
            entry,
            *(None if f is None else entry * f for f in self._factors),
        )

    def _exit(self, symbol: str, pos: Decimal, reason: str) -> OrderIntent:
        side = Side.SELL if pos > 0 else Side.BUY
        return OrderIntent(symbol, side, qty=abs(pos), strategy=self.name, reason=reason)

    def _entry(self, symbol: str, direction: int, close: Decimal) -> list[OrderIntent]:
        if direction > 0:
            if self.notional is not None:
                return [
                    OrderIntent(
                        symbol, Side.BUY, notional=self.notional, strategy=self.name, reason="entry"
                    )
                ]
            return [OrderIntent(symbol, Side.BUY, qty=self.qty, strategy=self.name, reason="entry")]
        qty = self.qty
        if self.notional is not None:
            # Alpaca has no notional or fractional short sells: whole shares only.
            qty = (self.notional / close).to_integral_value(ROUND_DOWN) if close > 0 else _ZERO
            if qty <= 0:
                return []
        return [OrderIntent(symbol, Side.SELL, qty=qty, strategy=self.name, reason="entry")]
