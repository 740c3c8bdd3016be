"""Bars for the simulated exchange's data API, from the same feed its orders fill on.

A CSV replay is re-bucketed to the asked length; the random walk is aggregated when the length
is a whole multiple of its bar interval, and otherwise gets its own walk of that bar length
(same seed). Under NYSE hours equity bars are only the trading days' 04:00-20:00.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from mqd_cli.brokers.sim.assets import START_PRICES
from mqd_cli.brokers.sim.hours import bar_in_nyse_hours, keeps_nyse_hours
from mqd_cli.brokers.sim.prices import CsvPrices, PriceSource, SyntheticPrices
from mqd_cli.model import AssetInfo, Bar

__all__ = ["aggregate", "feed_bars"]


def feed_bars(
    asset: AssetInfo,
    start: datetime,
    end: datetime,
    timeframe: timedelta,
    *,
    prices: PriceSource,
    synthetic: SyntheticPrices,
    other_walks: dict[timedelta, SyntheticPrices],
    seed: int,
    nyse: bool,
) -> list[Bar]:
    """Bars of ``asset`` starting in [start, end). ``other_walks`` caches the walks (seeded
    with ``seed``) of bar lengths that are not a multiple of ``synthetic``'s."""
    sym = asset.symbol
    if isinstance(prices, CsvPrices) and sym in prices.symbols:
        out = aggregate(prices.bars(sym, start, end), timeframe)
    else:
        base = synthetic.timeframe
        if timeframe >= base and timeframe % base == timedelta(0):
            out = synthetic.bars(sym, start, end, timeframe)
        else:
            walk = other_walks.get(timeframe)
            if walk is None:
                walk = SyntheticPrices(seed, timeframe=timeframe, start_prices=START_PRICES)
                other_walks[timeframe] = walk
            out = walk.bars(sym, start, end)
    if keeps_nyse_hours(asset, nyse):
        out = [b for b in out if bar_in_nyse_hours(b.timestamp, timeframe)]
    return out


def aggregate(bars: list[Bar], timeframe: timedelta) -> list[Bar]:
    """Merge consecutive bars into ``timeframe`` buckets aligned to the Unix epoch."""
    if not bars:
        return []
    epoch = datetime(1970, 1, 1, tzinfo=bars[0].timestamp.tzinfo)
    out: list[Bar] = []
    for b in bars:
        start = epoch + ((b.timestamp - epoch) // timeframe) * timeframe
        if out and out[-1].timestamp == start:
            last = out[-1]
            out[-1] = replace(
                last,
                high=max(last.high, b.high),
                low=min(last.low, b.low),
                close=b.close,
                volume=last.volume + b.volume,
            )
        else:
            out.append(replace(b, timestamp=start))
    return out
