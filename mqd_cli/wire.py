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
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Context, Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

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
    WireEnum,
)


class PayloadError(ValueError):
    """A broker payload is missing something required or holds an unusable value."""


# -- scalar parsing -------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value for an error message: repr, cut to 60 characters (a payload can hold anything)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's int->str digit limit
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


# No price, quantity or ratio a broker sends is beyond 1e±30; refusing such values keeps downstream
# arithmetic (quantize, formatting) inside Decimal's 28-digit context instead of failing far away.
_MAX_ADJUSTED_EXPONENT = 30


def dec(value: Any, name: str = "value") -> Decimal | None:
    """Decimal from a string or JSON number; None/"" -> None. Floats go through ``str``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise PayloadError(f"{name}: expected a number, got {_show(value)}")
    try:
        out = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise PayloadError(f"{name}: expected a number, got {_show(value)}") from None
    if not out.is_finite():
        raise PayloadError(f"{name}: expected a finite number, got {_show(value)}")
    if not out.is_zero() and abs(out.adjusted()) > _MAX_ADJUSTED_EXPONENT:
        raise PayloadError(f"{name}: number out of range, got {_show(value)}")
    return out


def req_dec(value: Any, name: str) -> Decimal:
    out = dec(value, name)
    if out is None:
        raise PayloadError(f"{name}: required number is missing")
    return out


_TS_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)


def ts(value: Any, name: str = "timestamp") -> datetime | None:
    """An aware UTC datetime from RFC 3339 with 0-9 fractional digits; None/"" -> None.

    Nanoseconds are truncated to microseconds. A timestamp without an offset is taken as UTC,
    and so is a naive ``datetime``; an aware one is converted to UTC.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise PayloadError(f"{name}: expected an RFC 3339 timestamp, got {_show(value)}")
    m = _TS_RE.fullmatch(value.strip())
    if not m:
        raise PayloadError(f"{name}: expected an RFC 3339 timestamp, got {_show(value)}")
    y, mo, d, hh, mm, ss, frac, off = m.groups()
    try:
        tz = UTC
        if off and off not in ("Z", "z"):
            digits = off[1:].replace(":", "")
            off_h, off_m = int(digits[:2]), int(digits[2:])
            if off_m > 59:
                raise ValueError(f"offset minutes {off_m} > 59")
            sign = 1 if off[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=off_h, minutes=off_m))
        micro = int((frac or "0").ljust(6, "0")[:6])
        out = datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss or 0), micro, tzinfo=tz)
        return out.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise PayloadError(f"{name}: invalid timestamp {_show(value)}: {exc}") from None


def req_ts(value: Any, name: str) -> datetime:
    out = ts(value, name)
    if out is None:
        raise PayloadError(f"{name}: required timestamp is missing")
    return out


def req_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str:
    """A required, non-empty identifier or enum text; JSON integers are taken as text."""
    out = opt_str(data.get(key), prefix + key)
    if out is None:
        raise PayloadError(f"{prefix}{key}: required string is missing")
    return out


def opt_str(value: Any, name: str = "value") -> str | None:
    """Optional text; None/"" -> None; a JSON integer becomes its digits."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # beyond Python's int->str digit limit
            pass
    raise PayloadError(f"{name}: expected a string, got {type(value).__name__}")


def _text(value: Any, name: str) -> str:
    """An optional string field as text, "" when null or absent."""
    return opt_str(value, name) or ""


def boolean(value: Any, name: str = "value", default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PayloadError(f"{name}: expected true or false, got {_show(value)}")


def _req_bool(data: Mapping[str, Any], key: str, prefix: str) -> bool:
    if data.get(key) is None:
        raise PayloadError(f"{prefix}{key}: required boolean is missing")
    return boolean(data[key], prefix + key)


_E = TypeVar("_E", bound=WireEnum)


def _enum(cls: type[_E], value: Any, name: str, default: str = "unknown") -> _E:
    """An enum member; unknown text -> ``UNKNOWN`` (the raw text stays in ``raw``)."""
    if value is None or value == "":
        return cls(default)
    if not isinstance(value, str):
        raise PayloadError(f"{name}: expected a string, got {_show(value)}")
    return cls(value)


def _asset_class(value: Any, name: str) -> AssetClass:
    # Absent or null predates the field (equities); "" is what mleg orders carry: not applicable.
    return _enum(AssetClass, value, name, "us_equity" if value is None else "")


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    if data is None:
        raise PayloadError(f"{what}: required object is missing")
    if not isinstance(data, Mapping):
        raise PayloadError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _list(value: Any, name: str) -> list[Any] | tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise PayloadError(f"{name}: expected a list, got {type(value).__name__}")
    return value


# -- parsing --------------------------------------------------------------------------------------


def parse_order(data: Any) -> OrderReport:
    return _parse_order(data, "order")


def _parse_order(data: Any, where: str) -> OrderReport:
    d = _mapping(data, where)
    p = where + "."
    legs = _list(d.get("legs"), p + "legs")
    return OrderReport(
        id=req_str(d, "id", p),
        client_order_id=req_str(d, "client_order_id", p),
        symbol=_text(d.get("symbol"), p + "symbol"),
        side=_enum(Side, d.get("side"), p + "side"),
        type=_enum(OrderType, d.get("type") or d.get("order_type"), p + "type"),
        time_in_force=_enum(TimeInForce, d.get("time_in_force"), p + "time_in_force"),
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
        replaced_by=opt_str(d.get("replaced_by"), p + "replaced_by"),
        replaces=opt_str(d.get("replaces"), p + "replaces"),
        limit_price=dec(d.get("limit_price"), p + "limit_price"),
        stop_price=dec(d.get("stop_price"), p + "stop_price"),
        trail_price=dec(d.get("trail_price"), p + "trail_price"),
        trail_percent=dec(d.get("trail_percent"), p + "trail_percent"),
        hwm=dec(d.get("hwm"), p + "hwm"),
        extended_hours=boolean(d.get("extended_hours"), p + "extended_hours"),
        asset_class=_asset_class(d.get("asset_class"), p + "asset_class"),
        asset_id=opt_str(d.get("asset_id"), p + "asset_id"),
        order_class=_text(d.get("order_class"), p + "order_class"),
        legs=tuple(_parse_order(leg, f"{p}legs[{i}]") for i, leg in enumerate(legs)),
        expires_at=ts(d.get("expires_at"), p + "expires_at"),
        cancel_requested_at=ts(d.get("cancel_requested_at"), p + "cancel_requested_at"),
        position_intent=opt_str(d.get("position_intent"), p + "position_intent"),
        raw=dict(d),
    )


def parse_trade_update(data: Any) -> TradeUpdate:
    """The ``data`` object of a ``trade_updates`` message."""
    d = _mapping(data, "trade_update")
    p = "trade_update."
    event_raw = req_str(d, "event", p)
    return TradeUpdate(
        event=TradeEvent(event_raw),
        event_raw=event_raw,
        timestamp=req_ts(d.get("timestamp") or d.get("at"), p + "timestamp"),
        order=_parse_order(d.get("order"), p + "order"),
        execution_id=opt_str(d.get("execution_id"), p + "execution_id"),
        price=dec(d.get("price"), p + "price"),
        qty=dec(d.get("qty"), p + "qty"),
        position_qty=dec(d.get("position_qty"), p + "position_qty"),
    )


def parse_position(data: Any) -> PositionReport:
    d = _mapping(data, "position")
    p = "position."
    qty = req_dec(d.get("qty"), p + "qty")
    side = _enum(PositionSide, d.get("side"), p + "side", "short" if qty < 0 else "long")
    if side is PositionSide.SHORT and qty > 0:
        qty = -qty  # some payloads report short size unsigned; we keep it signed
    return PositionReport(
        symbol=req_str(d, "symbol", p),
        qty=qty,
        avg_entry_price=req_dec(d.get("avg_entry_price"), p + "avg_entry_price"),
        side=side,
        asset_class=_asset_class(d.get("asset_class"), p + "asset_class"),
        asset_id=opt_str(d.get("asset_id"), p + "asset_id"),
        exchange=_text(d.get("exchange"), p + "exchange"),
        qty_available=dec(d.get("qty_available"), p + "qty_available"),
        market_value=dec(d.get("market_value"), p + "market_value"),
        cost_basis=dec(d.get("cost_basis"), p + "cost_basis"),
        unrealized_pl=dec(d.get("unrealized_pl"), p + "unrealized_pl"),
        current_price=dec(d.get("current_price"), p + "current_price"),
        lastday_price=dec(d.get("lastday_price"), p + "lastday_price"),
        raw=dict(d),
    )


def parse_account(data: Any) -> AccountReport:
    d = _mapping(data, "account")
    p = "account."
    zero = Decimal("0")
    return AccountReport(
        id=req_str(d, "id", p),
        account_number=req_str(d, "account_number", p),
        status=req_str(d, "status", p),
        currency=_text(d.get("currency"), p + "currency") or "USD",
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
    attrs = _list(d.get("attributes"), p + "attributes")
    return AssetInfo(
        id=req_str(d, "id", p),
        symbol=req_str(d, "symbol", p),
        asset_class=_enum(AssetClass, d.get("class") or d.get("asset_class"), p + "class"),
        exchange=_text(d.get("exchange"), p + "exchange"),
        status=_enum(AssetStatus, d.get("status"), p + "status"),
        tradable=boolean(d.get("tradable"), p + "tradable"),
        marginable=boolean(d.get("marginable"), p + "marginable"),
        shortable=boolean(d.get("shortable"), p + "shortable"),
        easy_to_borrow=boolean(d.get("easy_to_borrow"), p + "easy_to_borrow"),
        fractionable=boolean(d.get("fractionable"), p + "fractionable"),
        name=_text(d.get("name"), p + "name"),
        min_order_size=dec(d.get("min_order_size"), p + "min_order_size"),
        min_trade_increment=dec(d.get("min_trade_increment"), p + "min_trade_increment"),
        price_increment=dec(d.get("price_increment"), p + "price_increment"),
        maintenance_margin_requirement=dec(
            d.get("maintenance_margin_requirement"), p + "maintenance_margin_requirement"
        ),
        margin_requirement_long=dec(
            d.get("margin_requirement_long"), p + "margin_requirement_long"
        ),
        margin_requirement_short=dec(
            d.get("margin_requirement_short"), p + "margin_requirement_short"
        ),
        attributes=tuple(_text(a, f"{p}attributes[{i}]") for i, a in enumerate(attrs)),
        cusip=opt_str(d.get("cusip"), p + "cusip"),
        raw=dict(d),
    )


def parse_clock(data: Any) -> ClockReport:
    d = _mapping(data, "clock")
    return ClockReport(
        timestamp=req_ts(d.get("timestamp"), "clock.timestamp"),
        is_open=_req_bool(d, "is_open", "clock."),
        next_open=req_ts(d.get("next_open"), "clock.next_open"),
        next_close=req_ts(d.get("next_close"), "clock.next_close"),
    )


_HHMM_RE = re.compile(r"(\d{2}):?(\d{2})(?::\d{2})?", re.ASCII)


def _hhmm(value: Any, name: str) -> time | None:
    """``HH:MM`` (``open``/``close``) or ``HHMM`` (``session_*``); seconds are ignored."""
    if value is None or value == "":
        return None
    m = _HHMM_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise PayloadError(f"{name}: expected HH:MM, got {_show(value)}")
    return time(int(m.group(1)), int(m.group(2)))


def _date(value: Any, name: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PayloadError(f"{name}: expected YYYY-MM-DD, got {_show(value)}")


def parse_calendar_day(data: Any) -> CalendarDay:
    d = _mapping(data, "calendar")
    day = _date(req_str(d, "date", "calendar."), "calendar.date")
    open_, close = _hhmm(d.get("open"), "calendar.open"), _hhmm(d.get("close"), "calendar.close")
    if day is None or open_ is None or close is None:
        missing = "open" if open_ is None else "close"
        raise PayloadError(f"calendar.{missing}: required HH:MM is missing")
    return CalendarDay(
        date=day,
        open=open_,
        close=close,
        session_open=_hhmm(d.get("session_open"), "calendar.session_open"),
        session_close=_hhmm(d.get("session_close"), "calendar.session_close"),
        settlement_date=_date(d.get("settlement_date"), "calendar.settlement_date"),
    )


def parse_bar(symbol: str, data: Any) -> Bar:
    d = _mapping(data, "bar")
    n = dec(d.get("n"), "bar.n")
    return Bar(
        symbol=symbol,
        timestamp=req_ts(d.get("t"), "bar.t"),
        open=req_dec(d.get("o"), "bar.o"),
        high=req_dec(d.get("h"), "bar.h"),
        low=req_dec(d.get("l"), "bar.l"),
        close=req_dec(d.get("c"), "bar.c"),
        volume=dec(d.get("v"), "bar.v") or Decimal("0"),
        trade_count=int(n) if n is not None and n == n.to_integral_value() else None,
        vwap=dec(d.get("vw"), "bar.vw"),
    )


# -- serializing (the emulator's side) ------------------------------------------------------------


def num(value: Decimal | int | None) -> str | None:
    """Alpaca's number strings: plain notation, trailing zeros trimmed ("178.5", "100")."""
    if value is None:
        return None
    d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def stamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with ``Z`` and microseconds (trailing zeros trimmed); naive means UTC."""
    if value is None:
        return None
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _enum_text(member: WireEnum, raw: Mapping[str, Any], key: str, fallback: str = "") -> str:
    """A member's wire value; for ``UNKNOWN`` the text that was received, else ``fallback``
    ("" is the real service's "not applicable", e.g. the ``side`` of an mleg order)."""
    if member.name != "UNKNOWN":
        return member.value
    text = raw.get(key) if raw else None
    return text if isinstance(text, str) else fallback


def _raw_text(raw: Mapping[str, Any], key: str) -> str | None:
    """A received text field we do not model (``subtag``, ``source``), passed through."""
    text = raw.get(key)
    return text if isinstance(text, str) and text else None


def order_to_wire(o: OrderReport) -> dict[str, Any]:
    """A REST order (``POST/GET /v2/orders``), every documented field present."""
    return _order_to_wire(o, stream=False)


def _order_to_wire(o: OrderReport, stream: bool) -> dict[str, Any]:
    raw = o.raw or {}
    order_type = _enum_text(o.type, raw, "type") or _enum_text(o.type, raw, "order_type")
    out: dict[str, Any] = {
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
        "asset_class": _enum_text(o.asset_class, raw, "asset_class"),
        "notional": num(o.notional),
        "qty": num(o.qty),
        "filled_qty": num(o.filled_qty),
        "filled_avg_price": num(o.filled_avg_price),
        "order_class": o.order_class,
        "order_type": order_type,
        "type": order_type,
        "side": _enum_text(o.side, raw, "side"),
        "position_intent": _position_intent(o),
        "time_in_force": _enum_text(o.time_in_force, raw, "time_in_force"),
        "limit_price": num(o.limit_price),
        "stop_price": num(o.stop_price),
        "status": _enum_text(o.status, raw, "status", "unknown"),
        "extended_hours": o.extended_hours,
        "legs": [_order_to_wire(leg, stream) for leg in o.legs] if o.legs else None,
        "trail_percent": num(o.trail_percent),
        "trail_price": num(o.trail_price),
        "hwm": num(o.hwm),
        "subtag": _raw_text(raw, "subtag"),
        "source": _raw_text(raw, "source"),
        "expires_at": stamp(o.expires_at),
    }
    if stream:  # stream copies of an order also carry cancel_requested_at (§4 examples)
        out["cancel_requested_at"] = stamp(o.cancel_requested_at)
    return out


def _position_intent(o: OrderReport) -> str | None:
    intent = o.position_intent or (o.raw.get("position_intent") if o.raw else None)
    if intent:
        return str(intent)
    return None


def trade_update_to_wire(u: TradeUpdate) -> dict[str, Any]:
    """A ``trade_updates`` message; fill events carry ``execution_id``, ``price``, ``qty`` and
    ``position_qty`` (numbers as strings)."""
    data: dict[str, Any] = {
        "event": u.event_raw or u.event.value,
        "timestamp": stamp(u.timestamp),
        "order": _order_to_wire(u.order, stream=True),
    }
    if u.event.is_fill or u.execution_id is not None:
        data["execution_id"] = u.execution_id
        data["price"] = num(u.price)
        data["qty"] = num(u.qty)
        data["position_qty"] = num(u.position_qty)
    return {"stream": "trade_updates", "data": data}


# Alpaca's ratios carry 16 decimal places ("0.0337182984156462"); the wide context keeps a large
# ratio from overflowing the default 28 digits.
_RATIO = Decimal("1e-16")
_WIDE = Context(prec=80)


def _ratio(numerator: Decimal | None, denominator: Decimal | None) -> str | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return num(_WIDE.divide(numerator, abs(denominator)).quantize(_RATIO, context=_WIDE))


def position_to_wire(p: PositionReport) -> dict[str, Any]:
    """A position; the ratio and intraday fields are derived as Alpaca defines them."""
    intraday_pl = None
    if p.current_price is not None and p.lastday_price is not None:
        intraday_pl = p.qty * (p.current_price - p.lastday_price)
    marginable = p.raw.get("asset_marginable") if p.raw else None
    if not isinstance(marginable, bool):
        marginable = p.asset_class not in (AssetClass.CRYPTO, AssetClass.CRYPTO_PERP)
    day_change = None
    if p.current_price is not None and p.lastday_price is not None:
        day_change = p.current_price - p.lastday_price
    return {
        "asset_id": p.asset_id,
        "symbol": p.symbol,
        "exchange": p.exchange,
        "asset_class": _enum_text(p.asset_class, p.raw, "asset_class"),
        "asset_marginable": marginable,
        "qty": num(p.qty),
        "qty_available": num(p.qty_available if p.qty_available is not None else p.qty),
        "avg_entry_price": num(p.avg_entry_price),
        "side": _enum_text(p.side, p.raw, "side", "long" if p.qty >= 0 else "short"),
        "market_value": num(p.market_value),
        "cost_basis": num(p.cost_basis),
        "unrealized_pl": num(p.unrealized_pl),
        "unrealized_plpc": _ratio(p.unrealized_pl, p.cost_basis),
        "unrealized_intraday_pl": num(intraday_pl),
        "unrealized_intraday_plpc": _ratio(
            intraday_pl, None if p.lastday_price is None else p.qty * p.lastday_price
        ),
        "current_price": num(p.current_price),
        "lastday_price": num(p.lastday_price),
        "change_today": _ratio(day_change, p.lastday_price),
    }


def account_to_wire(a: AccountReport, created_at: datetime) -> dict[str, Any]:
    """``GET /v2/account`` without the PDT fields Alpaca removed on 2026-07-06."""
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


def _json_number(value: Decimal | None) -> int | float | None:
    """A JSON number: an int when integral (``30``), else a float."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def asset_to_wire(a: AssetInfo) -> dict[str, Any]:
    """An asset; the crypto size and price increments (strings) appear on crypto assets or
    whenever they are known."""
    out: dict[str, Any] = {
        "id": a.id,
        "class": _enum_text(a.asset_class, a.raw, "class"),
        "exchange": a.exchange,
        "symbol": a.symbol,
        "name": a.name,
        "status": _enum_text(a.status, a.raw, "status"),
        "tradable": a.tradable,
        "marginable": a.marginable,
        "shortable": a.shortable,
        "easy_to_borrow": a.easy_to_borrow,
        "fractionable": a.fractionable,
        "cusip": a.cusip,
        "maintenance_margin_requirement": _json_number(a.maintenance_margin_requirement),
        "margin_requirement_long": num(a.margin_requirement_long),
        "margin_requirement_short": num(a.margin_requirement_short),
        "attributes": list(a.attributes),
    }
    increments = (a.min_order_size, a.min_trade_increment, a.price_increment)
    crypto = a.asset_class in (AssetClass.CRYPTO, AssetClass.CRYPTO_PERP)
    if crypto or any(v is not None for v in increments):
        out["min_order_size"] = num(a.min_order_size)
        out["min_trade_increment"] = num(a.min_trade_increment)
        out["price_increment"] = num(a.price_increment)
    return out


def clock_to_wire(c: ClockReport, tz: tzinfo | None = None) -> dict[str, Any]:
    """Clock fields in the exchange's offset (``-04:00``/``-05:00``), as the real API sends.
    ``tz`` defaults to America/New_York."""
    zone = tz if tz is not None else ZoneInfo("America/New_York")

    def local(t: datetime) -> str:
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(zone).isoformat()

    return {
        "timestamp": local(c.timestamp),
        "is_open": c.is_open,
        "next_open": local(c.next_open),
        "next_close": local(c.next_close),
    }


def calendar_day_to_wire(d: CalendarDay) -> dict[str, Any]:
    """A calendar day: ``open``/``close`` as ``HH:MM``, ``session_*`` as ``HHMM``."""

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
        "settlement_date": d.settlement_date.isoformat() if d.settlement_date else None,
    }


def bar_to_wire(b: Bar) -> dict[str, Any]:
    """A bar as the data API sends it: JSON numbers (volume fractional only for crypto)."""
    return {
        "t": stamp(b.timestamp),
        "o": float(b.open),
        "h": float(b.high),
        "l": float(b.low),
        "c": float(b.close),
        "v": _json_number(b.volume),
        "n": b.trade_count if b.trade_count is not None else 0,
        "vw": float(b.vwap if b.vwap is not None else b.close),
    }


def error_body(code: int, message: str, **extra: Any) -> dict[str, Any]:
    """Alpaca's error shape: ``{"code": 8-digit int, "message": ...}`` plus context keys."""
    return {**extra, "code": code, "message": message}
