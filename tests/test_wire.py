# ruff: noqa: E501  (the reference payloads are copied verbatim)
"""wire.py against alpaca-protocol.md §3-4 and the real alpaca-py models.

The reference payloads below are copied verbatim from the protocol notes; parsing them must give
their values, and serializing what we parsed must give their shapes back. Hypothesis covers the
scalar parsers (numbers, timestamps), round trips and malformed input.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqd_cli.model import (
    AccountReport,
    AssetClass,
    AssetInfo,
    AssetStatus,
    Bar,
    CalendarDay,
    ClockReport,
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
)
from mqd_cli.wire import format as wire_format
from mqd_cli.wire import parse as wire_parse
from mqd_cli.wire.parse import PayloadError

# -- reference payloads (alpaca-protocol.md §3-4, verbatim) ---------------------------------------

ACCOUNT = json.loads("""
{
  "id": "3f6c2b8e-9a41-4c7d-b2e5-1d0a7c9e4f21",
  "account_number": "PA3KXN2Q8ZV1",
  "status": "ACTIVE",
  "crypto_status": "ACTIVE",
  "currency": "USD",
  "buying_power": "191963.72",
  "regt_buying_power": "191963.72",
  "non_marginable_buying_power": "90120.18",
  "options_buying_power": "90120.18",
  "cash": "90120.18",
  "accrued_fees": "0",
  "pending_transfer_in": "0",
  "pending_transfer_out": "0",
  "portfolio_value": "101843.54",
  "equity": "101843.54",
  "last_equity": "100912.07",
  "long_market_value": "11723.36",
  "short_market_value": "0",
  "initial_margin": "5861.68",
  "maintenance_margin": "3517.008",
  "last_maintenance_margin": "3431.55",
  "sma": "100912.07",
  "multiplier": "2",
  "shorting_enabled": true,
  "trading_blocked": false,
  "transfers_blocked": false,
  "account_blocked": false,
  "trade_suspended_by_user": false,
  "created_at": "2025-11-03T15:22:41.118263Z",
  "balance_asof": "2026-09-15",
  "options_approved_level": 2,
  "options_trading_level": 2,
  "intraday_adjustments": "0",
  "pending_reg_taf_fees": "0"
}
""")

ORDER_REQUEST = json.loads("""
{"symbol":"AAPL","qty":100.0,"side":"buy","type":"limit","time_in_force":"day","client_order_id":"tk-20260916-aapl-0001","limit_price":178.5}
""")

ORDER = json.loads("""
{
  "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
  "client_order_id": "tk-20260916-aapl-0001",
  "created_at": "2026-09-16T14:02:11.48712Z",
  "updated_at": "2026-09-16T14:02:11.490331Z",
  "submitted_at": "2026-09-16T14:02:11.482913Z",
  "filled_at": null,
  "expired_at": null,
  "canceled_at": null,
  "failed_at": null,
  "replaced_at": null,
  "replaced_by": null,
  "replaces": null,
  "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
  "symbol": "AAPL",
  "asset_class": "us_equity",
  "notional": null,
  "qty": "100",
  "filled_qty": "0",
  "filled_avg_price": null,
  "order_class": "",
  "order_type": "limit",
  "type": "limit",
  "side": "buy",
  "position_intent": "buy_to_open",
  "time_in_force": "day",
  "limit_price": "178.5",
  "stop_price": null,
  "status": "pending_new",
  "extended_hours": false,
  "legs": null,
  "trail_percent": null,
  "trail_price": null,
  "hwm": null,
  "subtag": null,
  "source": null,
  "expires_at": "2026-09-16T20:00:00Z"
}
""")

BRACKET = json.loads("""
{
  "id": "0c8d5b41-9e2a-4f3a-8a56-4b7c2f0e9d11",
  "client_order_id": "tk-brk-spy-0007",
  "created_at": "2026-09-16T14:10:02.10311Z", "updated_at": "2026-09-16T14:10:02.35518Z",
  "submitted_at": "2026-09-16T14:10:02.09988Z", "filled_at": "2026-09-16T14:10:02.30144Z",
  "expired_at": null, "canceled_at": null, "failed_at": null, "replaced_at": null, "replaced_by": null, "replaces": null,
  "asset_id": "b28f4066-5c6d-479b-a2af-85dc1a8f16fb", "symbol": "SPY", "asset_class": "us_equity",
  "notional": null, "qty": "10", "filled_qty": "10", "filled_avg_price": "571.24",
  "order_class": "bracket", "order_type": "market", "type": "market", "side": "buy", "time_in_force": "gtc",
  "limit_price": null, "stop_price": null, "status": "filled", "extended_hours": false,
  "trail_percent": null, "trail_price": null, "hwm": null,
  "legs": [
    {"id": "a4a1a3c2-6f5e-4d2b-9c1e-7e0f3b2d1a90", "client_order_id": "f1d2c3b4-0000-4a5b-8c9d-112233445566",
     "created_at": "2026-09-16T14:10:02.10311Z", "updated_at": "2026-09-16T14:10:02.35518Z", "submitted_at": "2026-09-16T14:10:02.33012Z",
     "filled_at": null, "expired_at": null, "canceled_at": null, "failed_at": null, "replaced_at": null, "replaced_by": null, "replaces": null,
     "asset_id": "b28f4066-5c6d-479b-a2af-85dc1a8f16fb", "symbol": "SPY", "asset_class": "us_equity",
     "notional": null, "qty": "10", "filled_qty": "0", "filled_avg_price": null,
     "order_class": "bracket", "order_type": "limit", "type": "limit", "side": "sell", "time_in_force": "gtc",
     "limit_price": "580", "stop_price": null, "status": "new", "extended_hours": false, "legs": null,
     "trail_percent": null, "trail_price": null, "hwm": null},
    {"id": "5d9e8f7a-1b2c-4d3e-9f40-a1b2c3d4e5f6", "client_order_id": "f1d2c3b4-0001-4a5b-8c9d-112233445566",
     "created_at": "2026-09-16T14:10:02.10311Z", "updated_at": "2026-09-16T14:10:02.35518Z", "submitted_at": "2026-09-16T14:10:02.10311Z",
     "filled_at": null, "expired_at": null, "canceled_at": null, "failed_at": null, "replaced_at": null, "replaced_by": null, "replaces": null,
     "asset_id": "b28f4066-5c6d-479b-a2af-85dc1a8f16fb", "symbol": "SPY", "asset_class": "us_equity",
     "notional": null, "qty": "10", "filled_qty": "0", "filled_avg_price": null,
     "order_class": "bracket", "order_type": "stop_limit", "type": "stop_limit", "side": "sell", "time_in_force": "gtc",
     "limit_price": "559.5", "stop_price": "560", "status": "held", "extended_hours": false, "legs": null,
     "trail_percent": null, "trail_price": null, "hwm": null}
  ]
}
""")

CANCEL_ALL = json.loads("""
[{"id":"61e69015-8549-4bfd-b9c3-01e75843f47d","status":200},{"id":"5d9e8f7a-1b2c-4d3e-9f40-a1b2c3d4e5f6","status":200}]
""")

POSITION = json.loads("""
{
  "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
  "symbol": "AAPL",
  "exchange": "NASDAQ",
  "asset_class": "us_equity",
  "asset_marginable": true,
  "qty": "50",
  "qty_available": "50",
  "avg_entry_price": "172.31",
  "side": "long",
  "market_value": "8906",
  "cost_basis": "8615.5",
  "unrealized_pl": "290.5",
  "unrealized_plpc": "0.0337182984156462",
  "unrealized_intraday_pl": "64",
  "unrealized_intraday_plpc": "0.0072381814069215",
  "current_price": "178.12",
  "lastday_price": "176.84",
  "change_today": "0.0072381814069215"
}
""")

CLOSE_ALL = json.loads("""
[{"symbol":"AAPL","status":200,"body":{"id":"f7f25e89-939a-4587-aaf6-414a6b3c341d","client_order_id":"52f8574c-96d5-49b6-94c1-2570a268434e","created_at":"2026-09-16T15:01:29.53427917Z","updated_at":"2026-09-16T15:01:29.53427917Z","submitted_at":"2026-09-16T15:01:29.533738219Z","filled_at":null,"expired_at":null,"canceled_at":null,"failed_at":null,"replaced_at":null,"replaced_by":null,"replaces":null,"asset_id":"b0b6dd9d-8b9b-48a9-ba46-b9d54906e415","symbol":"AAPL","asset_class":"us_equity","notional":null,"qty":"50","filled_qty":"0","filled_avg_price":null,"order_class":"","order_type":"market","type":"market","side":"sell","time_in_force":"day","limit_price":null,"stop_price":null,"status":"accepted","extended_hours":false,"legs":null,"trail_percent":null,"trail_price":null,"hwm":null}}]
""")

ASSET_EQUITY = json.loads("""
{
  "id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
  "class": "us_equity",
  "exchange": "NASDAQ",
  "symbol": "AAPL",
  "name": "Apple Inc. Common Stock",
  "status": "active",
  "tradable": true,
  "marginable": true,
  "shortable": true,
  "easy_to_borrow": true,
  "fractionable": true,
  "cusip": "037833100",
  "maintenance_margin_requirement": 30,
  "margin_requirement_long": "30",
  "margin_requirement_short": "30",
  "attributes": ["fractional_eh_enabled", "has_options", "overnight_tradable"]
}
""")

ASSET_CRYPTO = json.loads("""
{
  "id": "276e2673-764b-4ab6-a611-caf665ca6340",
  "class": "crypto",
  "exchange": "CRYPTO",
  "symbol": "BTC/USD",
  "name": "Bitcoin  / US Dollar",
  "status": "active",
  "tradable": true,
  "marginable": false,
  "shortable": false,
  "easy_to_borrow": false,
  "fractionable": true,
  "maintenance_margin_requirement": 100,
  "margin_requirement_long": "100",
  "margin_requirement_short": "100",
  "attributes": [],
  "min_order_size": "0.0001",
  "min_trade_increment": "0.000000001",
  "price_increment": "1"
}
""")

CLOCK = json.loads("""
{"timestamp":"2026-09-16T10:02:14.223471085-04:00","is_open":true,"next_open":"2026-09-17T09:30:00-04:00","next_close":"2026-09-16T16:00:00-04:00"}
""")

CALENDAR = json.loads("""
[{"date":"2026-09-16","open":"09:30","close":"16:00","session_open":"0400","session_close":"2000","settlement_date":"2026-09-17"},
 {"date":"2026-09-17","open":"09:30","close":"16:00","session_open":"0400","session_close":"2000","settlement_date":"2026-09-18"}]
""")

BARS = json.loads("""
{
  "bars": {
    "AAPL": [
      {"t":"2026-09-15T13:30:00Z","o":177.02,"h":177.41,"l":176.88,"c":177.3,"v":41236,"n":612,"vw":177.1912},
      {"t":"2026-09-15T13:31:00Z","o":177.31,"h":177.52,"l":177.2,"c":177.47,"v":18842,"n":301,"vw":177.3874}
    ],
    "MSFT": [
      {"t":"2026-09-15T13:30:00Z","o":431.1,"h":431.9,"l":430.85,"c":431.62,"v":9321,"n":188,"vw":431.4407}
    ]
  },
  "next_page_token": "TVNGVHxNfDIwMjYtMDktMTVUMTM6MzA6MDAuMDAwMDAwMDAwWg=="
}
""")

TU_NEW = json.loads("""
{
  "stream": "trade_updates",
  "data": {
    "event": "new",
    "timestamp": "2026-09-16T14:02:11.503118224Z",
    "order": {
      "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
      "client_order_id": "tk-20260916-aapl-0001",
      "created_at": "2026-09-16T14:02:11.48712Z",
      "updated_at": "2026-09-16T14:02:11.503118224Z",
      "submitted_at": "2026-09-16T14:02:11.482913Z",
      "filled_at": null, "expired_at": null, "cancel_requested_at": null, "canceled_at": null,
      "failed_at": null, "replaced_at": null, "replaced_by": null, "replaces": null,
      "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415", "symbol": "AAPL", "asset_class": "us_equity",
      "notional": null, "qty": "100", "filled_qty": "0", "filled_avg_price": null,
      "order_class": "", "order_type": "limit", "type": "limit", "side": "buy", "position_intent": "buy_to_open",
      "time_in_force": "day", "limit_price": "178.5", "stop_price": null,
      "status": "new", "extended_hours": false, "legs": null,
      "trail_percent": null, "trail_price": null, "hwm": null
    }
  }
}
""")

TU_PARTIAL = json.loads("""
{
  "stream": "trade_updates",
  "data": {
    "event": "partial_fill",
    "execution_id": "c1f4e5a2-3b7d-4e19-8f62-0a9d7b3c5e81",
    "timestamp": "2026-09-16T14:02:12.117402551Z",
    "price": "178.48",
    "qty": "40",
    "position_qty": "90",
    "order": {
      "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
      "client_order_id": "tk-20260916-aapl-0001",
      "created_at": "2026-09-16T14:02:11.48712Z",
      "updated_at": "2026-09-16T14:02:12.121907Z",
      "submitted_at": "2026-09-16T14:02:11.482913Z",
      "filled_at": null, "expired_at": null, "cancel_requested_at": null, "canceled_at": null,
      "failed_at": null, "replaced_at": null, "replaced_by": null, "replaces": null,
      "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415", "symbol": "AAPL", "asset_class": "us_equity",
      "notional": null, "qty": "100", "filled_qty": "40", "filled_avg_price": "178.48",
      "order_class": "", "order_type": "limit", "type": "limit", "side": "buy", "position_intent": "buy_to_open",
      "time_in_force": "day", "limit_price": "178.5", "stop_price": null,
      "status": "partially_filled", "extended_hours": false, "legs": null,
      "trail_percent": null, "trail_price": null, "hwm": null
    }
  }
}
""")

TU_FILL = json.loads("""
{
  "stream": "trade_updates",
  "data": {
    "event": "fill",
    "execution_id": "7a0be3d9-55c4-4f0e-b1a8-2c6e9f4d8b17",
    "timestamp": "2026-09-16T14:02:13.940211873Z",
    "price": "178.5",
    "qty": "60",
    "position_qty": "150",
    "order": {
      "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
      "client_order_id": "tk-20260916-aapl-0001",
      "created_at": "2026-09-16T14:02:11.48712Z",
      "updated_at": "2026-09-16T14:02:13.944630Z",
      "submitted_at": "2026-09-16T14:02:11.482913Z",
      "filled_at": "2026-09-16T14:02:13.940211873Z", "expired_at": null, "cancel_requested_at": null,
      "canceled_at": null, "failed_at": null, "replaced_at": null, "replaced_by": null, "replaces": null,
      "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415", "symbol": "AAPL", "asset_class": "us_equity",
      "notional": null, "qty": "100", "filled_qty": "100", "filled_avg_price": "178.492",
      "order_class": "", "order_type": "limit", "type": "limit", "side": "buy", "position_intent": "buy_to_open",
      "time_in_force": "day", "limit_price": "178.5", "stop_price": null,
      "status": "filled", "extended_hours": false, "legs": null,
      "trail_percent": null, "trail_price": null, "hwm": null
    }
  }
}
""")

# Documented order fields the stream examples leave out; we send them as null.
EXTRA_ORDER_FIELDS = {"subtag", "source", "expires_at", "position_intent", "cancel_requested_at"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def same_wire(ours: Any, ref: Any, extra_null: set[str] = frozenset()) -> None:
    """``ours`` has the reference's shape: the same keys (plus documented ``extra_null`` keys
    holding null) and the same values, timestamps compared at microsecond precision."""
    if isinstance(ref, dict):
        assert isinstance(ours, dict)
        for key in set(ours) - set(ref):
            assert key in extra_null and ours[key] is None, key
        for key, value in ref.items():
            assert key in ours, key
            same_wire(ours[key], value, extra_null)
    elif isinstance(ref, list):
        assert isinstance(ours, list) and len(ours) == len(ref)
        for a, b in zip(ours, ref, strict=True):
            same_wire(a, b, extra_null)
    elif isinstance(ref, str) and isinstance(ours, str) and wire_parse._TS_RE.fullmatch(ref):
        assert wire_parse.ts(ours) == wire_parse.ts(ref), (ours, ref)
    else:
        assert type(ours) is type(ref) and ours == ref, (ours, ref)


# -- reference payloads parse to their values -----------------------------------------------------


def test_reference_order_response_parses_to_its_values():
    o = wire_parse.parse_order(ORDER)
    assert o.id == "61e69015-8549-4bfd-b9c3-01e75843f47d"
    assert o.client_order_id == "tk-20260916-aapl-0001"
    assert (o.symbol, o.side, o.type, o.time_in_force) == (
        "AAPL",
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.DAY,
    )
    assert o.status is OrderStatus.PENDING_NEW and o.status.is_open
    assert o.qty == Decimal("100") and o.filled_qty == 0 and o.notional is None
    assert o.limit_price == Decimal("178.5") and o.stop_price is None
    assert o.created_at == utc(2026, 9, 16, 14, 2, 11, 487120)
    assert o.updated_at == utc(2026, 9, 16, 14, 2, 11, 490331)
    assert o.submitted_at == utc(2026, 9, 16, 14, 2, 11, 482913)
    assert o.expires_at == utc(2026, 9, 16, 20, 0)
    assert o.filled_at is None and o.legs == () and o.order_class is OrderClass.SIMPLE
    assert o.asset_class is AssetClass.US_EQUITY and o.position_intent == "buy_to_open"
    assert o.remaining_qty == Decimal("100")


def test_reference_order_response_serializes_back_to_exactly_itself():
    assert wire_format.order_to_wire(wire_parse.parse_order(ORDER)) == ORDER


def test_reference_bracket_order_parses_nested_legs_with_a_held_stop():
    o = wire_parse.parse_order(BRACKET)
    assert o.order_class == "bracket" and o.status is OrderStatus.FILLED
    assert o.filled_avg_price == Decimal("571.24")
    take_profit, stop_loss = o.legs
    assert take_profit.type is OrderType.LIMIT and take_profit.limit_price == Decimal("580")
    assert take_profit.status is OrderStatus.NEW
    assert stop_loss.type is OrderType.STOP_LIMIT and stop_loss.status is OrderStatus.HELD
    assert (stop_loss.stop_price, stop_loss.limit_price) == (Decimal("560"), Decimal("559.5"))
    same_wire(wire_format.order_to_wire(o), BRACKET, EXTRA_ORDER_FIELDS)


def test_reference_close_all_body_is_an_order_that_parses():
    o = wire_parse.parse_order(CLOSE_ALL[0]["body"])
    assert o.status is OrderStatus.ACCEPTED and o.side is Side.SELL and o.qty == 50
    assert o.created_at == utc(2026, 9, 16, 15, 1, 29, 534279)  # nanoseconds truncated
    same_wire(wire_format.order_to_wire(o), CLOSE_ALL[0]["body"], EXTRA_ORDER_FIELDS)


def test_cancel_all_rows_name_an_id_and_a_status():
    assert [(r["id"], r["status"]) for r in CANCEL_ALL][1] == (
        "5d9e8f7a-1b2c-4d3e-9f40-a1b2c3d4e5f6",
        200,
    )


@pytest.mark.parametrize(
    ("message", "event", "fill"),
    [
        (TU_NEW, TradeEvent.NEW, None),
        (TU_PARTIAL, TradeEvent.PARTIAL_FILL, ("40", "178.48", "90")),
        (TU_FILL, TradeEvent.FILL, ("60", "178.5", "150")),
    ],
    ids=["new", "partial_fill", "fill"],
)
def test_reference_trade_updates_parse_and_serialize_back(message, event, fill):
    u = wire_parse.parse_trade_update(message["data"])
    assert u.event is event and u.event_raw == event.value
    assert u.timestamp == wire_parse.ts(message["data"]["timestamp"])
    assert u.order.id == "61e69015-8549-4bfd-b9c3-01e75843f47d"
    report = u.fill()
    if fill is None:
        assert report is None and u.execution_id is None
    else:
        qty, price, position_qty = (Decimal(v) for v in fill)
        assert (report.qty, report.price, report.position_qty) == (qty, price, position_qty)
        assert report.execution_id == message["data"]["execution_id"]
        assert report.side is Side.BUY and report.symbol == "AAPL"
    same_wire(wire_format.trade_update_to_wire(u), message, EXTRA_ORDER_FIELDS)


def test_reference_fill_order_average_and_remaining_quantity():
    u = wire_parse.parse_trade_update(TU_FILL["data"])
    assert u.order.filled_avg_price == Decimal("178.492") and u.order.remaining_qty == 0
    assert u.order.filled_at == utc(2026, 9, 16, 14, 2, 13, 940211)
    assert u.order.status.is_terminal


def test_reference_account_parses_and_serializes_to_the_same_fields_without_pdt():
    a = wire_parse.parse_account(ACCOUNT)
    assert (a.id, a.account_number, a.status) == (
        "3f6c2b8e-9a41-4c7d-b2e5-1d0a7c9e4f21",
        "PA3KXN2Q8ZV1",
        "ACTIVE",
    )
    assert a.cash == Decimal("90120.18") and a.equity == Decimal("101843.54")
    assert a.equity == a.cash + a.long_market_value + a.short_market_value
    assert a.buying_power == (a.equity - a.initial_margin) * a.multiplier
    assert a.maintenance_margin == Decimal("3517.008") and a.shorting_enabled
    out = wire_format.account_to_wire(a, wire_parse.req_ts(ACCOUNT["created_at"], "created_at"))
    assert set(ACCOUNT) <= set(out)  # the real field set: tests/test_payload_corpus.py
    assert not {"pattern_day_trader", "daytrade_count", "daytrading_buying_power"} & set(out)
    for key, value in ACCOUNT.items():
        assert type(out[key]) is type(value), key
    for key in ("buying_power", "cash", "equity", "multiplier", "created_at", "initial_margin"):
        assert out[key] == ACCOUNT[key], key


def test_reference_position_round_trips_exactly_including_derived_ratios():
    p = wire_parse.parse_position(POSITION)
    assert p.qty == 50 and p.side is PositionSide.LONG and p.exchange == "NASDAQ"
    assert p.avg_entry_price == Decimal("172.31") and p.cost_basis == Decimal("8615.5")
    assert wire_format.position_to_wire(p) == POSITION


def test_short_position_keeps_a_negative_quantity_even_when_sent_unsigned():
    p = wire_parse.parse_position({**POSITION, "qty": "5", "side": "short"})
    assert p.qty == -5 and p.side is PositionSide.SHORT
    assert wire_format.position_to_wire(p)["qty"] == "-5"


@pytest.mark.parametrize("ref", [ASSET_EQUITY, ASSET_CRYPTO], ids=["equity", "crypto"])
def test_reference_assets_round_trip_with_increments_as_strings(ref):
    a = wire_parse.parse_asset(ref)
    assert a.symbol == ref["symbol"] and a.status is AssetStatus.ACTIVE
    assert a.maintenance_margin_requirement == ref["maintenance_margin_requirement"]
    same_wire(wire_format.asset_to_wire(a), ref, {"cusip"})


def test_crypto_asset_carries_its_size_and_price_increments():
    a = wire_parse.parse_asset(ASSET_CRYPTO)
    assert a.asset_class is AssetClass.CRYPTO and a.cusip is None
    assert a.min_order_size == Decimal("0.0001")
    assert a.min_trade_increment == Decimal("1E-9") and a.price_increment == 1
    assert wire_parse.parse_asset(ASSET_EQUITY).cusip == "037833100"


def test_equity_asset_serializes_without_the_crypto_increments():
    out = wire_format.asset_to_wire(wire_parse.parse_asset(ASSET_EQUITY))
    assert out == ASSET_EQUITY


def test_reference_clock_in_eastern_offsets_parses_to_utc_and_serializes_back():
    c = wire_parse.parse_clock(CLOCK)
    assert c.timestamp == utc(2026, 9, 16, 14, 2, 14, 223471) and c.is_open
    assert c.next_open == utc(2026, 9, 17, 13, 30) and c.next_close == utc(2026, 9, 16, 20)
    out = wire_format.clock_to_wire(c)
    assert out["next_open"] == "2026-09-17T09:30:00-04:00"
    same_wire(out, CLOCK)


def test_clock_uses_the_winter_offset_in_january():
    c = ClockReport(utc(2026, 1, 5, 15), True, utc(2026, 1, 6, 14, 30), utc(2026, 1, 5, 21))
    out = wire_format.clock_to_wire(c)
    assert out["timestamp"] == "2026-01-05T10:00:00-05:00"
    assert out["next_open"] == "2026-01-06T09:30:00-05:00"


def test_reference_calendar_round_trips_exactly():
    days = [wire_parse.parse_calendar_day(row) for row in CALENDAR]
    assert days[0] == CalendarDay(
        date(2026, 9, 16), time(9, 30), time(16), time(4), time(20), date(2026, 9, 17)
    )
    assert [wire_format.calendar_day_to_wire(d) for d in days] == CALENDAR


def test_reference_bars_parse_and_serialize_back():
    for symbol, rows in BARS["bars"].items():
        for row in rows:
            bar = wire_parse.parse_bar(symbol, row)
            assert bar.symbol == symbol and bar.trade_count == row["n"]
            assert bar.open == Decimal(str(row["o"])) and bar.vwap == Decimal(str(row["vw"]))
            assert wire_format.bar_to_wire(bar) == row
    first = wire_parse.parse_bar("AAPL", BARS["bars"]["AAPL"][0])
    assert first.timestamp == utc(2026, 9, 15, 13, 30) and first.volume == 41236


def test_alpaca_py_request_body_with_float_numbers_parses_like_strings():
    floats = {**ORDER, **{k: ORDER_REQUEST[k] for k in ("qty", "limit_price")}}
    assert wire_parse.parse_order(floats) == wire_parse.parse_order(ORDER)
    assert wire_parse.dec(ORDER_REQUEST["limit_price"]) == Decimal("178.5")


# -- tolerance ------------------------------------------------------------------------------------


def test_mleg_order_with_empty_strings_and_null_legs_parses():
    mleg = {
        **ORDER,
        "order_class": "mleg",
        "asset_class": "",
        "asset_id": "",
        "symbol": "",
        "side": "",
        "type": "",
        "order_type": "",
        "position_intent": "",
        "legs": None,
    }
    o = wire_parse.parse_order(mleg)
    assert o.order_class == "mleg" and o.legs == () and o.symbol == "" and o.asset_id is None
    assert o.asset_class is AssetClass.UNKNOWN and o.side is Side.UNKNOWN
    assert o.type is OrderType.UNKNOWN and o.position_intent is None
    out = wire_format.order_to_wire(o)
    assert (out["asset_class"], out["side"], out["type"], out["order_type"]) == ("", "", "", "")


def test_missing_asset_class_defaults_to_us_equity_and_extra_keys_are_ignored():
    payload = {k: v for k, v in ORDER.items() if k != "asset_class"}
    payload.update({"ratio_qty": "1", "borrow_status": "x", "event_id": "01J..."})
    assert wire_parse.parse_order(payload).asset_class is AssetClass.US_EQUITY


def test_order_class_simple_and_empty_are_both_kept_as_sent():
    for sent in ("simple", ""):
        o = wire_parse.parse_order({**ORDER, "order_class": sent})
        assert o.order_class is OrderClass.SIMPLE
        assert wire_format.order_to_wire(o)["order_class"] == sent
    assert wire_parse.parse_order({**ORDER, "order_class": None}).order_class is OrderClass.SIMPLE


def test_an_unknown_order_class_becomes_unknown_and_is_sent_back_as_received():
    o = wire_parse.parse_order({**ORDER, "order_class": "otoco"})
    assert o.order_class is OrderClass.UNKNOWN
    assert wire_format.order_to_wire(o)["order_class"] == "otoco"


def test_unknown_enum_values_become_unknown_and_keep_their_raw_text():
    o = wire_parse.parse_order(
        {**ORDER, "status": "pending_review_v2", "side": "sell_short", "time_in_force": "gtd"}
    )
    assert o.status is OrderStatus.UNKNOWN and o.raw_status == "pending_review_v2"
    assert o.side is Side.UNKNOWN and o.raw_value("side") == "sell_short"
    assert o.time_in_force is TimeInForce.UNKNOWN and o.raw_value("time_in_force") == "gtd"
    assert not o.status.is_open and not o.status.is_terminal
    out = wire_format.order_to_wire(o)
    assert (out["status"], out["side"], out["time_in_force"]) == (
        "pending_review_v2",
        "sell_short",
        "gtd",
    )
    u = wire_parse.parse_trade_update({**TU_NEW["data"], "event": "order_expired_v2"})
    assert u.event is TradeEvent.UNKNOWN and u.event_raw == "order_expired_v2"
    assert wire_format.trade_update_to_wire(u)["data"]["event"] == "order_expired_v2"
    a = wire_parse.parse_asset({**ASSET_EQUITY, "class": "us_future", "status": "halted"})
    assert a.asset_class is AssetClass.UNKNOWN and a.raw["class"] == "us_future"
    assert wire_format.asset_to_wire(a)["class"] == "us_future"
    p = wire_parse.parse_position({**POSITION, "asset_class": "crypto_perp"})
    assert p.asset_class is AssetClass.CRYPTO_PERP


def test_enum_values_are_matched_case_insensitively():
    o = wire_parse.parse_order({**ORDER, "status": "FILLED", "side": "Sell", "type": "LIMIT"})
    assert (o.status, o.side, o.type) == (OrderStatus.FILLED, Side.SELL, OrderType.LIMIT)
    assert o.raw_status == "FILLED"


def test_trade_update_falls_back_to_at_when_timestamp_is_missing():
    data = {k: v for k, v in TU_NEW["data"].items() if k != "timestamp"}
    u = wire_parse.parse_trade_update({**data, "at": "2026-09-16T10:02:11-04:00"})
    assert u.timestamp == utc(2026, 9, 16, 14, 2, 11)


def test_calendar_accepts_hhmm_without_colon_and_seconds():
    d = wire_parse.parse_calendar_day({"date": "2026-11-27", "open": "0930", "close": "13:00:00"})
    assert (d.open, d.close, d.settlement_date) == (time(9, 30), time(13), None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-16T14:02:11Z", utc(2026, 9, 16, 14, 2, 11)),
        ("2026-09-16T14:02:11.5Z", utc(2026, 9, 16, 14, 2, 11, 500000)),
        ("2026-09-16T14:02:11.123456789Z", utc(2026, 9, 16, 14, 2, 11, 123456)),
        ("2022-04-19T13:45:04.981350886-04:00", utc(2022, 4, 19, 17, 45, 4, 981350)),
        ("2026-09-16t14:02:11+0530", utc(2026, 9, 16, 8, 32, 11)),
        ("2026-09-16 14:02:11z", utc(2026, 9, 16, 14, 2, 11)),
        ("2026-09-16T14:02", utc(2026, 9, 16, 14, 2)),
        ("2026-09-16T14:02:11", utc(2026, 9, 16, 14, 2, 11)),
    ],
)
def test_timestamps_with_any_fraction_and_offset_parse_to_utc(text, expected):
    out = wire_parse.ts(text)
    assert out == expected and out.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-09-16",
        "2026-09-16T14:02:11.1234567891Z",
        "2026-13-01T00:00:00Z",
        "2026-09-16T24:00:00Z",
        "2026-09-16T14:02:11+24:00",
        "2026-09-16T14:02:11+05:99",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "２０２６-09-16T14:02:11Z",
        "yesterday",
    ],
)
def test_malformed_timestamps_raise_payload_error(text):
    with pytest.raises(PayloadError, match="created_at"):
        wire_parse.ts(text, "created_at")


@pytest.mark.parametrize(
    ("parse", "payload", "field"),
    [
        (wire_parse.parse_order, ORDER, "id"),
        (wire_parse.parse_order, ORDER, "client_order_id"),
        (wire_parse.parse_order, ORDER, "status"),
        (wire_parse.parse_order, ORDER, "created_at"),
        (wire_parse.parse_trade_update, TU_FILL["data"], "event"),
        (wire_parse.parse_trade_update, TU_FILL["data"], "timestamp"),
        (wire_parse.parse_trade_update, TU_FILL["data"], "order"),
        (wire_parse.parse_position, POSITION, "symbol"),
        (wire_parse.parse_position, POSITION, "qty"),
        (wire_parse.parse_position, POSITION, "avg_entry_price"),
        (wire_parse.parse_account, ACCOUNT, "id"),
        (wire_parse.parse_account, ACCOUNT, "account_number"),
        (wire_parse.parse_account, ACCOUNT, "status"),
        (wire_parse.parse_asset, ASSET_EQUITY, "id"),
        (wire_parse.parse_asset, ASSET_EQUITY, "symbol"),
        (wire_parse.parse_clock, CLOCK, "timestamp"),
        (wire_parse.parse_clock, CLOCK, "is_open"),
        (wire_parse.parse_clock, CLOCK, "next_open"),
        (wire_parse.parse_clock, CLOCK, "next_close"),
        (wire_parse.parse_calendar_day, CALENDAR[0], "date"),
        (wire_parse.parse_calendar_day, CALENDAR[0], "open"),
        (wire_parse.parse_calendar_day, CALENDAR[0], "close"),
    ],
)
@pytest.mark.parametrize("how", ["absent", "null", "empty"])
def test_missing_required_field_raises_payload_error_naming_it(parse, payload, field, how):
    broken = dict(payload)
    if how == "absent":
        del broken[field]
    else:
        broken[field] = None if how == "null" else ""
    with pytest.raises(PayloadError, match=rf"\b{field}\b"):
        parse(broken)


def test_error_in_a_leg_names_the_leg():
    legs = [dict(BRACKET["legs"][0]), {**BRACKET["legs"][1], "qty": "ten"}]
    with pytest.raises(PayloadError, match=r"order\.legs\[1\]\.qty"):
        wire_parse.parse_order({**BRACKET, "legs": legs})


def test_bar_missing_a_price_names_it():
    with pytest.raises(PayloadError, match="bar.c"):
        wire_parse.parse_bar("AAPL", {**BARS["bars"]["AAPL"][0], "c": None})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("178.500"), "178.5"),
        (Decimal("100"), "100"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0.00"), "0"),
        (Decimal("0.000000001"), "0.000000001"),
        (Decimal("1E-9"), "0.000000001"),
        (Decimal("-3.10"), "-3.1"),
        (7, "7"),
        (0.1, "0.1"),
        (None, None),
    ],
)
def test_numbers_serialize_as_plain_strings_with_trailing_zeros_trimmed(value, expected):
    assert wire_format.num(value) == expected


def test_stamps_are_utc_with_z_and_trimmed_microseconds():
    est = timezone(timedelta(hours=-5))
    assert wire_format.stamp(datetime(2026, 1, 5, 10, 0, 0, 120000, tzinfo=est)) == (
        "2026-01-05T15:00:00.12Z"
    )
    assert wire_format.stamp(utc(2026, 9, 16, 20)) == "2026-09-16T20:00:00Z"
    assert wire_format.stamp(datetime(2026, 9, 16, 20)) == "2026-09-16T20:00:00Z"  # naive is UTC


# -- strategies -----------------------------------------------------------------------------------

ids = st.uuids().map(str)
moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
amounts = st.decimals(
    min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=6, allow_nan=False
)
positive = st.decimals(min_value=0, max_value=Decimal("1e9"), places=9, allow_nan=False)
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


def maybe(strategy):
    return st.none() | strategy


@st.composite
def orders(draw, depth: int = 1, stream: bool = False) -> OrderReport:
    created = draw(moments)
    legs = draw(st.lists(orders(depth - 1, stream), max_size=2)) if depth > 0 else []
    return OrderReport(
        id=draw(ids),
        client_order_id=draw(words),
        symbol=draw(st.sampled_from(["AAPL", "BTC/USD", "SPY", ""])),
        side=draw(st.sampled_from(Side)),
        type=draw(st.sampled_from(OrderType)),
        time_in_force=draw(st.sampled_from(TimeInForce)),
        status=draw(st.sampled_from(OrderStatus)),
        qty=draw(maybe(positive)),
        notional=draw(maybe(positive)),
        filled_qty=draw(positive),
        filled_avg_price=draw(maybe(positive)),
        created_at=created,
        updated_at=draw(moments),
        submitted_at=draw(moments),
        filled_at=draw(maybe(moments)),
        canceled_at=draw(maybe(moments)),
        expired_at=draw(maybe(moments)),
        failed_at=draw(maybe(moments)),
        replaced_at=draw(maybe(moments)),
        replaced_by=draw(maybe(ids)),
        replaces=draw(maybe(ids)),
        limit_price=draw(maybe(positive)),
        stop_price=draw(maybe(positive)),
        trail_price=draw(maybe(positive)),
        trail_percent=draw(maybe(positive)),
        hwm=draw(maybe(positive)),
        extended_hours=draw(st.booleans()),
        asset_class=draw(st.sampled_from(AssetClass)),
        asset_id=draw(maybe(ids)),
        order_class=draw(st.sampled_from([c for c in OrderClass if c.name != "UNKNOWN"])),
        legs=tuple(legs),
        expires_at=draw(maybe(moments)),
        cancel_requested_at=draw(maybe(moments)) if stream else None,
        position_intent=draw(
            st.sampled_from([None, "buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close"])
        ),
    )


@st.composite
def trade_updates(draw) -> TradeUpdate:
    event = draw(st.sampled_from([e for e in TradeEvent if e is not TradeEvent.UNKNOWN]))
    fill = event.is_fill
    return TradeUpdate(
        event=event,
        event_raw=event.value,
        timestamp=draw(moments),
        order=draw(orders(stream=True)),
        execution_id=draw(ids) if fill else None,
        price=draw(positive) if fill else None,
        qty=draw(positive) if fill else None,
        position_qty=draw(amounts) if fill else None,
    )


@st.composite
def positions(draw) -> PositionReport:
    side = draw(st.sampled_from([PositionSide.LONG, PositionSide.SHORT]))
    qty = draw(positive.filter(bool))
    return PositionReport(
        symbol=draw(st.sampled_from(["AAPL", "BTC/USD", "MSFT"])),
        qty=qty if side is PositionSide.LONG else -qty,
        avg_entry_price=draw(positive),
        side=side,
        asset_class=draw(st.sampled_from(AssetClass)),
        asset_id=draw(maybe(ids)),
        exchange=draw(st.sampled_from(["NASDAQ", "NYSE", "CRYPTO", ""])),
        qty_available=draw(amounts),
        market_value=draw(maybe(amounts)),
        cost_basis=draw(maybe(amounts)),
        unrealized_pl=draw(maybe(amounts)),
        current_price=draw(maybe(positive)),
        lastday_price=draw(maybe(positive)),
    )


accounts = st.builds(
    AccountReport,
    id=ids,
    account_number=words,
    status=st.sampled_from(["ACTIVE", "ACCOUNT_UPDATED", "INACTIVE"]),
    currency=st.just("USD"),
    cash=amounts,
    equity=amounts,
    buying_power=amounts,
    portfolio_value=amounts,
    long_market_value=amounts,
    short_market_value=amounts,
    initial_margin=amounts,
    maintenance_margin=amounts,
    last_equity=amounts,
    multiplier=st.sampled_from([Decimal(1), Decimal(2), Decimal(4)]),
    shorting_enabled=st.booleans(),
    trading_blocked=st.booleans(),
    account_blocked=st.booleans(),
    crypto_status=st.sampled_from(["ACTIVE", "INACTIVE", "SUBMITTED"]),
    regt_buying_power=amounts,
    non_marginable_buying_power=amounts,
    options_buying_power=amounts,
    effective_buying_power=amounts,
    sma=amounts,
    accrued_fees=amounts,
    pending_transfer_in=amounts,
    pending_transfer_out=amounts,
    last_maintenance_margin=amounts,
    position_market_value=amounts,
    intraday_adjustments=amounts,
    pending_reg_taf_fees=amounts,
    options_approved_level=st.integers(1, 3),
    options_trading_level=st.integers(1, 3),
    crypto_tier=st.integers(1, 5),
    transfers_blocked=st.booleans(),
    trade_suspended_by_user=st.booleans(),
    created_at=moments,
    balance_asof=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
)

small = st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False)
assets = st.builds(
    AssetInfo,
    id=ids,
    symbol=words,
    asset_class=st.sampled_from(AssetClass),
    exchange=st.sampled_from(["NASDAQ", "NYSE", "ARCA", "CRYPTO", "ASCX", ""]),
    status=st.sampled_from(AssetStatus),
    tradable=st.booleans(),
    marginable=st.booleans(),
    shortable=st.booleans(),
    easy_to_borrow=st.booleans(),
    fractionable=st.booleans(),
    name=st.text(max_size=20),
    min_order_size=maybe(positive),
    min_trade_increment=maybe(positive),
    price_increment=maybe(positive),
    maintenance_margin_requirement=maybe(small),
    margin_requirement_long=maybe(small),
    margin_requirement_short=maybe(small),
    attributes=st.lists(words, max_size=3).map(tuple),
    cusip=maybe(st.from_regex(r"[0-9A-Z]{9}", fullmatch=True)),
)

minutes = st.builds(time, st.integers(0, 23), st.integers(0, 59))
calendar_days = st.builds(
    CalendarDay,
    date=st.dates(date(1970, 1, 1), date(2029, 12, 31)),
    open=minutes,
    close=minutes,
    session_open=maybe(minutes),
    session_close=maybe(minutes),
    settlement_date=maybe(st.dates(date(1970, 1, 1), date(2029, 12, 31))),
)
clocks = st.builds(ClockReport, moments, st.booleans(), moments, moments)
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99999"), places=4)
bars = st.builds(
    Bar,
    symbol=st.just("AAPL"),
    timestamp=moments,
    open=prices,
    high=prices,
    low=prices,
    close=prices,
    volume=st.integers(0, 10**9).map(Decimal) | small,
    trade_count=st.integers(0, 10**6),
    vwap=prices,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- round trips ----------------------------------------------------------------------------------


@FAST
@given(orders())
def test_order_round_trips_through_the_wire(order):
    assert wire_parse.parse_order(json.loads(json.dumps(wire_format.order_to_wire(order)))) == order


@FAST
@given(trade_updates())
def test_trade_update_round_trips_through_the_wire(update):
    message = json.loads(json.dumps(wire_format.trade_update_to_wire(update)))
    assert message["stream"] == "trade_updates"
    assert wire_parse.parse_trade_update(message["data"]) == update


@FAST
@given(positions())
def test_position_round_trips_through_the_wire(position):
    assert (
        wire_parse.parse_position(json.loads(json.dumps(wire_format.position_to_wire(position))))
        == position
    )


@FAST
@given(accounts, moments)
def test_account_round_trips_through_the_wire(account, created):
    assert wire_parse.parse_account(wire_format.account_to_wire(account, created)) == account


@FAST
@given(assets)
def test_asset_round_trips_through_the_wire(asset):
    assert wire_parse.parse_asset(json.loads(json.dumps(wire_format.asset_to_wire(asset)))) == asset


@FAST
@given(clocks)
def test_clock_round_trips_through_eastern_time(clock):
    assert wire_parse.parse_clock(wire_format.clock_to_wire(clock)) == clock


@FAST
@given(calendar_days)
def test_calendar_day_round_trips_through_the_wire(day):
    assert wire_parse.parse_calendar_day(wire_format.calendar_day_to_wire(day)) == day


@FAST
@given(bars)
def test_bar_round_trips_through_json_numbers(bar):
    assert wire_parse.parse_bar("AAPL", json.loads(json.dumps(wire_format.bar_to_wire(bar)))) == bar


# -- scalar properties ----------------------------------------------------------------------------


def in_range(d: Decimal) -> bool:
    """Within wire_parse.dec's accepted magnitudes (1e-30 .. 1e30, or zero)."""
    return d.is_zero() or abs(d.adjusted()) <= 30


finite = st.decimals(
    min_value=Decimal("-1e20"), max_value=Decimal("1e20"), allow_nan=False, allow_infinity=False
).filter(in_range)


@settings(max_examples=200, deadline=None)
@given(finite)
def test_decimal_parses_the_same_from_any_string_notation(value):
    assert wire_parse.dec(str(value)) == value
    assert wire_parse.dec(format(value, "f")) == value
    assert wire_parse.dec(f" {value} ") == value
    assert wire_parse.dec(wire_format.num(value)) == value


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**20), 10**20))
def test_integers_parse_the_same_as_json_numbers_and_strings(value):
    assert (
        wire_parse.dec(value)
        == wire_parse.dec(str(value))
        == wire_parse.dec(json.loads(json.dumps(value)))
    )


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=-1e15, max_value=1e15, allow_nan=False).filter(
        lambda f: in_range(Decimal(f))
    )
)
def test_floats_parse_as_their_shortest_repr_like_a_json_number(value):
    assert wire_parse.dec(value) == Decimal(repr(value)) == wire_parse.dec(json.dumps(value))
    assert wire_parse.dec(value) == wire_parse.dec(json.loads(json.dumps(value)))


@settings(max_examples=300, deadline=None)
@given(
    moment=moments,
    nanos=st.integers(0, 999),
    digits=st.integers(0, 9),
    offset=st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    form=st.sampled_from(["Z", "z", "colon", "plain"]),
    sep=st.sampled_from(["T", "t", " "]),
)
def test_rfc3339_timestamps_parse_to_the_same_instant(moment, nanos, digits, offset, form, sep):
    tz = UTC if form in ("Z", "z") else timezone(timedelta(minutes=offset))
    local = moment.astimezone(tz)
    nine = f"{local.microsecond:06d}{nanos:03d}"
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + nine[:digits]
    if form in ("Z", "z"):
        text += form
    else:
        sign, total = ("+" if offset >= 0 else "-"), abs(offset)
        hh, mm = divmod(total, 60)
        text += f"{sign}{hh:02d}:{mm:02d}" if form == "colon" else f"{sign}{hh:02d}{mm:02d}"
    micro = int(nine[:digits].ljust(6, "0")[:6]) if digits else 0
    expected = local.replace(microsecond=micro).astimezone(UTC)
    out = wire_parse.ts(text)
    assert out == expected and out.utcoffset() == timedelta(0)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{4})?"))
def test_timestamp_parser_raises_only_payload_error(text):
    try:
        out = wire_parse.ts(text)
    except PayloadError:
        return
    assert out is None or out.tzinfo is UTC


# -- malformed input ------------------------------------------------------------------------------

# Values that broke naive parsers: NaN/inf, huge exponents and integers, impossible clock times,
# offsets that overflow datetime's range, impossible dates.
EDGE_VALUES = [
    "",
    "1e999999",
    "NaN",
    "-0",
    "9" * 5000,
    10**5000,
    float("nan"),
    float("inf"),
    "25:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-09-16T14:02:11Z",
    "2026-02-30",
    "filled",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
field_values = st.sampled_from(EDGE_VALUES) | json_values

PARSERS = {
    "order": (wire_parse.parse_order, ORDER),
    "bracket": (wire_parse.parse_order, BRACKET),
    "trade_update": (wire_parse.parse_trade_update, TU_FILL["data"]),
    "position": (wire_parse.parse_position, POSITION),
    "account": (wire_parse.parse_account, ACCOUNT),
    "asset": (wire_parse.parse_asset, ASSET_CRYPTO),
    "clock": (wire_parse.parse_clock, CLOCK),
    "calendar": (wire_parse.parse_calendar_day, CALENDAR[0]),
    "bar": (lambda d: wire_parse.parse_bar("AAPL", d), BARS["bars"]["AAPL"][0]),
}


@st.composite
def mutated(draw, base: dict[str, Any]) -> dict[str, Any]:
    """A valid payload with some keys replaced by arbitrary JSON values or removed; nested
    objects (an update's order, a bracket's legs) are mutated too."""
    out = dict(base)
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=4, unique=True)):
        if draw(st.booleans()):
            del out[key]
        else:
            out[key] = draw(field_values)
    if (
        isinstance(base.get("order"), dict)
        and out.get("order") is base["order"]
        and draw(st.booleans())
    ):
        out["order"] = draw(mutated(out["order"]))
    if base.get("legs") and out.get("legs") is base["legs"] and draw(st.booleans()):
        out["legs"] = [draw(mutated(leg)) for leg in out["legs"]]
    return out


def only_payload_errors(parse, data) -> None:
    with contextlib.suppress(PayloadError):
        parse(data)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_malformed_payloads_raise_only_payload_error(name, data):
    parse, base = PARSERS[name]
    only_payload_errors(parse, data.draw(json_values))
    only_payload_errors(parse, data.draw(mutated(base)))


def test_absurd_magnitudes_are_refused_but_zero_in_any_exponent_is_zero():
    assert wire_parse.dec("1e30") == Decimal("1e30") and wire_parse.dec("1e-30") == Decimal("1e-30")
    assert wire_parse.dec("0E-50") == 0 and wire_parse.dec(0.0) == 0
    for value in ("1e31", "1e-31", 1e-35):
        with pytest.raises(PayloadError, match="out of range"):
            wire_parse.dec(value)


@pytest.mark.parametrize(
    "value", ["1e999999", "NaN", "inf", "-Infinity", True, [], {}, "12abc", b"1", "9" * 5000]
)
def test_unusable_numbers_raise_payload_error_naming_the_field(value):
    with pytest.raises(PayloadError, match="order.qty"):
        wire_parse.parse_order({**ORDER, "qty": value})


# -- the real alpaca-py models accept what we serialize -------------------------------------------


@pytest.fixture(scope="module")
def alpaca_models():
    return pytest.importorskip("alpaca.trading.models")


def test_alpaca_py_parses_the_reference_shapes_we_serialize(alpaca_models):
    m = alpaca_models
    order = m.Order(**wire_format.order_to_wire(wire_parse.parse_order(ORDER)))
    assert order.client_order_id == "tk-20260916-aapl-0001" and order.qty == "100"
    assert order.order_class.value == "simple" and order.position_intent.value == "buy_to_open"
    bracket = m.Order(**wire_format.order_to_wire(wire_parse.parse_order(BRACKET)))
    assert [leg.status.value for leg in bracket.legs] == ["new", "held"]
    position = m.Position(**wire_format.position_to_wire(wire_parse.parse_position(POSITION)))
    assert position.unrealized_plpc == "0.0337182984156462"
    account = m.TradeAccount(
        **wire_format.account_to_wire(wire_parse.parse_account(ACCOUNT), utc(2025, 11, 3))
    )
    assert account.status.value == "ACTIVE" and account.pattern_day_trader is None
    for ref in (ASSET_EQUITY, ASSET_CRYPTO):
        asset = m.Asset(**wire_format.asset_to_wire(wire_parse.parse_asset(ref)))
        assert asset.symbol == ref["symbol"]
    assert m.Asset(
        **wire_format.asset_to_wire(wire_parse.parse_asset(ASSET_CRYPTO))
    ).min_trade_increment == (1e-9)
    clock = m.Clock(**wire_format.clock_to_wire(wire_parse.parse_clock(CLOCK)))
    assert clock.next_open == utc(2026, 9, 17, 13, 30)
    cal = m.Calendar(**wire_format.calendar_day_to_wire(wire_parse.parse_calendar_day(CALENDAR[0])))
    assert cal.open == datetime(2026, 9, 16, 9, 30) and cal.close == datetime(2026, 9, 16, 16)
    for message in (TU_NEW, TU_PARTIAL, TU_FILL):
        out = wire_format.trade_update_to_wire(wire_parse.parse_trade_update(message["data"]))
        update = m.TradeUpdate(**out["data"])
        assert update.event == message["data"]["event"]
        assert update.qty == (float(message["data"]["qty"]) if "qty" in message["data"] else None)


def test_alpaca_py_accepts_an_mleg_order_with_empty_strings(alpaca_models):
    mleg = {**ORDER, "order_class": "mleg", "asset_class": "", "side": "", "type": ""}
    mleg["order_type"] = ""
    order = alpaca_models.Order(**wire_format.order_to_wire(wire_parse.parse_order(mleg)))
    assert order.asset_class is None and order.side is None and order.type is None


known = [OrderStatus, Side, OrderType, TimeInForce, AssetClass]


@FAST
@given(orders(stream=True), st.data())
def test_alpaca_py_order_model_accepts_every_order_we_serialize(alpaca_models, order, data):
    # alpaca-py rejects unknown enum values (alpaca-protocol.md §8); the emulator never makes
    # them, so generated orders use known members only.
    def known_only(o: OrderReport) -> OrderReport:
        from dataclasses import replace

        pick = {
            "status": data.draw(st.sampled_from([s for s in OrderStatus if s.name != "UNKNOWN"])),
            "time_in_force": data.draw(
                st.sampled_from([t for t in TimeInForce if t.name != "UNKNOWN"])
            ),
        }
        return replace(o, legs=tuple(known_only(leg) for leg in o.legs), **pick)

    order = known_only(order)
    parsed = alpaca_models.Order(**wire_format.order_to_wire(order))
    assert str(parsed.id) == order.id and parsed.status.value == order.status.value
    assert parsed.updated_at == order.updated_at and parsed.extended_hours == order.extended_hours
    assert len(parsed.legs or []) == len(order.legs)
    if order.qty is not None:
        assert Decimal(parsed.qty) == order.qty


@FAST
@given(trade_updates())
def test_alpaca_py_trade_update_model_accepts_every_update_we_serialize(alpaca_models, update):
    from dataclasses import replace

    order = replace(update.order, status=OrderStatus.NEW, time_in_force=TimeInForce.DAY, legs=())
    data = wire_format.trade_update_to_wire(replace(update, order=order))["data"]
    parsed = alpaca_models.TradeUpdate(**data)
    assert parsed.event == update.event.value
    assert parsed.timestamp == update.timestamp
    if update.event.is_fill:
        assert str(parsed.execution_id) == update.execution_id
        assert parsed.price == float(update.price) and parsed.qty == float(update.qty)


@FAST
@given(positions(), assets, accounts, clocks, calendar_days)
def test_alpaca_py_models_accept_positions_assets_accounts_clocks_calendars(
    alpaca_models, position, asset, account, clock, day
):
    from dataclasses import replace

    m = alpaca_models
    position = replace(
        position, asset_id=position.asset_id or "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415"
    )
    position = replace(position, cost_basis=position.cost_basis or Decimal(0))
    if position.asset_class is AssetClass.UNKNOWN:
        position = replace(position, asset_class=AssetClass.US_EQUITY)
    assert m.Position(**wire_format.position_to_wire(position)).qty == wire_format.num(position.qty)
    asset = replace(
        asset,
        asset_class=AssetClass.CRYPTO
        if asset.asset_class is AssetClass.UNKNOWN
        else asset.asset_class,
        status=AssetStatus.ACTIVE,
    )
    assert m.Asset(**wire_format.asset_to_wire(asset)).symbol == asset.symbol
    assert m.TradeAccount(**wire_format.account_to_wire(account, clock.timestamp)).id.hex == (
        account.id.replace("-", "")
    )
    assert m.Clock(**wire_format.clock_to_wire(clock)).next_close == clock.next_close
    assert m.Calendar(**wire_format.calendar_day_to_wire(day)).date == day.date
