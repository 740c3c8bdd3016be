"""``GET /v2/account/portfolio/history`` answered from the simulated account's ``EquityHistory``.

The shape is Alpaca's (OpenAPI ``PortfolioHistory``, alpaca-py ``PortfolioHistory``):
``timestamp`` (Unix seconds, left-labelled windows), ``equity`` (as of each window's end),
``profit_loss``, ``profit_loss_pct``, ``base_value``, ``base_value_asof`` (when the base is a
previous day's close), ``timeframe``, and ``cashflow`` (``{}``: the exchange has no cash flows)
when ``cashflow_types`` is asked for. Cash values have two decimals, percentages four.

Parameters, as Alpaca documents them: ``period`` (``<n>D|W|M|A``, default ``1M``), ``timeframe``
(``1Min``, ``5Min``, ``15Min``, ``1H`` or ``1D``; by default 1Min under 7 days, 15Min under 30,
else 1D; intraday at most 30 days), ``start``, ``end`` or ``date_end`` (only two of start, end and
period), ``intraday_reporting`` (``market_hours`` 09:30-16:00 and ``extended_hours`` 04:00-20:00
on trading days, ``continuous`` around the clock), ``extended_hours`` (the deprecated switch),
``pnl_reset`` (``per_day``: each day's P/L against the previous trading day's close;
``no_reset``: against the close before the first point). ``1D`` points are trading days,
labelled and valued at 20:00 New York (today's point is the equity now). Points before the
account existed, or older than the history keeps, are left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mqd_cli import market_calendar as mc
from mqd_cli.brokers.sim.history import MINUTE, day_close
from mqd_cli.emulator.http import invalid
from mqd_cli.emulator.params import parse_bool, parse_list, parse_time
from mqd_cli.market_calendar import EXCHANGE_TZ

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.history import EquityHistory

__all__ = ["HistoryQuery", "parse_query", "portfolio_history"]

DAY = timedelta(days=1)
TIMEFRAMES = {
    "1min": ("1Min", MINUTE),
    "5min": ("5Min", 5 * MINUTE),
    "15min": ("15Min", 15 * MINUTE),
    "1h": ("1H", 60 * MINUTE),
    "1d": ("1D", DAY),
}
REPORTING = ("market_hours", "extended_hours", "continuous")
PNL_RESETS = ("per_day", "no_reset")
CASHFLOW_TYPES = {"ALL", "NONE"}
EXTENDED_OPEN, EXTENDED_CLOSE = time(4, 0), time(20, 0)
INTRADAY_MAX = timedelta(days=30)
CENT, BASIS = Decimal("0.01"), Decimal("0.0001")
_PERIOD_RE = re.compile(r"^(\d{1,4})([DWMA])$", re.IGNORECASE)
_NOMINAL_DAYS = {"D": 1, "W": 7, "M": 30, "A": 365}


@dataclass(frozen=True, kw_only=True)
class HistoryQuery:
    """A portfolio history request, normalized: the time range, the window and how to report."""

    start: datetime
    end: datetime
    timeframe: str  # Alpaca's spelling: 1Min, 5Min, 15Min, 1H, 1D
    step: timedelta
    reporting: str
    pnl_reset: str
    cashflow: bool


def _period(text: str) -> tuple[int, str]:
    m = _PERIOD_RE.match(text.strip())
    if not m or int(m.group(1)) < 1:
        raise invalid(f"invalid period: {text} (a number and D, W, M or A, e.g. 1M)")
    return int(m.group(1)), m.group(2).upper()


def _shift(at: datetime, n: int, unit: str) -> datetime:
    """``at`` moved by ``n`` periods (negative: back) on New York's calendar."""
    local = at.astimezone(EXCHANGE_TZ)
    if unit in ("D", "W"):
        return local + timedelta(days=n * (7 if unit == "W" else 1))
    months = n * (12 if unit == "A" else 1)
    year, month = divmod(local.year * 12 + local.month - 1 + months, 12)
    month += 1
    last_day = (date(year + month // 12, month % 12 + 1, 1) - DAY).day
    return local.replace(year=year, month=month, day=min(local.day, last_day))


def _instant(value: str | None, name: str) -> datetime | None:
    """RFC 3339, or a YYYY-MM-DD day taken at New York midnight."""
    if value and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise invalid(f"invalid {name}: {value}") from None
        return datetime.combine(day, time(0), EXCHANGE_TZ)
    return parse_time(value, name)


def parse_query(q: Mapping[str, str], now: datetime) -> HistoryQuery:
    """Alpaca's portfolio history parameters; a bad or conflicting one is a 422."""
    period = _period(q["period"]) if q.get("period") else None
    start = _instant(q.get("start"), "start")
    end = _instant(q.get("end"), "end")
    asked_end = end is not None or bool(q.get("date_end"))
    if q.get("date_end"):
        if end is not None:
            raise invalid("end and date_end cannot be used together")
        day_end = _instant(q["date_end"], "date_end")
        end = day_end + DAY - timedelta(microseconds=1) if day_end else None
    if start is not None and end is not None and period is not None:
        raise invalid("only two of start, end and period can be specified")
    if start is None:
        end = min(end or now, now)
        n, unit = period or (1, "M")
        start = _shift(end, -n, unit)
        span = timedelta(days=n * _NOMINAL_DAYS[unit])
    else:
        if end is None:
            end = _shift(start, period[0], period[1]) if period else now
        end = min(end, now)
        if period is None:
            span = end - start
        else:
            span = timedelta(days=period[0] * _NOMINAL_DAYS[period[1]])
    if start > end and asked_end:
        raise invalid("start must not be after end")

    raw_tf = q.get("timeframe")
    if raw_tf:
        spelled = TIMEFRAMES.get(raw_tf.strip().lower())
        if spelled is None:
            raise invalid(f"invalid timeframe: {raw_tf} (one of 1Min, 5Min, 15Min, 1H, 1D)")
        timeframe, step = spelled
    elif span < timedelta(days=7):
        timeframe, step = TIMEFRAMES["1min"]
    elif span < INTRADAY_MAX:
        timeframe, step = TIMEFRAMES["15min"]
    else:
        timeframe, step = TIMEFRAMES["1d"]
    if step < DAY and span > INTRADAY_MAX + (DAY if period is None else timedelta(0)):
        raise invalid("intraday timeframes (below 1D) can be queried for at most 30 days")

    reporting = (q.get("intraday_reporting") or "").strip().lower()
    if not reporting:
        extended = parse_bool(q.get("extended_hours"), "extended_hours")
        reporting = "extended_hours" if extended else "market_hours"
    elif reporting not in REPORTING:
        raise invalid(f"invalid intraday_reporting: {q.get('intraday_reporting')}")
    pnl_reset = (q.get("pnl_reset") or "per_day").strip().lower()
    if pnl_reset not in PNL_RESETS:
        raise invalid(f"invalid pnl_reset: {q.get('pnl_reset')} (per_day or no_reset)")
    cashflow = q.get("cashflow_types")
    if cashflow is not None:
        _cashflow_types(cashflow)
    return HistoryQuery(
        start=start,
        end=end,
        timeframe=timeframe,
        step=step,
        reporting=reporting,
        pnl_reset=pnl_reset,
        cashflow=cashflow is not None,
    )


def _cashflow_types(text: str) -> None:
    from mqd_cli.emulator.activities import ACTIVITY_TYPES

    names = [n.upper() for n in parse_list(text)]
    if not names:
        raise invalid("invalid cashflow_types: give ALL, NONE or activity types")
    bad = [n for n in names if n not in ACTIVITY_TYPES and n not in CASHFLOW_TYPES]
    if bad or (len(names) > 1 and CASHFLOW_TYPES & set(names)):
        raise invalid(f"invalid cashflow_types: {text}")


# -- the points ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    label: datetime  # the window's start (the timestamp Alpaca shows)
    value_at: datetime  # when its equity is taken (its end, within its session)
    day: date  # the New York day it belongs to (for the P/L base)


def _floor(t: datetime, step: timedelta) -> datetime:
    """``t`` rounded down to a whole ``step`` since the Unix epoch (in UTC)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((t.astimezone(UTC) - epoch) // step) * step


def _days(first: date, last: date) -> list[date]:
    return [first + i * DAY for i in range((last - first).days + 1)]


def _windows(query: HistoryQuery, now: datetime) -> list[_Window]:
    start_day = query.start.astimezone(EXCHANGE_TZ).date()
    end_day = query.end.astimezone(EXCHANGE_TZ).date()
    step = query.step
    out: list[_Window] = []
    if step >= DAY:
        today = now.astimezone(EXCHANGE_TZ).date()
        for day in mc.trading_days(start_day, end_day):
            close = day_close(day)
            if day == today and now < _session(query.reporting, day)[0]:
                continue  # today's point appears once its session has begun
            out.append(_Window(close, min(close, now), day))
        return out
    last = _floor(query.end, step)
    for day in _days(start_day, end_day):
        if query.reporting != "continuous" and not mc.is_trading_day(day):
            continue
        lo, hi = _session(query.reporting, day)
        if query.reporting == "continuous":
            t = max(lo, _floor(query.start, step)).astimezone(UTC)  # steps in absolute time
            while t < hi and t <= last:  # around the clock: [midnight, next midnight)
                out.append(_Window(t, min(t + step, now), day))
                t += step
            continue
        if day == start_day and query.start > hi:
            continue  # a start after its day's session begins with the next session
        t = _floor(lo, step)
        while t <= hi and t <= last:  # sessions: labels from the open to the close inclusive
            out.append(_Window(t, min(t + step, hi, now), day))
            t += step
    return out


def _session(reporting: str, day: date) -> tuple[datetime, datetime]:
    """The reported part of trading day ``day``: the regular session, 04:00-20:00, or all day."""
    if reporting == "market_hours":
        return mc.session_open_close(day)
    if reporting == "extended_hours":
        return (
            datetime.combine(day, EXTENDED_OPEN, EXCHANGE_TZ),
            datetime.combine(day, EXTENDED_CLOSE, EXCHANGE_TZ),
        )
    lo = datetime.combine(day, time(0), EXCHANGE_TZ)
    return lo, lo + DAY


def _cents(value: Decimal) -> float:
    return float(value.quantize(CENT)) or 0.0  # never -0.0


def portfolio_history(
    q: Mapping[str, str], history: EquityHistory, now: datetime, now_equity: Decimal
) -> dict[str, Any]:
    """The answer to ``GET /v2/account/portfolio/history?<q>`` at simulated time ``now``."""
    query = parse_query(q, now)
    points: list[tuple[_Window, Decimal]] = []
    for window in _windows(query, now):
        if (window.label > now and query.step < DAY) or window.value_at < history.first:
            continue
        if window.value_at >= now:
            value: Decimal | None = now_equity
        elif query.step >= DAY:
            value = history.close_of(window.day)
        else:
            value = history.equity_at(window.value_at)
        if value is not None:
            points.append((window, value))

    bases: dict[date, tuple[Decimal, date | None]] = {}
    if points and query.step >= DAY:
        bases = {w.day: (points[0][1], None) for w, _ in points}
    elif points:
        first_day = points[0][0].day
        for window, value in points:
            if window.day in bases:
                continue
            if query.pnl_reset == "no_reset" and bases:
                bases[window.day] = bases[first_day]
                continue
            before = mc.previous_trading_day(window.day)
            close = history.close_of(before)
            bases[window.day] = (close, before) if close else (value, None)

    out: dict[str, Any] = {
        "timestamp": [int(w.label.timestamp()) for w, _ in points],
        "equity": [_cents(v) for _, v in points],
        "profit_loss": [_cents(v - bases[w.day][0]) for w, v in points],
        "profit_loss_pct": [
            float((v / bases[w.day][0] - 1).quantize(BASIS)) or 0.0 if bases[w.day][0] else None
            for w, v in points
        ],
        "base_value": _cents(bases[points[0][0].day][0]) if points else 0.0,
        "timeframe": query.timeframe,
    }
    asof = bases[points[0][0].day][1] if points else None
    if asof is not None:
        out["base_value_asof"] = asof.isoformat()
    if query.cashflow:
        out["cashflow"] = {}
    return out
