"""Alpaca's JSON -> mqd's domain types.

Tolerant of what the real service does (numbers as strings or JSON numbers, nulls present,
extra keys, unknown enum values, timestamps with up to 9 fractional digits and any offset) and
strict about what must be there: a missing required field raises ``PayloadError`` naming the
field. Import these through ``mqd_cli.wire``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from mqd_cli.model import (
    AccountReport,
    AssetClass,
    AssetInfo,
    AssetStatus,
    Bar,
    CalendarDay,
    ClockReport,
    FillActivity,
    OrderClass,
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
from mqd_cli.symbols.spelling import canonical_symbol


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


_T = TypeVar("_T")


def _required(value: _T | None, name: str, what: str) -> _T:
    """``value``, or a ``PayloadError`` saying the required ``what`` is missing."""
    if value is None:
        raise PayloadError(f"{name}: required {what} is missing")
    return value


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
    return _required(dec(value, name), name, "number")


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
        return as_utc(value)
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
    return _required(ts(value, name), name, "timestamp")


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken as UTC."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def req_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str:
    """A required, non-empty identifier or enum text; JSON integers are taken as text."""
    return _required(opt_str(data.get(key), prefix + key), prefix + key, "string")


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


def whole(value: Any, name: str = "value") -> int | None:
    """A whole number from a JSON integer or its text (``1``, ``"1"``); None/"" -> None."""
    number = dec(value, name)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise PayloadError(f"{name}: expected a whole number, got {_show(value)}")
    return int(number)


def boolean(value: Any, name: str = "value", default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PayloadError(f"{name}: expected true or false, got {_show(value)}")


def _req_bool(data: Mapping[str, Any], key: str, prefix: str) -> bool:
    return boolean(_required(data.get(key), prefix + key, "boolean"), prefix + key)


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
        order_class=_enum(OrderClass, d.get("order_class"), p + "order_class", "simple"),
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
        raw=dict(d),
    )


def parse_fill_activity(data: Any) -> FillActivity:
    """One ``FILL`` activity of ``/v2/account/activities``."""
    d = _mapping(data, "activity")
    p = "activity."
    kind = req_str(d, "activity_type", p)
    if kind != "FILL":
        raise PayloadError(f"{p}activity_type: expected 'FILL', got {_show(kind)}")
    symbol = req_str(d, "symbol", p)
    return FillActivity(
        id=req_str(d, "id", p),
        order_id=req_str(d, "order_id", p),
        symbol=canonical_symbol(symbol),
        side=_enum(Side, d.get("side"), p + "side"),
        qty=req_dec(d.get("qty"), p + "qty"),
        price=req_dec(d.get("price"), p + "price"),
        cum_qty=req_dec(d.get("cum_qty"), p + "cum_qty"),
        leaves_qty=dec(d.get("leaves_qty"), p + "leaves_qty"),
        transaction_time=req_ts(d.get("transaction_time"), p + "transaction_time"),
        type=_text(d.get("type"), p + "type") or "fill",
        order_status=_text(d.get("order_status"), p + "order_status"),
        raw=dict(d),
    )


def parse_position(data: Any) -> PositionReport:
    d = _mapping(data, "position")
    p = "position."
    qty = req_dec(d.get("qty"), p + "qty")
    side = _enum(PositionSide, d.get("side"), p + "side", "short" if qty < 0 else "long")
    if side is PositionSide.SHORT and qty > 0:
        qty = -qty  # some payloads report short size unsigned; we keep it signed
    asset_class = _asset_class(d.get("asset_class"), p + "asset_class")
    return PositionReport(
        # Alpaca names a crypto position ``BTCUSD``; mqd keys it as its orders do, ``BTC/USD``.
        symbol=canonical_symbol(req_str(d, "symbol", p), asset_class),
        qty=qty,
        avg_entry_price=req_dec(d.get("avg_entry_price"), p + "avg_entry_price"),
        side=side,
        asset_class=asset_class,
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
    """``GET /v2/account``: the fields mqd reads typed, the whole payload in ``raw``."""
    d = _mapping(data, "account")
    p = "account."

    def num(key: str) -> Decimal | None:
        return dec(d.get(key), p + key)

    def flag(key: str) -> bool:
        return boolean(d.get(key), p + key)

    for key in ("admin_configurations", "user_configurations"):
        if d.get(key) is not None:  # kept in ``raw``; a wrong shape is refused, not carried
            _mapping(d.get(key), p + key)
    pdt = d.get("pattern_day_trader")
    zero = Decimal("0")
    return AccountReport(
        id=req_str(d, "id", p),
        account_number=req_str(d, "account_number", p),
        status=req_str(d, "status", p),
        currency=_text(d.get("currency"), p + "currency") or "USD",
        cash=num("cash") or zero,
        equity=num("equity") or zero,
        buying_power=num("buying_power") or zero,
        portfolio_value=num("portfolio_value"),
        long_market_value=num("long_market_value") or zero,
        short_market_value=num("short_market_value") or zero,
        initial_margin=num("initial_margin") or zero,
        maintenance_margin=num("maintenance_margin") or zero,
        last_equity=num("last_equity"),
        multiplier=num("multiplier") or Decimal("1"),
        shorting_enabled=flag("shorting_enabled"),
        trading_blocked=flag("trading_blocked"),
        account_blocked=flag("account_blocked"),
        crypto_status=opt_str(d.get("crypto_status"), p + "crypto_status"),
        regt_buying_power=num("regt_buying_power"),
        non_marginable_buying_power=num("non_marginable_buying_power"),
        options_buying_power=num("options_buying_power"),
        daytrading_buying_power=num("daytrading_buying_power"),
        effective_buying_power=num("effective_buying_power"),
        bod_dtbp=num("bod_dtbp"),
        sma=num("sma"),
        accrued_fees=num("accrued_fees"),
        pending_transfer_in=num("pending_transfer_in"),
        pending_transfer_out=num("pending_transfer_out"),
        last_maintenance_margin=num("last_maintenance_margin"),
        position_market_value=num("position_market_value"),
        intraday_adjustments=num("intraday_adjustments"),
        pending_reg_taf_fees=num("pending_reg_taf_fees"),
        options_approved_level=whole(d.get("options_approved_level"), p + "options_approved_level"),
        options_trading_level=whole(d.get("options_trading_level"), p + "options_trading_level"),
        crypto_tier=whole(d.get("crypto_tier"), p + "crypto_tier"),
        pattern_day_trader=None if pdt is None else boolean(pdt, p + "pattern_day_trader"),
        daytrade_count=whole(d.get("daytrade_count"), p + "daytrade_count"),
        transfers_blocked=flag("transfers_blocked"),
        trade_suspended_by_user=flag("trade_suspended_by_user"),
        created_at=ts(d.get("created_at"), p + "created_at"),
        balance_asof=_date(d.get("balance_asof"), p + "balance_asof"),
        raw=dict(d),
    )


# The fast path of ``parse_asset``: the exact wire texts of the enums it accepts as they are.
_ASSET_CLASSES: dict[str, AssetClass] = {m.value: m for m in AssetClass}
_ASSET_STATUSES: dict[str, AssetStatus] = {m.value: m for m in AssetStatus}
# The same few increment and margin values repeat across tens of thousands of assets. Keys are
# exact ``str`` or ``int`` values only (a float or bool key would collide: 30.0 == 30, -0.0 == 0.0),
# and the cache stops growing at its bound so odd payloads cannot inflate it.
_ASSET_DECIMALS: dict[str | int, Decimal | None] = {}
_ASSET_DECIMALS_MAX = 512
# The fields _parse_asset_fast fills, in order. It builds an AssetInfo without calling __init__,
# so it runs only while that gives the same object: these fields, no __post_init__, no slots.
_ASSET_FIELD_NAMES = (
    "id",
    "symbol",
    "asset_class",
    "exchange",
    "status",
    "tradable",
    "marginable",
    "shortable",
    "easy_to_borrow",
    "fractionable",
    "name",
    "min_order_size",
    "min_trade_increment",
    "price_increment",
    "maintenance_margin_requirement",
    "margin_requirement_long",
    "margin_requirement_short",
    "attributes",
    "cusip",
    "raw",
)
_ASSET_PLAIN_INIT = (
    tuple(f.name for f in dataclasses.fields(AssetInfo)) == _ASSET_FIELD_NAMES
    and not hasattr(AssetInfo, "__post_init__")
    and "__slots__" not in vars(AssetInfo)
)
_ASSET_DECIMAL_FIELDS = (
    "min_order_size",
    "min_trade_increment",
    "price_increment",
    "maintenance_margin_requirement",
    "margin_requirement_long",
    "margin_requirement_short",
)


def parse_asset(data: Any) -> AssetInfo:
    # /v2/assets returns tens of thousands of these: the common well-formed shape takes a fast
    # path, anything else (or anything in doubt) the checked one, so results and errors are alike.
    if _ASSET_PLAIN_INIT and type(data) is dict:
        fast = _parse_asset_fast(data)
        if fast is not None:
            return fast
    return _parse_asset_checked(data)


def _parse_asset_fast(d: dict[str, Any]) -> AssetInfo | None:
    """The asset when every field has its plain JSON type and a valid value, else None.

    None sends the payload to the checked path, which then gives the exact result or error.
    """
    id_, symbol = d.get("id"), d.get("symbol")
    cls, status = d.get("class") or d.get("asset_class"), d.get("status")
    if not (type(id_) is str and id_ and type(symbol) is str and symbol):
        return None
    if type(cls) is not str or type(status) is not str:
        return None
    asset_class, asset_status = _ASSET_CLASSES.get(cls), _ASSET_STATUSES.get(status)
    if asset_class is None or asset_status is None:
        return None
    flags = [d.get(k) for k in ("tradable", "marginable", "shortable", "easy_to_borrow")]
    flags.append(d.get("fractionable"))
    for i, v in enumerate(flags):
        if v is None:
            flags[i] = False
        elif type(v) is not bool:
            return None
    exchange, name, cusip = d.get("exchange"), d.get("name"), d.get("cusip")
    for v in (exchange, name, cusip):
        if v is not None and type(v) is not str:
            return None
    attrs = d.get("attributes")
    if attrs is None:
        attributes: tuple[str, ...] = ()
    elif type(attrs) is list and all(type(a) is str for a in attrs):
        attributes = tuple(attrs)
    else:
        return None
    numbers: list[Decimal | None] = []
    cache = _ASSET_DECIMALS
    for key in _ASSET_DECIMAL_FIELDS:
        v = d.get(key)
        if v is not None:
            if type(v) is not str and type(v) is not int:
                return None
            text: str | int = v
            try:
                v = cache[text]
            except KeyError:
                try:
                    number = dec(text, key)
                except PayloadError:
                    return None
                if len(cache) < _ASSET_DECIMALS_MAX:
                    cache[text] = number
                v = number
        numbers.append(v)
    exchange, name, cusip = exchange or "", name or "", cusip or None
    values = (id_, symbol, asset_class, exchange, asset_status, *flags, name, *numbers)
    values += (attributes, cusip, dict(d))
    # A frozen dataclass's __init__ sets its 20 fields one object.__setattr__ at a time (~4 us,
    # two thirds of this path); with every field given and no __post_init__, filling __dict__
    # builds the same object.
    asset = object.__new__(AssetInfo)
    asset.__dict__.update(zip(_ASSET_FIELD_NAMES, values, strict=True))
    return asset


def _parse_asset_checked(data: Any) -> AssetInfo:
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
        raw=dict(d),
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
        raw=dict(d),
    )


_BAR_KEYS = frozenset({"t", "o", "h", "l", "c", "v", "n", "vw"})


def parse_bar(symbol: str, data: Any) -> Bar:
    """One data-API bar. Keys beyond Alpaca's eight are kept in ``Bar.extra``."""
    d = _mapping(data, "bar")
    extra = (
        () if _BAR_KEYS.issuperset(d) else tuple((k, v) for k, v in d.items() if k not in _BAR_KEYS)
    )
    return Bar(
        symbol=symbol,
        timestamp=req_ts(d.get("t"), "bar.t"),
        open=req_dec(d.get("o"), "bar.o"),
        high=req_dec(d.get("h"), "bar.h"),
        low=req_dec(d.get("l"), "bar.l"),
        close=req_dec(d.get("c"), "bar.c"),
        volume=dec(d.get("v"), "bar.v") or Decimal("0"),
        trade_count=whole(d.get("n"), "bar.n"),
        vwap=dec(d.get("vw"), "bar.vw"),
        extra=extra,
    )
