"""Matching on the simulated exchange: when a working order fills, at what price, how much.

An order is checked at a series of ``MarketPoint``s: the price at its submission moment, then
each later bar. Complete bars count with their whole range (a buy limit fills when
low <= limit, at min(open, limit); stops trigger on the high/low and fill at max/min(open,
stop) plus slippage); the bar still running at ``now`` counts at its open only, so nothing
after ``clock.now()`` is used. At most ``liquidity`` shares per order per bar; with
probability ``partial_fill_probability`` a fill takes only 10-90 % of what it could.

``SimBroker.step`` applies the outcome (fills, expiries, events); this module only decides.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import TYPE_CHECKING

from mqd_cli.brokers.sim.hours import in_session, keeps_nyse_hours
from mqd_cli.brokers.sim.orders import NANO, ZERO, SimOrder, is_whole
from mqd_cli.brokers.sim.prices import to_tick
from mqd_cli.model import AssetClass, Bar, OrderType, Side, TimeInForce

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.prices import PriceSource
    from mqd_cli.config.settings import SimSettings

__all__ = ["MAX_CATCHUP_BARS", "MarketPoint", "fill_qty", "market_points", "match_price"]

# Catching up after a long clock jump: at most this many bars per order are replayed.
MAX_CATCHUP_BARS = 50_000


@dataclass(frozen=True)
class MarketPoint:
    """One moment an order is checked against the market."""

    ts: datetime
    prio: int  # fills (0) before expiry (9) at the same moment
    seq: int
    bar_start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    kind: str = "trade"  # trade | auction | expire


def market_points(
    o: SimOrder,
    now: datetime,
    prices: PriceSource,
    cache: dict[tuple[str, datetime], list[Bar]],
    *,
    nyse: bool,
) -> list[MarketPoint]:
    """The moments since ``o`` was last seen, up to ``now``, at which it may fill or expire."""
    out: list[MarketPoint] = []
    seen = o.seen_until
    if o.expires_at is not None and (seen is None or seen < o.expires_at) and (o.expires_at <= now):
        p = o.expires_at
        out.append(MarketPoint(p, 9, o.seq, p, ZERO, ZERO, ZERO, ZERO, kind="expire"))
    if o.auction_at is not None:
        at = o.auction_at
        if (seen is None or seen < at) and at <= now:
            price = prices.price_at(o.symbol, at)
            out.append(MarketPoint(at, 0, o.seq, at, price, price, price, price, kind="auction"))
        return out
    tf = prices.timeframe_of(o.symbol)
    restricted = keeps_nyse_hours(o.asset, nyse)
    if seen is None:
        seen = o.created_at
        if not restricted or in_session(o, seen):
            price = prices.price_at(o.symbol, seen)
            out.append(MarketPoint(seen, 0, o.seq, seen, price, price, price, price))
    seen = max(seen, now - tf * MAX_CATCHUP_BARS)
    if seen >= now:
        return out  # no bar ends or starts after what it has seen (an order sent just now)
    key = (o.symbol, seen)
    bars = cache.get(key)
    if bars is None:
        bars = cache[key] = prices.bars(o.symbol, seen - tf, now)
    for b in bars:
        end = b.timestamp + tf
        if end <= now:
            if end <= seen or (restricted and not in_session(o, b.timestamp)):
                continue
            if b.timestamp < o.created_at:  # the submission bar: only its close is after
                c = b.close
                out.append(MarketPoint(end, 0, o.seq, b.timestamp, c, c, c, c))
            else:
                out.append(MarketPoint(end, 0, o.seq, b.timestamp, b.open, b.high, b.low, b.close))
        elif b.timestamp > seen and (not restricted or in_session(o, b.timestamp)):
            first = b.open
            out.append(MarketPoint(b.timestamp, 0, o.seq, b.timestamp, first, first, first, first))
    return out


def match_price(o: SimOrder, p: MarketPoint, settings: SimSettings) -> Decimal | None:
    """The fill price at this point, or None when the order is not marketable.

    Updates the order's trigger state (stop-limit triggered, trailing stop and its mark).
    """
    buy = o.side is Side.BUY
    kind = o.type
    if kind is OrderType.MARKET:
        return _slipped(o, p.open, settings)
    if kind is OrderType.LIMIT:
        return _limit_fill(buy, o.limit_price, p)
    if kind is OrderType.STOP:
        trigger = _stop_trigger(buy, o.stop_price, p)
        return None if trigger is None else _slipped(o, trigger, settings)
    if kind is OrderType.STOP_LIMIT:
        if not o.triggered:
            trigger = _stop_trigger(buy, o.stop_price, p)
            if trigger is None:
                return None
            o.triggered = True
            limit = o.limit_price  # admission requires it for a stop-limit order
            if limit is not None and ((buy and trigger <= limit) or (not buy and trigger >= limit)):
                return trigger
        return _limit_fill(buy, o.limit_price, p)
    if kind is OrderType.TRAILING_STOP:
        if o.hwm is None:
            o.hwm = p.open
        stop = _trail_stop(o)
        o.stop_price = stop
        trigger = _stop_trigger(buy, stop, p)
        o.hwm = max(o.hwm, p.high) if not buy else min(o.hwm, p.low)
        if trigger is None:
            o.stop_price = _trail_stop(o)
            return None
        return _slipped(o, trigger, settings)
    return None


def fill_qty(
    o: SimOrder, price: Decimal, bar_start: datetime, settings: SimSettings, rng: random.Random
) -> Decimal | None:
    """How much of ``o`` fills at ``price`` in the bar starting at ``bar_start``: zero when the
    bar's liquidity is spent, None when a fok order cannot fill whole or a notional is too
    small to buy any qty."""
    if o.target_qty is None and o.notional is not None:
        # notional: the quantity is fixed by the first fill's price
        o.target_qty = (o.notional / price).quantize(NANO, rounding=ROUND_DOWN)
        if o.target_qty <= 0:
            return None
    remaining = o.remaining or ZERO
    unit = _unit(o)
    liquidity = Decimal(settings.liquidity)
    cap = remaining
    if liquidity > 0:
        cap = max(ZERO, liquidity - o.bar_fills.get(bar_start, ZERO))
        cap = min(remaining, (cap / unit).to_integral_value(ROUND_DOWN) * unit)
    if o.tif is TimeInForce.FOK:
        return remaining if cap >= remaining else None
    if cap <= 0:
        return ZERO
    roll = rng.random()
    if roll < settings.partial_fill_probability and cap > unit:
        share = Decimal(rng.randint(10, 90)) / 100
        part = (cap * share / unit).to_integral_value(ROUND_DOWN) * unit
        return max(unit, min(part, cap))
    return cap


def _reached(level: Decimal | None, p: MarketPoint, *, rising: bool) -> Decimal | None:
    """The price at which the market reaches ``level`` in this point's range, moving up
    (``rising``) or down: the open when it is already beyond, else the level itself."""
    if level is None:
        return None
    if rising:
        if p.open >= level:
            return p.open
        return level if p.high >= level else None
    if p.open <= level:
        return p.open
    return level if p.low <= level else None


def _limit_fill(buy: bool, limit: Decimal | None, p: MarketPoint) -> Decimal | None:
    return _reached(limit, p, rising=not buy)  # a buy limit waits for the price to come down


def _stop_trigger(buy: bool, stop: Decimal | None, p: MarketPoint) -> Decimal | None:
    return _reached(stop, p, rising=buy)  # a buy stop waits for the price to go up


def _slipped(o: SimOrder, price: Decimal, settings: SimSettings) -> Decimal:
    bps = Decimal(settings.slippage_bps)
    if not bps:
        return price
    if o.side is Side.BUY:
        return to_tick(price * (1 + bps / 10_000), ROUND_UP)
    return to_tick(price * (1 - bps / 10_000), ROUND_DOWN)


def _trail_stop(o: SimOrder) -> Decimal:
    hwm = o.hwm or ZERO
    sign = -1 if o.side is Side.SELL else 1
    if o.trail_price is not None:
        stop = hwm + sign * o.trail_price
    else:
        stop = hwm * (1 + sign * (o.trail_percent or ZERO) / 100)
    return to_tick(max(stop, Decimal("0.0001")))


def _unit(o: SimOrder) -> Decimal:
    """The smallest quantity ``o`` fills in: the crypto increment, a nano-share for fractional
    and notional orders, else one share."""
    if o.asset.asset_class is AssetClass.CRYPTO:
        return o.asset.min_trade_increment or NANO
    if o.notional is not None or (o.target_qty is not None and not is_whole(o.target_qty)):
        return NANO
    return Decimal(1)
