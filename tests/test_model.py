"""Domain types: tolerant enums, Alpaca's open/closed status groups, fills and remaining qty."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli.model import (
    TERMINAL_STATUSES,
    AssetClass,
    AssetStatus,
    FillReport,
    OrderReport,
    OrderStatus,
    OrderType,
    PositionSide,
    Side,
    TimeInForce,
    TradeEvent,
    TradeUpdate,
    WireEnum,
)

ENUMS = [
    Side,
    OrderType,
    TimeInForce,
    OrderStatus,
    AssetClass,
    AssetStatus,
    PositionSide,
    TradeEvent,
]
T0 = datetime(2026, 9, 16, 14, 2, 11, tzinfo=UTC)


def report(**kw) -> OrderReport:
    base = dict(
        id="61e69015-8549-4bfd-b9c3-01e75843f47d",
        client_order_id="tk-1",
        symbol="AAPL",
        side=Side.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        status=OrderStatus.NEW,
        qty=Decimal("100"),
        notional=None,
        filled_qty=Decimal("0"),
        filled_avg_price=None,
        created_at=T0,
    )
    return OrderReport(**{**base, **kw})


# -- enum tolerance -------------------------------------------------------------------------------


@pytest.mark.parametrize("enum", ENUMS)
def test_every_wire_enum_has_unknown_and_maps_unknown_text_to_it(enum):
    assert issubclass(enum, WireEnum) and enum("unknown").name == "UNKNOWN"
    assert enum("something_alpaca_added_in_2027").name == "UNKNOWN"
    assert enum("").name == "UNKNOWN"


@pytest.mark.parametrize("enum", ENUMS)
def test_wire_enums_match_any_case_and_surrounding_spaces(enum):
    for member in enum:
        assert enum(member.value.upper()) is member
        assert enum(f" {member.value} ") is member


@pytest.mark.parametrize("value", [None, 5, 1.5, True, b"filled"])
def test_non_text_values_become_unknown_instead_of_raising(value):
    assert OrderStatus(value) is OrderStatus.UNKNOWN


@given(st.text())
def test_any_text_parses_to_a_member_of_every_enum(text):
    for enum in ENUMS:
        assert isinstance(enum(text), enum)


def test_members_are_their_wire_text():
    assert str(OrderStatus.PARTIALLY_FILLED) == "partially_filled"
    assert f"{Side.SELL}" == "sell" and Side.SELL == "sell"
    assert Side.BUY.opposite is Side.SELL and Side.SELL.opposite is Side.BUY


# -- open / closed --------------------------------------------------------------------------------

# alpaca-protocol.md §3.2: GET /v2/orders?status=closed lists these; everything else is open.
CLOSED = {"filled", "canceled", "expired", "replaced", "rejected", "done_for_day"}


@pytest.mark.parametrize("status", [s for s in OrderStatus if s is not OrderStatus.UNKNOWN])
def test_status_is_open_or_terminal_per_alpacas_open_and_closed_groups(status):
    assert status.is_terminal is (status.value in CLOSED)
    assert status.is_open is (status.value not in CLOSED)
    assert status.is_open != status.is_terminal


def test_held_pending_and_accepted_orders_are_open():
    for value in ("held", "accepted", "pending_new", "pending_cancel", "pending_replace"):
        assert OrderStatus(value).is_open


def test_unknown_status_is_neither_open_nor_terminal():
    assert not OrderStatus.UNKNOWN.is_open and not OrderStatus.UNKNOWN.is_terminal
    assert {s.value for s in TERMINAL_STATUSES} == CLOSED


def test_only_fill_and_partial_fill_are_fill_events():
    assert {e for e in TradeEvent if e.is_fill} == {TradeEvent.FILL, TradeEvent.PARTIAL_FILL}


# -- reports --------------------------------------------------------------------------------------


def test_remaining_qty_is_ordered_minus_filled():
    assert report(filled_qty=Decimal("40")).remaining_qty == Decimal("60")
    assert report(filled_qty=Decimal("100")).remaining_qty == 0


def test_notional_order_has_no_remaining_qty():
    assert report(qty=None, notional=Decimal("500")).remaining_qty is None


@given(
    st.decimals(min_value=0, max_value=10**9, places=9),
    st.decimals(min_value=0, max_value=10**9, places=9),
)
def test_remaining_plus_filled_is_the_ordered_qty(qty, filled):
    assert report(qty=qty, filled_qty=filled).remaining_qty + filled == qty


def test_raw_status_and_raw_value_keep_what_the_broker_sent():
    o = report(status=OrderStatus.UNKNOWN, side=Side.UNKNOWN, raw={"status": "x", "side": "y"})
    assert o.raw_status == "x" and o.raw_value("status") == "x" and o.raw_value("side") == "y"
    plain = report()
    assert plain.raw_status == "new" and plain.raw_value("side") == "buy"
    assert report(raw={"order_type": "limit"}).raw_value("type") == "limit"


def test_raw_payload_does_not_take_part_in_equality():
    assert report(raw={"status": "NEW"}) == report()


def test_reports_are_immutable():
    with pytest.raises(FrozenInstanceError):
        report().status = OrderStatus.FILLED  # type: ignore[misc]


# -- trade updates --------------------------------------------------------------------------------


def update(event: TradeEvent, **kw) -> TradeUpdate:
    return TradeUpdate(event=event, timestamp=T0, order=report(side=Side.SELL), **kw)


@pytest.mark.parametrize("event", [TradeEvent.FILL, TradeEvent.PARTIAL_FILL])
def test_fill_event_yields_its_execution(event):
    u = update(
        event,
        execution_id="c1f4e5a2-3b7d-4e19-8f62-0a9d7b3c5e81",
        price=Decimal("178.48"),
        qty=Decimal("40"),
        position_qty=Decimal("-40"),
    )
    assert u.fill() == FillReport(
        order_id=u.order.id,
        client_order_id="tk-1",
        symbol="AAPL",
        side=Side.SELL,
        qty=Decimal("40"),
        price=Decimal("178.48"),
        timestamp=T0,
        execution_id="c1f4e5a2-3b7d-4e19-8f62-0a9d7b3c5e81",
        position_qty=Decimal("-40"),
    )
    assert u.fill().fee == 0


@pytest.mark.parametrize("event", [e for e in TradeEvent if not e.is_fill])
def test_non_fill_events_yield_no_execution_even_with_fill_fields(event):
    assert update(event, price=Decimal("1"), qty=Decimal("1")).fill() is None


def test_fill_without_price_or_qty_yields_no_execution():
    assert update(TradeEvent.FILL, qty=Decimal("1")).fill() is None
    assert update(TradeEvent.FILL, price=Decimal("1")).fill() is None


def test_fill_without_execution_id_still_yields_the_execution():
    fill = update(TradeEvent.FILL, price=Decimal("1"), qty=Decimal("2")).fill()
    assert fill is not None and fill.execution_id is None and fill.qty == 2
