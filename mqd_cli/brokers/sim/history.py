"""The simulated account's equity through time, for Alpaca's portfolio history.

``EquityHistory`` samples a ``SimBroker``'s equity at every whole minute of simulated time as the
emulator's clock passes it (``record(now)`` after each market step), and keeps each New York
day's closing equity (at 20:00, the end of the extended session). A sample is exact even when
time jumps: the fills since the previous sample (``broker.fills``, with their fees) are taken
back one by one to find the cash and positions at each minute, and the positions are valued at
the price feed's price at that minute (the same feed orders fill on).

Memory is bounded: the per-minute samples cover the last ``keep`` (32 days by default; Alpaca
answers intraday history for at most 30 days), the daily closes one number per day.
"""

from __future__ import annotations

from collections import deque
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.model import Side

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.broker import SimBroker

__all__ = ["DAY_CLOSE", "MINUTE", "EquityHistory", "day_close", "floor_minute"]

MINUTE = timedelta(minutes=1)
DAY_CLOSE = time(20, 0)  # a day's closing equity: New York 20:00, the end of extended hours


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def day_close(day: date) -> datetime:
    """The moment ``day``'s closing equity is taken (20:00 New York)."""
    return datetime.combine(day, DAY_CLOSE, EXCHANGE_TZ)


class EquityHistory:
    """Equity of ``broker``'s account at each whole minute since the broker was created."""

    def __init__(self, broker: SimBroker, *, keep: timedelta = timedelta(days=32)):
        if keep < MINUTE:
            raise ValueError(f"keep must be at least one minute, got {keep}")
        self._broker = broker
        self.first = floor_minute(broker.created_at)  # the first sample's time
        self._samples: deque[Decimal] = deque(maxlen=keep // MINUTE)
        self._last: datetime | None = None  # the newest sample's time
        self._closes: dict[date, Decimal] = {}
        self._fills_seen = len(broker.fills)

    @property
    def last(self) -> datetime | None:
        """The time of the newest sample (None before the first ``record``)."""
        return self._last

    def record(self, now: datetime) -> int:
        """Sample every whole minute up to ``now`` not sampled yet; returns how many were added.

        Call it after the broker has stepped to ``now``, so every fill up to ``now`` is known.
        """
        start = self.first if self._last is None else self._last + MINUTE
        end = floor_minute(now)
        if start > end:
            return 0
        count = (end - start) // MINUTE + 1
        kept = min(count, self._samples.maxlen or count)
        wanted = {end - i * MINUTE for i in range(kept)}
        day = start.astimezone(EXCHANGE_TZ).date()
        while (close := day_close(day)) <= end:
            if close >= start:
                wanted.add(close)
            day += timedelta(days=1)
        values = self._values_at(sorted(wanted))
        if count > kept:  # older minutes than the deque keeps: only their closes matter
            self._samples.clear()
        for t in sorted(wanted):
            value = values[t]
            if t >= end - (kept - 1) * MINUTE:
                self._samples.append(value)
            local = t.astimezone(EXCHANGE_TZ)
            if local.time() == DAY_CLOSE:
                self._closes[local.date()] = value
        self._last = end
        return count

    def _values_at(self, times: list[datetime]) -> dict[datetime, Decimal]:
        """Equity at each of ``times`` (ascending, none before the previous sample): the fills
        after a time are taken back from the account's present cash and positions."""
        broker = self._broker
        account = broker.account
        fills = broker.fills[self._fills_seen :]
        self._fills_seen = len(broker.fills)
        cash = account.cash
        held = {symbol: pos.qty for symbol, pos in account.positions.items()}
        out: dict[datetime, Decimal] = {}
        j = len(fills) - 1
        for t in reversed(times):
            while j >= 0 and fills[j].timestamp > t:
                fill = fills[j]
                signed = fill.qty if fill.side is Side.BUY else -fill.qty
                cash += signed * fill.price + fill.fee
                held[fill.symbol] = held.get(fill.symbol, Decimal(0)) - signed
                j -= 1
            value = cash
            for symbol, qty in held.items():
                if qty:
                    value += qty * account.price_at(symbol, t)
            out[t] = value
        return out

    def equity_at(self, t: datetime) -> Decimal | None:
        """The sample at whole minute ``t``; None before the first sample, after the newest or
        older than the samples kept."""
        if self._last is None or t > self._last or t < self.first or t != floor_minute(t):
            return None
        back = (self._last - t) // MINUTE
        if back >= len(self._samples):
            return None
        return self._samples[-1 - back]

    def close_of(self, day: date) -> Decimal | None:
        """``day``'s closing equity (20:00 New York), once that moment has been sampled."""
        return self._closes.get(day)
