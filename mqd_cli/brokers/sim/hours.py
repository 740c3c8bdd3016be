"""When the simulated exchange trades: always, or NYSE sessions (``market_hours = "nyse"``).

Under NYSE hours equities trade in the regular session (extended-hours orders 04:00-20:00 New
York time) on trading days; crypto trades around the clock either way. Day orders expire at
their session's close, opg/cls orders fill only at the next open / the close (the auction).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from mqd_cli.brokers.sim.orders import SimOrder
from mqd_cli.model import AssetClass, AssetInfo, CalendarDay, ClockReport, TimeInForce

__all__ = [
    "EXT_CLOSE",
    "EXT_OPEN",
    "bar_in_nyse_hours",
    "calendar",
    "clock_report",
    "in_session",
    "keeps_nyse_hours",
    "schedule",
    "session_end",
]

EXT_OPEN, EXT_CLOSE = time(4, 0), time(20, 0)


def keeps_nyse_hours(asset: AssetInfo, nyse: bool) -> bool:
    """Whether ``asset`` trades only in NYSE sessions (never crypto)."""
    return nyse and asset.asset_class is not AssetClass.CRYPTO


def in_session(o: SimOrder, t: datetime) -> bool:
    """Whether ``t`` is in the NYSE session of ``o`` (extended hours when it asks for them);
    only for orders that keep NYSE hours."""
    from mqd_cli import market_calendar as mc

    local = t.astimezone(mc.EXCHANGE_TZ)
    if not mc.is_trading_day(local.date()):
        return False
    if o.extended_hours:
        return EXT_OPEN <= local.time() < EXT_CLOSE
    return mc.is_open(t)


def schedule(o: SimOrder, now: datetime) -> None:
    """Set the expiry and auction moments of an order that keeps NYSE hours."""
    from mqd_cli import market_calendar as mc

    if o.tif is TimeInForce.OPG:
        o.auction_at = mc.next_open(now)
    elif o.tif is TimeInForce.CLS:
        o.auction_at = session_end(now, extended=False)
    elif o.tif is TimeInForce.DAY:
        o.expires_at = session_end(now, extended=o.extended_hours)


def session_end(now: datetime, *, extended: bool) -> datetime:
    """The close (16:00, 13:00 on early closes; 20:00 with extended hours) of the session that
    is running at ``now`` or comes next."""
    from mqd_cli import market_calendar as mc

    local = now.astimezone(mc.EXCHANGE_TZ)
    day = local.date()
    for _ in range(2):
        if mc.is_trading_day(day):
            close = mc.session_open_close(day)[1]
            if extended:
                close = datetime.combine(day, EXT_CLOSE, mc.EXCHANGE_TZ)
            if close > local:
                return close
        day = mc.next_trading_day(day)
    close = mc.session_open_close(day)[1]
    return datetime.combine(day, EXT_CLOSE, mc.EXCHANGE_TZ) if extended else close


def bar_in_nyse_hours(start: datetime, timeframe: timedelta) -> bool:
    """Whether a bar starting at ``start`` lies in a trading day's 04:00-20:00 (daily and
    longer bars: on a trading day)."""
    from mqd_cli import market_calendar as mc

    local = start.astimezone(mc.EXCHANGE_TZ)
    if timeframe >= timedelta(days=1):
        return mc.is_trading_day(local.date())
    return mc.is_trading_day(local.date()) and EXT_OPEN <= local.time() < EXT_CLOSE


def clock_report(now: datetime, *, nyse: bool) -> ClockReport:
    from mqd_cli import market_calendar as mc

    return ClockReport(
        timestamp=now,
        is_open=True if not nyse else mc.is_open(now),
        next_open=mc.next_open(now),
        next_close=mc.next_close(now),
    )


def calendar(start: date, end: date) -> list[CalendarDay]:
    from mqd_cli import market_calendar as mc

    out = []
    for day in mc.trading_days(start, end):
        open_, close = mc.session_open_close(day)
        out.append(
            CalendarDay(
                date=day,
                open=open_.time(),
                close=close.time(),
                session_open=EXT_OPEN,
                session_close=EXT_CLOSE,
            )
        )
    return out
