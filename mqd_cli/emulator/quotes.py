"""The latest market data of the simulated exchange, from the price walk its orders fill on.

``LatestData(broker, now, seed)`` answers, for one asset at simulated time ``now``:

* the latest trade: the walk's price now (``broker.last_price``, what a market order fills at),
  at ``now``; under ``market_hours = "nyse"`` an equity outside its 04:00-20:00 trading hours
  shows the close of its last bar instead, at that bar's minute;
* the latest quote: bid and ask one basis point either side of that price (at least one tick,
  so the spread is two ticks or two basis points), at ``now``;
* the latest minute bar: the last complete one-minute bar (a bar still forming would show its
  future close);
* the daily bar and the one before: the day so far (complete minutes) and the previous day with
  bars, days starting at midnight New York (crypto: midnight Chicago, as Alpaca's crypto daily
  bars do: ``"t":"2024-11-01T05:00:00Z"`` in the snapshot quoted in ccxt/ccxt#24140).

Sizes, exchange codes and trade ids are made up, deterministically from the seed, symbol and
minute. The shapes are Alpaca's: stocks ``t x p s c i z`` (trades) and ``t ax ap as bx bp bs c z``
(quotes); crypto ``t p s tks i`` and ``t bp bs ap as``; bars ``t o h l c v n vw`` (alpaca-py
``Trade``, ``Quote``, ``Bar``; examples in the data API's OpenAPI and alpaca-py's
tests/data/test_historical_stock_data.py).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from mqd_cli.brokers.sim.history import MINUTE, floor_minute
from mqd_cli.brokers.sim.hours import bar_in_nyse_hours, keeps_nyse_hours
from mqd_cli.brokers.sim.prices import tick_for
from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.model import AssetClass, AssetInfo, Bar
from mqd_cli.wire import format as wire_format

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.broker import SimBroker

__all__ = ["LatestData", "daily_bar"]

CRYPTO_TZ = ZoneInfo("America/Chicago")
HALF_HOUR = timedelta(minutes=30)
HALF_SPREAD = Decimal("0.0001")  # one basis point either side of the last price
DAYS_BACK = 10  # how far back a daily or minute bar is looked for (weekends, holidays)
# Tape by listing exchange: A = NYSE, B = the other exchanges (ARCA, AMEX, BATS), C = Nasdaq.
_TAPES = {"NYSE": "A", "NASDAQ": "C"}
_SIP_EXCHANGES = ("Q", "P", "K", "Z", "V", "N")


def daily_bar(bars: list[Bar], start: datetime) -> Bar | None:
    """``bars`` (oldest first) merged into one bar starting at ``start``."""
    if not bars:
        return None
    volume = sum((b.volume for b in bars), Decimal(0))
    weighted = sum(((b.vwap or b.close) * b.volume for b in bars), Decimal(0))
    vwap = (weighted / volume).quantize(Decimal("0.000001")) if volume else bars[-1].close
    return Bar(
        symbol=bars[0].symbol,
        timestamp=start,
        open=bars[0].open,
        high=max(b.high for b in bars),
        low=min(b.low for b in bars),
        close=bars[-1].close,
        volume=volume,
        trade_count=sum(b.trade_count or 0 for b in bars),
        vwap=vwap,
    )


class LatestData:
    """The latest trade, quote and bars of the simulated market at ``now``."""

    def __init__(self, broker: SimBroker, now: datetime, seed: int):
        self.broker = broker
        self.now = now
        self.minute = floor_minute(now)  # bars starting before it are complete
        self.seed = seed

    def _rng(self, asset: AssetInfo, part: str, at: datetime | None = None) -> random.Random:
        minute = floor_minute(at) if at is not None else self.minute
        return random.Random(f"{self.seed}|{asset.symbol}|{minute.timestamp()}|{part}")

    @staticmethod
    def _crypto(asset: AssetInfo) -> bool:
        return asset.asset_class is AssetClass.CRYPTO

    def _exchange(self, asset: AssetInfo, feed: str, part: str, at: datetime | None = None) -> str:
        if feed == "iex":
            return "V"
        return self._rng(asset, part, at).choice(_SIP_EXCHANGES)

    def last(self, asset: AssetInfo) -> tuple[Decimal, datetime]:
        """The last trade's price and time: the walk now, or, for an equity that keeps NYSE
        hours outside them, its last bar's close in that bar's minute."""
        nyse = self.broker.settings.market_hours == "nyse"
        if keeps_nyse_hours(asset, nyse) and not bar_in_nyse_hours(self.minute, MINUTE):
            bar = self.minute_bar(asset)
            if bar is not None:
                return bar.close, bar.timestamp
        return self.broker.last_price(asset.symbol), self.now

    def trade(self, asset: AssetInfo, feed: str = "iex") -> dict[str, Any]:
        price, at = self.last(asset)
        rng = self._rng(asset, "trade", at)  # the same trade while no newer one happens
        trade_id = int(floor_minute(at).timestamp()) // 60 * 1000 + rng.randrange(1000)
        if self._crypto(asset):
            return {
                "t": wire_format.stamp(at),
                "p": float(price),
                "s": float(Decimal(rng.randint(1, 50_000)) / 10_000),
                "tks": rng.choice("BS"),
                "i": trade_id,
            }
        return {
            "t": wire_format.stamp(at),
            "x": self._exchange(asset, feed, "trade-x", at),
            "p": float(price),
            "s": rng.randint(1, 5) * 100,
            "c": ["@"],
            "i": trade_id,
            "z": _TAPES.get(asset.exchange, "B"),
        }

    def bid_ask(self, asset: AssetInfo) -> tuple[Decimal, Decimal]:
        """Bid and ask around the last price: one basis point either side, at least a tick."""
        price = self.last(asset)[0]
        tick = asset.price_increment if self._crypto(asset) and asset.price_increment else None
        tick = tick or tick_for(price)
        half = max(tick, (price * HALF_SPREAD).quantize(tick, rounding=ROUND_HALF_UP))
        bid = price - half if price - half > 0 else price
        return bid, price + half

    def quote(self, asset: AssetInfo, feed: str = "iex") -> dict[str, Any]:
        bid, ask = self.bid_ask(asset)
        rng = self._rng(asset, "quote")
        if self._crypto(asset):
            return {
                "t": wire_format.stamp(self.now),
                "bp": float(bid),
                "bs": float(Decimal(rng.randint(1, 50_000)) / 10_000),
                "ap": float(ask),
                "as": float(Decimal(rng.randint(1, 50_000)) / 10_000),
            }
        return {
            "t": wire_format.stamp(self.now),
            "ax": self._exchange(asset, feed, "quote-ax"),
            "ap": float(ask),
            "as": rng.randint(1, 10),
            "bx": self._exchange(asset, feed, "quote-bx"),
            "bp": float(bid),
            "bs": rng.randint(1, 10),
            "c": ["R"],
            "z": _TAPES.get(asset.exchange, "B"),
        }

    # -- bars -------------------------------------------------------------------------------------

    def _bars(self, asset: AssetInfo, start: datetime, end: datetime, step: timedelta) -> list[Bar]:
        return self.broker.bars(asset.symbol, start, min(end, self.minute), step)

    def _day_start(self, asset: AssetInfo, day_offset: int = 0) -> datetime:
        zone = CRYPTO_TZ if self._crypto(asset) else EXCHANGE_TZ
        day = self.now.astimezone(zone).date() - timedelta(days=day_offset)
        return datetime.combine(day, time(0), zone)

    def _day(self, asset: AssetInfo, start: datetime) -> Bar | None:
        """The bar of the (local) day beginning at ``start``, from complete minutes: half-hour
        bars, then minutes for the part of the last half hour that has passed."""
        end = datetime.combine(start.date() + timedelta(days=1), time(0), start.tzinfo)
        until = min(end, self.minute)
        if until <= start:
            return None
        first = start.astimezone(UTC)  # half hours counted in absolute time (DST days)
        whole = first + ((until - first) // HALF_HOUR) * HALF_HOUR
        bars = self._bars(asset, first, whole, HALF_HOUR) + self._bars(asset, whole, until, MINUTE)
        return daily_bar(bars, first)

    def daily_bars(self, asset: AssetInfo) -> tuple[Bar | None, Bar | None]:
        """The latest day's bar and the previous day's (days without bars are skipped)."""
        found: list[Bar] = []
        for back in range(DAYS_BACK):
            bar = self._day(asset, self._day_start(asset, back))
            if bar is not None:
                found.append(bar)
                if len(found) == 2:
                    break
        return (found[0] if found else None, found[1] if len(found) > 1 else None)

    def minute_bar(self, asset: AssetInfo) -> Bar | None:
        """The last complete one-minute bar (searching back over closed days)."""
        bars = self._bars(asset, self.minute - HALF_HOUR, self.minute, MINUTE)
        if bars:
            return bars[-1]
        for back in range(DAYS_BACK):
            start = self._day_start(asset, back)
            halves = self._bars(asset, start, start + timedelta(days=1), HALF_HOUR)
            if halves:
                last = halves[-1].timestamp
                bars = self._bars(asset, last, last + HALF_HOUR, MINUTE)
                if bars:
                    return bars[-1]
        return None

    def snapshot(self, asset: AssetInfo, feed: str = "iex") -> dict[str, Any]:
        """Alpaca's snapshot: latestTrade, latestQuote, minuteBar, dailyBar, prevDailyBar."""
        minute = self.minute_bar(asset)
        day, previous = self.daily_bars(asset)
        return {
            "latestTrade": self.trade(asset, feed),
            "latestQuote": self.quote(asset, feed),
            "minuteBar": wire_format.bar_to_wire(minute) if minute else None,
            "dailyBar": wire_format.bar_to_wire(day) if day else None,
            "prevDailyBar": wire_format.bar_to_wire(previous) if previous else None,
        }
