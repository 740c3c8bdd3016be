"""Broker-held protective stops (``[risk] protective_stop``, ``[risk] take_profit``).

With a protective stop configured, the engine sends an entry as an OTO order whose stop-loss leg
the broker holds until the entry fills and then works on its own: a crashed or disconnected mqd
still leaves a stop at the broker. With a take-profit too, the entry goes as a bracket (the
take-profit limit and the stop are one-cancels-other).

A distance is a percentage of the entry's reference price (``"2%"``) or a multiple of the
symbol's average true range over ``atr_bars`` bars (``"1.5atr"``). Until enough bars were seen
for the ATR, an entry goes without legs rather than with a guessed stop, and the engine says so.

Prices are rounded away from the entry to the tick Alpaca accepts (a cent at $1 and above, a
hundredth of a cent below), so a stop is never tighter than asked for, and kept at least one
tick from the reference price (Alpaca refuses a leg on the wrong side of the base price).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from mqd_cli.model import Bar, Side

ZERO = Decimal(0)
_CENT = Decimal("0.01")
_SUB_CENT = Decimal("0.0001")
_DISTANCE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|atr)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Distance:
    """How far from the entry a leg sits: ``value`` percent, or ``value`` ATRs."""

    value: Decimal
    unit: str  # "%" or "atr"

    @classmethod
    def parse(cls, text: str) -> Distance | None:
        """``"2%"`` or ``"1.5atr"``; ``""`` means none. ValueError says what is wrong."""
        if not text.strip():
            return None
        m = _DISTANCE_RE.match(text)
        if m is None:
            raise ValueError("expected a percentage like '2%' or an ATR multiple like '1.5atr'")
        value, unit = Decimal(m.group(1)), m.group(2).lower()
        if value <= 0:
            raise ValueError("the distance must be above 0")
        if unit == "%" and value >= 100:
            raise ValueError("a percentage distance must be below 100%")
        return cls(value, unit)

    def offset(self, price: Decimal, atr: Decimal | None) -> Decimal | None:
        """The distance in price at ``price``; None for an ATR distance with no ATR yet."""
        if self.unit == "%":
            return price * self.value / 100
        return None if atr is None else atr * self.value

    def __str__(self) -> str:
        return f"{self.value.normalize():f}{self.unit}"


def tick(price: Decimal) -> Decimal:
    """The price increment Alpaca accepts for equities at ``price``."""
    return _CENT if price >= 1 else _SUB_CENT


@dataclass(frozen=True)
class Legs:
    """The prices of the legs of one entry (``take_profit`` None: an OTO with a stop only)."""

    stop_price: Decimal
    take_profit: Decimal | None = None


def leg_prices(
    side: Side,
    reference: Decimal,
    stop: Distance,
    take_profit: Distance | None = None,
    atr: Decimal | None = None,
) -> Legs | None:
    """The stop (and take-profit) prices for an entry of ``side`` at ``reference``; None when
    a distance cannot be known yet (no ATR) or would put the stop at or below zero."""
    if reference <= 0:
        return None
    away = stop.offset(reference, atr)
    if away is None:
        return None
    t = tick(reference)
    long = side is Side.BUY
    below = (reference - t).quantize(t, rounding=ROUND_FLOOR)  # the nearest tick a tick away
    above = (reference + t).quantize(t, rounding=ROUND_CEILING)
    raw = reference - away if long else reference + away
    # away from the entry: a long's stop rounds down, a short's up; at least one tick away
    stop_price = raw.quantize(t, rounding=ROUND_FLOOR if long else ROUND_CEILING)
    stop_price = min(stop_price, below) if long else max(stop_price, above)
    if stop_price <= 0:
        return None
    target = None
    if take_profit is not None:
        gain = take_profit.offset(reference, atr)
        if gain is None:
            return None
        raw = reference + gain if long else reference - gain
        target = raw.quantize(t, rounding=ROUND_CEILING if long else ROUND_FLOOR)
        target = max(target, above) if long else min(target, below)
        if target <= 0:
            return None
    return Legs(stop_price, target)


class AverageTrueRange:
    """Per-symbol average true range over the last ``bars`` bars (a simple mean of the true
    ranges, updated in O(1) per bar)."""

    def __init__(self, bars: int = 14):
        self.bars = bars
        self._ranges: dict[str, deque[Decimal]] = {}
        self._sums: dict[str, Decimal] = {}
        self._close: dict[str, Decimal] = {}

    def update(self, bar: Bar) -> None:
        prev = self._close.get(bar.symbol)
        tr = bar.high - bar.low
        if prev is not None:
            tr = max(tr, abs(bar.high - prev), abs(bar.low - prev))
        window = self._ranges.setdefault(bar.symbol, deque())
        window.append(tr)
        total = self._sums.get(bar.symbol, ZERO) + tr
        if len(window) > self.bars:
            total -= window.popleft()
        self._sums[bar.symbol] = total
        self._close[bar.symbol] = bar.close

    def value(self, symbol: str) -> Decimal | None:
        """The ATR once ``bars`` bars were seen, else None."""
        window = self._ranges.get(symbol)
        if window is None or len(window) < self.bars:
            return None
        return self._sums[symbol] / len(window)


@dataclass(frozen=True)
class ProtectiveStops:
    """``[risk] protective_stop`` / ``take_profit`` / ``atr_bars``, parsed."""

    stop: Distance
    take_profit: Distance | None = None
    atr_bars: int = 14

    @classmethod
    def from_settings(cls, risk: Any) -> ProtectiveStops | None:
        """None when ``[risk] protective_stop`` is empty (the default: off)."""
        stop = Distance.parse(risk.protective_stop)
        if stop is None:
            return None
        return cls(stop, Distance.parse(risk.take_profit), int(risk.atr_bars))

    @property
    def needs_atr(self) -> bool:
        return self.stop.unit == "atr" or (
            self.take_profit is not None and self.take_profit.unit == "atr"
        )

    def describe(self) -> str:
        take = f", take-profit {self.take_profit}" if self.take_profit is not None else ""
        return f"stop {self.stop}{take}"
