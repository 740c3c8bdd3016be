"""mqd's domain types -> Alpaca's JSON (the emulator's side, and number strings for requests).

Produces exactly the shapes of ``alpaca-protocol.md`` §3-4: strings for numbers, nulls present,
``order_class: ""``, ``order_type`` duplicating ``type``. Import these through ``mqd_cli.wire``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, tzinfo
from decimal import Context, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from mqd_cli.model import (
    AccountReport,
    AssetClass,
    AssetInfo,
    Bar,
    CalendarDay,
    ClockReport,
    OrderClass,
    OrderReport,
    PositionReport,
    TradeUpdate,
    WireEnum,
)
from mqd_cli.symbols.spelling import position_symbol
from mqd_cli.wire.parse import as_utc


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
    value = as_utc(value)
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
        "order_class": _order_class_text(o.order_class, raw),
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


def _order_class_text(member: OrderClass, raw: Mapping[str, Any]) -> str:
    """A simple order's class as it was received ("" or "simple"), else ``""``: what Alpaca
    sends for one. Other classes: their value (an unknown one as received)."""
    if member is OrderClass.SIMPLE:
        sent = raw.get("order_class") if raw else None
        return "simple" if sent == "simple" else ""
    return _enum_text(member, raw, "order_class")


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
    day_change = intraday_pl = None
    if p.current_price is not None and p.lastday_price is not None:
        day_change = p.current_price - p.lastday_price
        intraday_pl = p.qty * day_change
    marginable = p.raw.get("asset_marginable") if p.raw else None
    if not isinstance(marginable, bool):
        marginable = p.asset_class not in (AssetClass.CRYPTO, AssetClass.CRYPTO_PERP)
    return {
        "asset_id": p.asset_id,
        "symbol": position_symbol(p.symbol, p.asset_class),  # BTCUSD, as Alpaca names it
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


def account_to_wire(a: AccountReport, created_at: datetime | None = None) -> dict[str, Any]:
    """``GET /v2/account`` with the fields, order and types of a real paper account after
    Alpaca removed the PDT fields on 2026-07-06 (``tests/corpus/account/`` holds the payloads).

    A field the report does not carry is derived as Alpaca defines it: Reg T buying power from
    the buying power, non-marginable buying power from the cash, ``sma`` from the equity.
    ``created_at`` stands in when the report has none (the simulator's account has no birth).
    """
    raw = a.raw or {}
    zero = Decimal(0)
    equity = a.equity
    born = a.created_at if a.created_at is not None else created_at
    asof = a.balance_asof if a.balance_asof is not None else (born.date() if born else None)

    def either(value: Decimal | None, fallback: Decimal) -> str | None:
        return num(value if value is not None else fallback)

    admin = raw.get("admin_configurations")
    user = raw.get("user_configurations")
    return {
        "id": a.id,
        "admin_configurations": dict(admin) if isinstance(admin, Mapping) else {},
        "user_configurations": dict(user) if isinstance(user, Mapping) else None,
        "account_number": a.account_number,
        "status": a.status,
        "crypto_status": a.crypto_status or "ACTIVE",
        "options_approved_level": a.options_approved_level or 0,
        "options_trading_level": a.options_trading_level or 0,
        "currency": a.currency,
        "buying_power": num(a.buying_power),
        "regt_buying_power": either(a.regt_buying_power, a.buying_power),
        "effective_buying_power": either(a.effective_buying_power, a.buying_power),
        "non_marginable_buying_power": either(a.non_marginable_buying_power, max(zero, a.cash)),
        "options_buying_power": either(a.options_buying_power, max(zero, a.cash)),
        "cash": num(a.cash),
        "accrued_fees": either(a.accrued_fees, zero),
        "pending_transfer_in": either(a.pending_transfer_in, zero),
        "pending_transfer_out": either(a.pending_transfer_out, zero),
        "portfolio_value": either(a.portfolio_value, equity),
        "trading_blocked": a.trading_blocked,
        "transfers_blocked": a.transfers_blocked,
        "account_blocked": a.account_blocked,
        "created_at": stamp(born),
        "trade_suspended_by_user": a.trade_suspended_by_user,
        "multiplier": num(a.multiplier),
        "shorting_enabled": a.shorting_enabled,
        "equity": num(equity),
        "last_equity": either(a.last_equity, equity),
        "long_market_value": num(a.long_market_value),
        "short_market_value": num(a.short_market_value),
        "position_market_value": either(
            a.position_market_value, a.long_market_value + abs(a.short_market_value)
        ),
        "initial_margin": num(a.initial_margin),
        "maintenance_margin": num(a.maintenance_margin),
        "last_maintenance_margin": either(a.last_maintenance_margin, a.maintenance_margin),
        "sma": either(a.sma, equity),
        "balance_asof": asof.isoformat() if asof else None,
        "crypto_tier": a.crypto_tier or 0,
        "intraday_adjustments": either(a.intraday_adjustments, zero),
        "pending_reg_taf_fees": either(a.pending_reg_taf_fees, zero),
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
        return as_utc(t).astimezone(zone).isoformat()

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
