"""NYSE trading days and session times, computed from the exchange's rules (no data files).

Full-day holidays (New Year's Day, Martin Luther King Jr. Day, Washington's Birthday, Good
Friday, Memorial Day, Juneteenth from 2022, Independence Day, Labor Day, Thanksgiving,
Christmas) follow NYSE Rule 7.2's observation rules: a holiday on a Saturday is observed on the
Friday before, one on a Sunday on the Monday after, except that New Year's Day on a Saturday is
not observed at all (the Friday before closes a year, and the exchange stays open). Early
closes at 13:00 New York time: the day after Thanksgiving, Christmas Eve and July 3 when they
are trading days. A short list of one-off closures (national days of mourning, Hurricane Sandy,
9/11) is kept as data because no rule produces them.

Standalone on purpose: only the standard library (``zoneinfo``), no Clock, so the simulated
exchange can serve ``/v2/clock`` and ``/v2/calendar`` from it. Functions take an explicit
``date`` or aware ``datetime``; nothing reads the system time.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "EXCHANGE_TZ",
    "NotATradingDay",
    "early_closes",
    "holidays",
    "is_early_close",
    "is_open",
    "is_trading_day",
    "next_close",
    "next_open",
    "next_trading_day",
    "previous_trading_day",
    "session_open_close",
    "trading_days",
]

EXCHANGE_TZ = ZoneInfo("America/New_York")
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)

# Closures no rule produces (NYSE notices). Kept short: they only matter for backtests of those
# days and for the calendar the simulated exchange serves.
SPECIAL_CLOSURES: dict[date, str] = {
    date(2001, 9, 11): "September 11 attacks",
    date(2001, 9, 12): "September 11 attacks",
    date(2001, 9, 13): "September 11 attacks",
    date(2001, 9, 14): "September 11 attacks",
    date(2004, 6, 11): "National Day of Mourning (Ronald Reagan)",
    date(2007, 1, 2): "National Day of Mourning (Gerald Ford)",
    date(2012, 10, 29): "Hurricane Sandy",
    date(2012, 10, 30): "Hurricane Sandy",
    date(2018, 12, 5): "National Day of Mourning (George H. W. Bush)",
    date(2025, 1, 9): "National Day of Mourning (Jimmy Carter)",
}


class NotATradingDay(ValueError):
    """Asked for the session of a weekend day or a holiday."""


# -- rules ----------------------------------------------------------------------------------------


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th ``weekday`` (Mon=0) of a month; n=-1 is the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def easter_sunday(year: int) -> date:
    """Western (Gregorian) Easter: the anonymous Gregorian algorithm (Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _observed(day: date) -> date:
    """Saturday -> the Friday before, Sunday -> the Monday after."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=256)
def holidays(year: int) -> dict[date, str]:
    """Full-day NYSE closures falling in ``year`` (observed dates), with their names."""
    out: dict[date, str] = {}
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:  # on a Saturday it is not observed (Rule 7.2)
        out[_observed(new_year)] = "New Year's Day"
    if year >= 1998:
        out[_nth_weekday(year, 1, 0, 3)] = "Martin Luther King Jr. Day"
    out[_nth_weekday(year, 2, 0, 3)] = "Washington's Birthday"
    out[easter_sunday(year) - timedelta(days=2)] = "Good Friday"
    out[_nth_weekday(year, 5, 0, -1)] = "Memorial Day"
    if year >= 2022:
        out[_observed(date(year, 6, 19))] = "Juneteenth National Independence Day"
    out[_observed(date(year, 7, 4))] = "Independence Day"
    out[_nth_weekday(year, 9, 0, 1)] = "Labor Day"
    out[_nth_weekday(year, 11, 3, 4)] = "Thanksgiving Day"
    out[_observed(date(year, 12, 25))] = "Christmas Day"
    for day, name in SPECIAL_CLOSURES.items():
        if day.year == year:
            out[day] = name
    return dict(sorted(out.items()))


def _is_weekday_open(day: date) -> bool:
    return day.weekday() < 5 and day not in holidays(day.year)


@lru_cache(maxsize=256)
def early_closes(year: int) -> dict[date, str]:
    """Trading days of ``year`` that close at 13:00 New York time, with the reason."""
    candidates = {
        _nth_weekday(year, 11, 3, 4) + timedelta(days=1): "day after Thanksgiving",
        date(year, 12, 24): "Christmas Eve",
        date(year, 7, 3): "day before Independence Day",
    }
    return {d: why for d, why in sorted(candidates.items()) if _is_weekday_open(d)}


# -- days -----------------------------------------------------------------------------------------


def is_trading_day(day: date) -> bool:
    """True on a weekday that is not an NYSE holiday or special closure."""
    if isinstance(day, datetime):
        raise TypeError("is_trading_day takes a date; use day.astimezone(EXCHANGE_TZ).date()")
    return _is_weekday_open(day)


def is_early_close(day: date) -> bool:
    return day in early_closes(day.year)


def next_trading_day(day: date) -> date:
    """The first trading day strictly after ``day``."""
    nxt = day + timedelta(days=1)
    while not is_trading_day(nxt):
        nxt += timedelta(days=1)
    return nxt


def previous_trading_day(day: date) -> date:
    """The last trading day strictly before ``day``."""
    prev = day - timedelta(days=1)
    while not is_trading_day(prev):
        prev -= timedelta(days=1)
    return prev


def trading_days(start: date, end: date) -> list[date]:
    """Trading days from ``start`` to ``end``, both inclusive."""
    out, day = [], start
    while day <= end:
        if is_trading_day(day):
            out.append(day)
        day += timedelta(days=1)
    return out


def session_open_close(day: date) -> tuple[datetime, datetime]:
    """The regular session of a trading day as aware America/New_York datetimes.

    09:30-16:00, or 09:30-13:00 on an early close. Raises ``NotATradingDay`` otherwise.
    """
    if not is_trading_day(day):
        reason = holidays(day.year).get(day) or day.strftime("%A")
        raise NotATradingDay(f"{day.isoformat()} is not a trading day ({reason})")
    close = EARLY_CLOSE if is_early_close(day) else REGULAR_CLOSE
    return (
        datetime.combine(day, REGULAR_OPEN, EXCHANGE_TZ),
        datetime.combine(day, close, EXCHANGE_TZ),
    )


# -- instants -------------------------------------------------------------------------------------


def _local(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: pass an aware datetime")
    return at.astimezone(EXCHANGE_TZ)


def is_open(at: datetime) -> bool:
    """Is the regular session open at ``at``? (open inclusive, close exclusive)"""
    local = _local(at)
    if not is_trading_day(local.date()):
        return False
    open_, close = session_open_close(local.date())
    return open_ <= local < close


def next_open(at: datetime) -> datetime:
    """The first session open strictly after ``at`` (New York time)."""
    local = _local(at)
    day = local.date()
    if is_trading_day(day) and session_open_close(day)[0] > local:
        return session_open_close(day)[0]
    return session_open_close(next_trading_day(day))[0]


def next_close(at: datetime) -> datetime:
    """The first session close strictly after ``at`` (New York time)."""
    local = _local(at)
    day = local.date()
    if is_trading_day(day) and session_open_close(day)[1] > local:
        return session_open_close(day)[1]
    return session_open_close(next_trading_day(day))[1]
