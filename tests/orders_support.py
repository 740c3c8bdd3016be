"""Builders of broker reports and trade updates for the order tracker and reconcile tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from mqd_cli.model import (
    OrderIntent,
    OrderReport,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradeEvent,
    TradeUpdate,
)

T0 = datetime(2026, 9, 16, 14, 0, tzinfo=UTC)


def D(x) -> Decimal:
    return Decimal(str(x))


def report(
    cid: str = "c1",
    *,
    status: str = "new",
    filled: str = "0",
    avg: str | None = None,
    qty: str = "100",
    side: str = "buy",
    symbol: str = "AAPL",
    oid: str | None = None,
    at: datetime | None = None,
    replaces: str | None = None,
    replaced_by: str | None = None,
    limit: str | None = None,
) -> OrderReport:
    at = at or T0
    return OrderReport(
        id=oid or f"id-{cid}",
        client_order_id=cid,
        symbol=symbol,
        side=Side(side),
        type=OrderType.LIMIT if limit else OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        status=OrderStatus(status),
        qty=D(qty),
        notional=None,
        filled_qty=D(filled),
        filled_avg_price=None if avg is None else D(avg),
        created_at=T0,
        updated_at=at,
        replaces=replaces,
        replaced_by=replaced_by,
        limit_price=None if limit is None else D(limit),
    )


def update(
    event: str,
    cid: str = "c1",
    *,
    status: str | None = None,
    filled: str = "0",
    avg: str | None = None,
    exec_id: str | None = None,
    price: str | None = None,
    fill_qty: str | None = None,
    qty: str = "100",
    side: str = "buy",
    symbol: str = "AAPL",
    seconds: float = 0,
    **kw,
) -> TradeUpdate:
    at = T0 + timedelta(seconds=seconds)
    status = status or {"fill": "filled", "partial_fill": "partially_filled"}.get(event, event)
    return TradeUpdate(
        event=TradeEvent(event),
        timestamp=at,
        order=report(
            cid,
            status=status,
            filled=filled,
            avg=avg,
            qty=qty,
            side=side,
            symbol=symbol,
            at=at,
            **kw,
        ),
        execution_id=exec_id,
        price=None if price is None else D(price),
        qty=None if fill_qty is None else D(fill_qty),
        event_raw=event,
    )


def fill(
    cid: str,
    exec_id: str | None,
    fill_qty: str,
    price: str,
    cum: str,
    avg: str,
    *,
    qty: str = "100",
    side: str = "buy",
    symbol: str = "AAPL",
    seconds: float = 0,
    final: bool | None = None,
) -> TradeUpdate:
    done = D(cum) >= D(qty) if final is None else final
    return update(
        "fill" if done else "partial_fill",
        cid,
        filled=cum,
        avg=avg,
        exec_id=exec_id,
        price=price,
        fill_qty=fill_qty,
        qty=qty,
        side=side,
        symbol=symbol,
        seconds=seconds,
    )


def intent(
    symbol: str = "AAPL",
    side: str = "buy",
    qty: str = "100",
    reason: str = "entry",
    strategy: str = "",
) -> OrderIntent:
    return OrderIntent(symbol=symbol, side=Side(side), qty=D(qty), reason=reason, strategy=strategy)
