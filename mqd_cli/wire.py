"""Alpaca's JSON <-> mqd's domain types, both directions.

Parsing is tolerant of what the real service does (numbers as strings or JSON numbers, nulls
present, extra keys, unknown enum values, timestamps with up to 9 fractional digits and any
offset) and strict about what must be there: a missing required field raises ``PayloadError``
naming the field. Serializing produces exactly the shapes of ``alpaca-protocol.md`` §3-4:
strings for numbers, nulls present, ``order_class: ""``, ``order_type`` duplicating ``type``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from mqd_cli.model import (
    AccountReport,
    AssetClass,
    AssetInfo,
    AssetStatus,
    Bar,
    CalendarDay,
    ClockReport,
    OrderReport,
    OrderStatus,
    OrderType,
    PositionReport,
    PositionSide,
    Side,
    TimeInForce,
    TradeEvent,
    TradeUpdate,
)


class PayloadError(ValueError):
    """A broker payload is missing something required or holds an unusable value."""


# -- scalar parsing -------------------------------------------------------------------------------


def dec(value: Any, name: str = "value") -> Decimal | None:
    """Decimal from a string or JSON number; None/"" -> None. Floats go through ``str``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PayloadError(f"{name}: expected a number, got {value!r}")
    if isinstance(value, Decimal):
        return value
    try:
        out = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise PayloadError(f"{name}: expected a number, got {value!r}") from None
    if not out.is_finite():
        raise PayloadError(f"{name}: expected a finite number, got {value!r}")
    return out


def req_dec(value: Any, name: str) -> Decimal:
    out = dec(value, name)
    if out is None:
        raise PayloadError(f"{name}: required number is missing")
    return out


_TS_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)


def ts(value: Any, name: str = "timestamp") -> datetime | None:
    """An aware UTC datetime from RFC 3339 with 0-9 fractional digits; None/"" -> None.

    Nanoseconds are truncated to microseconds. A timestamp without an offset is taken as UTC.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise PayloadError(f"{name}: expected an RFC 3339 timestamp, got {value!r}")
    m = _TS_RE.match(value.strip())
    if not m:
        raise PayloadError(f"{name}: expected an RFC 3339 timestamp, got {value!r}")
    day, hh, mm, ss, frac, off = m.groups()
    try:
        y, mo, d = (int(p) for p in day.split("-"))
        micro = int((frac or "0").ljust(6, "0")[:6])
        tz = UTC
        if off and off not in ("Z", "z"):
            sign = 1 if off[0] == "+" else -1
            digits = off[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        out = datetime(y, mo, d, int(hh), int(mm), int(ss or 0), micro, tzinfo=tz)
    except ValueError as exc:
        raise PayloadError(f"{name}: invalid timestamp {value!r}: {exc}") from None
    return out.astimezone(UTC)


def req_ts(value: Any, name: str) -> datetime:
    out = ts(value, name)
    if out is None:
        raise PayloadError(f"{name}: required timestamp is missing")
    return out


def req_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = data.get(key)
    if value is None or not isinstance(value, str | int) or isinstance(value, bool):
        raise PayloadError(f"{prefix}{key}: required string is missing")
    return str(value)


def opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def boolean(value: Any, name: str = "value", default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise PayloadError(f"{name}: expected true or false, got {value!r}")


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise PayloadError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


# -- parsing --------------------------------------------------------------------------------------


def parse_order(data: Any) -> OrderReport:
    d = _mapping(data, "order")
    p = "order."
    legs = d.get("legs") or ()
    if not isinstance(legs, list | tuple):
        raise PayloadError(f"{p}legs: expected a list")
    return OrderReport(
        id=req_str(d, "id", p),
        client_order_id=req_str(d, "client_order_id", p),
        symbol=str(d.get("symbol") or ""),
        side=Side(d.get("side") or "unknown"),
        type=OrderType(d.get("type") or d.get("order_type") or "unknown"),
        time_in_force=TimeInForce(d.get("time_in_force") or "unknown"),
        status=OrderStatus(req_str(d, "status", p)),
        qty=dec(d.get("qty"), p + "qty"),
        notional=dec(d.get("notional"), p + "notional"),
        filled_qty=dec(d.get("filled_qty"), p + "filled_qty") or Decimal("0"),
        filled_avg_price=dec(d.get("filled_avg_price"), p + "filled_avg_price"),
        created_at=req_ts(d.get("created_at"), p + "created_at"),
        updated_at=ts(d.get("updated_at"), p + "updated_at"),
        submitted_at=ts(d.get("submitted_at"), p + "submitted_at"),
        filled_at=ts(d.get("filled_at"), p + "filled_at"),
        canceled_at=ts(d.get("canceled_at"), p + "canceled_at"),
        expired_at=ts(d.get("expired_at"), p + "expired_at"),
        failed_at=ts(d.get("failed_at"), p + "failed_at"),
        replaced_at=ts(d.get("replaced_at"), p + "replaced_at"),
        replaced_by=opt_str(d.get("replaced_by")),
        replaces=opt_str(d.get("replaces")),
        limit_price=dec(d.get("limit_price"), p + "limit_price"),
        stop_price=dec(d.get("stop_price"), p + "stop_price"),
        trail_price=dec(d.get("trail_price"), p + "trail_price"),
        trail_percent=dec(d.get("trail_percent"), p + "trail_percent"),
        hwm=dec(d.get("hwm"), p + "hwm"),
        extended_hours=boolean(d.get("extended_hours"), p + "extended_hours"),
        asset_class=AssetClass(d.get("asset_class") or "us_equity"),
        asset_id=opt_str(d.get("asset_id")),
        order_class=str(d.get("order_class") or ""),
        legs=tuple(parse_order(leg) for leg in legs),
        raw=dict(d),
    )


def parse_trade_update(data: Any) -> TradeUpdate:
    """The ``data`` object of a ``trade_updates`` message."""
    d = _mapping(data, "trade update")
    event_raw = req_str(d, "event", "trade_update.")
    return TradeUpdate(
        event=TradeEvent(event_raw),
        event_raw=event_raw,
        timestamp=req_ts(d.get("timestamp") or d.get("at"), "trade_update.timestamp"),
        order=parse_order(d.get("order")),
        execution_id=opt_str(d.get("execution_id")),
        price=dec(d.get("price"), "trade_update.price"),
        qty=dec(d.get("qty"), "trade_update.qty"),
        position_qty=dec(d.get("position_qty"), "trade_update.position_qty"),
    )


def parse_position(data: Any) -> PositionReport:
    d = _mapping(data, "position")
    p = "position."
    qty = req_dec(d.get("qty"), p + "qty")
    side = PositionSide(d.get("side") or ("short" if qty < 0 else "long"))
    if side is PositionSide.SHORT and qty > 0:
        qty = -qty  # some payloads report short size unsigned; we keep it signed
    return PositionReport(
        symbol=req_str(d, "symbol", p),
        qty=qty,
        avg_entry_price=req_dec(d.get("avg_entry_price"), p + "avg_entry_price"),
        side=side,
        asset_class=AssetClass(d.get("asset_class") or "us_equity"),
        asset_id=opt_str(d.get("asset_id")),
        exchange=str(d.get("exchange") or ""),
        qty_available=dec(d.get("qty_available"), p + "qty_available"),
        market_value=dec(d.get("market_value"), p + "market_value"),
        cost_basis=dec(d.get("cost_basis"), p + "cost_basis"),
        unrealized_pl=dec(d.get("unrealized_pl"), p + "unrealized_pl"),
        current_price=dec(d.get("current_price"), p + "current_price"),
        lastday_price=dec(d.get("lastday_price"), p + "lastday_price"),
    )


def parse_account(data: Any) -> AccountReport:
    d = _mapping(data, "account")
    p = "account."
    zero = Decimal("0")
    return AccountReport(
        id=req_str(d, "id", p),
        account_number=req_str(d, "account_number", p),
        status=req_str(d, "status", p),
        currency=str(d.get("currency") or "USD"),
        cash=dec(d.get("cash"), p + "cash") or zero,
        equity=dec(d.get("equity"), p + "equity") or zero,
        buying_power=dec(d.get("buying_power"), p + "buying_power") or zero,
        portfolio_value=dec(d.get("portfolio_value"), p + "portfolio_value"),
        long_market_value=dec(d.get("long_market_value"), p + "long_market_value") or zero,
        short_market_value=dec(d.get("short_market_value"), p + "short_market_value") or zero,
        initial_margin=dec(d.get("initial_margin"), p + "initial_margin") or zero,
        maintenance_margin=dec(d.get("maintenance_margin"), p + "maintenance_margin") or zero,
        last_equity=dec(d.get("last_equity"), p + "last_equity"),
        multiplier=dec(d.get("multiplier"), p + "multiplier") or Decimal("1"),
        shorting_enabled=boolean(d.get("shorting_enabled"), p + "shorting_enabled"),
        trading_blocked=boolean(d.get("trading_blocked"), p + "trading_blocked"),
        account_blocked=boolean(d.get("account_blocked"), p + "account_blocked"),
    )


def parse_asset(data: Any) -> AssetInfo:
    d = _mapping(data, "asset")
    p = "asset."
    attrs = d.get("attributes") or []
    if not isinstance(attrs, list):
        raise PayloadError(f"{p}attributes: expected a list")
    return AssetInfo(
        id=req_str(d, "id", p),
        symbol=req_str(d, "symbol", p),
        asset_class=AssetClass(d.get("class") or d.get("asset_class") or "unknown"),
        exchange=str(d.get("exchange") or ""),
        status=AssetStatus(d.get("status") or "unknown"),
        tradable=boolean(d.get("tradable"), p + "tradable"),
        marginable=boolean(d.get("marginable"), p + "marginable"),
        shortable=boolean(d.get("shortable"), p + "shortable"),
        easy_to_borrow=boolean(d.get("easy_to_borrow"), p + "easy_to_borrow"),
        fractionable=boolean(d.get("fractionable"), p + "fractionable"),
        name=str(d.get("name") or ""),
        min_order_size=dec(d.get("min_order_size"), p + "min_order_size"),
        min_trade_increment=dec(d.get("min_trade_increment"), p + "min_trade_increment"),
        price_increment=dec(d.get("price_increment"), p + "price_increment"),
        maintenance_margin_requirement=dec(
            d.get("maintenance_margin_requirement"), p + "maintenance_margin_requirement"
        ),
        margin_requirement_long=dec(d.get("margin_requirement_long"), p + "margin_requirement_long"),
        margin_requirement_short=dec(
            d.get("margin_requirement_short"), p + "margin_requirement_short"
        ),
        attributes=tuple(str(a) for a in attrs),
    )


def parse_clock(data: Any) -> ClockReport:
    d = _mapping(data, "clock")
    return ClockReport(
        timestamp=req_ts(d.get("timestamp"), "clock.timestamp"),
        is_open=boolean(d.get("is_open"), "clock.is_open"),
        next_open=req_ts(d.get("next_open"), "clock.next_open"),
        next_close=req_ts(d.get("next_close"), "clock.next_close"),
    )


def _hhmm(value: Any, name: str) -> time | None:
    if value is None or value == "":
        return None
    text = str(value)
    m = re.fullmatch(r"(\d{2}):?(\d{2})", text)
    if not m:
        raise PayloadError(f"{name}: expected HH:MM, got {value!r}")
    return time(int(m.group(1)), int(m.group(2)))


def parse_calendar_day(data: Any) -> CalendarDay:
    d = _mapping(data, "calendar")
    try:
        day = date.fromisoformat(req_str(d, "date", "calendar."))
    except ValueError:
        raise PayloadError(f"calendar.date: expected YYYY-MM-DD, got {d.get('date')!r}") from None
    open_, close = _hhmm(d.get("open"), "calendar.open"), _hhmm(d.get("close"), "calendar.close")
    if open_ is None or close is None:
        raise PayloadError("calendar: open and close are required")
    return CalendarDay(
        date=day,
        open=open_,
        close=close,
        session_open=_hhmm(d.get("session_open"), "calendar.session_open"),
        session_close=_hhmm(d.get("session_close"), "calendar.session_close"),
    )


def parse_bar(symbol: str, data: Any) -> Bar:
    d = _mapping(data, "bar")
    n = d.get("n")
    return Bar(
        symbol=symbol,
        timestamp=req_ts(d.get("t"), "bar.t"),
        open=req_dec(d.get("o"), "bar.o"),
        high=req_dec(d.get("h"), "bar.h"),
        low=req_dec(d.get("l"), "bar.l"),
        close=req_dec(d.get("c"), "bar.c"),
        volume=dec(d.get("v"), "bar.v") or Decimal("0"),
        trade_count=int(n) if isinstance(n, int | float) and not isinstance(n, bool) else None,
        vwap=dec(d.get("vw"), "bar.vw"),
    )


# -- serializing (the emulator's side) ------------------------------------------------------------


def num(value: Decimal | int | None) -> str | None:
    """Alpaca's number strings: plain notation, trailing zeros trimmed ("178.5", "100")."""
    if value is None:
        return None
    d = Decimal(value)
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def stamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with ``Z`` and microseconds (trailing zeros trimmed)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def order_to_wire(o: OrderReport) -> dict[str, Any]:
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        "created_at": stamp(o.created_at),
        "updated_at": stamp(o.updated_at or o.created_at),
        "submitted_at": stamp(o.submitted_at or o.created_at),
        "filled_at": stamp(o.filled_at),
        "expired_at": stamp(o.expired_at),
        "canceled_at": stamp(o.canceled_at),
        "failed_at": stamp(o.failed_at),
        "replaced_at": stamp(o.replaced_at),
        "replaced_by": o.replaced_by,
        "replaces": o.replaces,
        "asset_id": o.asset_id,
        "symbol": o.symbol,
        "asset_class": o.asset_class.value,
        "notional": num(o.notional),
        "qty": num(o.qty),
        "filled_qty": num(o.filled_qty),
        "filled_avg_price": num(o.filled_avg_price),
        "order_class": o.order_class,
        "order_type": o.type.value,
        "type": o.type.value,
        "side": o.side.value,
        "position_intent": _position_intent(o),
        "time_in_force": o.time_in_force.value,
        "limit_price": num(o.limit_price),
        "stop_price": num(o.stop_price),
        "status": o.status.value,
        "extended_hours": o.extended_hours,
        "legs": [order_to_wire(leg) for leg in o.legs] if o.legs else None,
        "trail_percent": num(o.trail_percent),
        "trail_price": num(o.trail_price),
        "hwm": num(o.hwm),
        "subtag": None,
        "source": None,
        "expires_at": None,
    }


def _position_intent(o: OrderReport) -> str | None:
    intent = o.raw.get("position_intent") if o.raw else None
    if intent:
        return str(intent)
    return None


def trade_update_to_wire(u: TradeUpdate) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": u.event_raw or u.event.value,
        "timestamp": stamp(u.timestamp),
        "order": order_to_wire(u.order),
    }
    if u.event.is_fill or u.execution_id is not None:
        data["execution_id"] = u.execution_id
        data["price"] = num(u.price)
        data["qty"] = num(u.qty)
        data["position_qty"] = num(u.position_qty)
    return {"stream": "trade_updates", "data": data}


def position_to_wire(p: PositionReport) -> dict[str, Any]:
    return {
        "asset_id": p.asset_id,
        "symbol": p.symbol,
        "exchange": p.exchange,
        "asset_class": p.asset_class.value,
        "asset_marginable": True,
        "qty": num(p.qty),
        "qty_available": num(p.qty_available if p.qty_available is not None else p.qty),
        "avg_entry_price": num(p.avg_entry_price),
        "side": p.side.value,
        "market_value": num(p.market_value),
        "cost_basis": num(p.cost_basis),
        "unrealized_pl": num(p.unrealized_pl),
        "unrealized_plpc": None,
        "unrealized_intraday_pl": None,
        "unrealized_intraday_plpc": None,
        "current_price": num(p.current_price),
        "lastday_price": num(p.lastday_price),
        "change_today": None,
    }


def account_to_wire(a: AccountReport, created_at: datetime) -> dict[str, Any]:
    return {
        "id": a.id,
        "account_number": a.account_number,
        "status": a.status,
        "crypto_status": "ACTIVE",
        "currency": a.currency,
        "buying_power": num(a.buying_power),
        "regt_buying_power": num(a.buying_power),
        "non_marginable_buying_power": num(a.cash),
        "options_buying_power": num(a.cash),
        "cash": num(a.cash),
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "pending_transfer_out": "0",
        "portfolio_value": num(a.portfolio_value if a.portfolio_value is not None else a.equity),
        "equity": num(a.equity),
        "last_equity": num(a.last_equity if a.last_equity is not None else a.equity),
        "long_market_value": num(a.long_market_value),
        "short_market_value": num(a.short_market_value),
        "initial_margin": num(a.initial_margin),
        "maintenance_margin": num(a.maintenance_margin),
        "last_maintenance_margin": num(a.maintenance_margin),
        "sma": num(a.equity),
        "multiplier": num(a.multiplier),
        "shorting_enabled": a.shorting_enabled,
        "trading_blocked": a.trading_blocked,
        "transfers_blocked": False,
        "account_blocked": a.account_blocked,
        "trade_suspended_by_user": False,
        "created_at": stamp(created_at),
        "balance_asof": created_at.date().isoformat(),
        "options_approved_level": 0,
        "options_trading_level": 0,
        "intraday_adjustments": "0",
        "pending_reg_taf_fees": "0",
    }


def asset_to_wire(a: AssetInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": a.id,
        "class": a.asset_class.value,
        "exchange": a.exchange,
        "symbol": a.symbol,
        "name": a.name,
        "status": a.status.value,
        "tradable": a.tradable,
        "marginable": a.marginable,
        "shortable": a.shortable,
        "easy_to_borrow": a.easy_to_borrow,
        "fractionable": a.fractionable,
        "maintenance_margin_requirement": (
            int(a.maintenance_margin_requirement)
            if a.maintenance_margin_requirement is not None
            else None
        ),
        "margin_requirement_long": num(a.margin_requirement_long),
        "margin_requirement_short": num(a.margin_requirement_short),
        "attributes": list(a.attributes),
    }
    if a.asset_class is AssetClass.CRYPTO:
        out["min_order_size"] = num(a.min_order_size)
        out["min_trade_increment"] = num(a.min_trade_increment)
        out["price_increment"] = num(a.price_increment)
    return out


def clock_to_wire(c: ClockReport, tz: Any) -> dict[str, Any]:
    """Clock fields in the exchange's offset (``-04:00``/``-05:00``), as the real API sends."""

    def local(t: datetime) -> str:
        return t.astimezone(tz).isoformat()

    return {
        "timestamp": local(c.timestamp),
        "is_open": c.is_open,
        "next_open": local(c.next_open),
        "next_close": local(c.next_close),
    }


def calendar_day_to_wire(d: CalendarDay) -> dict[str, Any]:
    def hhmm(t: time | None, colon: bool = True) -> str | None:
        if t is None:
            return None
        return t.strftime("%H:%M" if colon else "%H%M")

    return {
        "date": d.date.isoformat(),
        "open": hhmm(d.open),
        "close": hhmm(d.close),
        "session_open": hhmm(d.session_open, colon=False),
        "session_close": hhmm(d.session_close, colon=False),
        "settlement_date": None,
    }


def bar_to_wire(b: Bar) -> dict[str, Any]:
    return {
        "t": stamp(b.timestamp),
        "o": float(b.open),
        "h": float(b.high),
        "l": float(b.low),
        "c": float(b.close),
        "v": int(b.volume),
        "n": b.trade_count if b.trade_count is not None else 0,
        "vw": float(b.vwap if b.vwap is not None else b.close),
    }


def error_body(code: int, message: str, **extra: Any) -> dict[str, Any]:
    """Alpaca's error shape: ``{"code": 8-digit int, "message": ...}`` plus context keys."""
    return {**extra, "code": code, "message": message}
