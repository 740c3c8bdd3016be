"""Positions per symbol from our fills, by the average-cost method, and their round trips.

Same-direction fills add to the cost basis; reducing fills realize ``(exit - average) * qty``.
A round trip (flat to flat, or to a flip through zero) becomes a ``ClosedTrade``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mqd_cli.model import Side
from mqd_cli.orders.trades import ClosedTrade, make_trade_id
from mqd_cli.orders.trades import Side as TradeSide

if TYPE_CHECKING:
    from mqd_cli.orders.tracked import TrackedOrder

ZERO = Decimal(0)
_BUY = Side.BUY  # a module constant: enum attribute lookups are slow on the hot path


@dataclass(slots=True, kw_only=True)
class TrackedPosition:
    """A symbol's position from our fills (average cost). ``qty`` is signed (short < 0)."""

    symbol: str
    qty: Decimal = ZERO
    cost: Decimal = ZERO  # average cost basis of the open quantity (positive)
    realized_pnl: Decimal = ZERO  # all round trips so far, gross of fees
    fees: Decimal = ZERO
    # the round trip in progress
    opened_at: datetime | None = None
    entry_key: str = ""
    strategy: str = ""
    rt_entry_qty: Decimal = ZERO
    rt_entry_notional: Decimal = ZERO
    rt_exit_qty: Decimal = ZERO
    rt_exit_notional: Decimal = ZERO
    rt_realized: Decimal = ZERO
    rt_fees: Decimal = ZERO

    @property
    def avg_price(self) -> Decimal | None:
        return self.cost / abs(self.qty) if self.qty else None

    def stored(self, ts: Callable[[datetime | None], str | None]) -> tuple[str | None, ...]:
        """The values of ``POSITION_FIELDS`` as stored text (``ts`` formats the time)."""
        opened = self.opened_at
        return (
            self.symbol,
            str(self.qty),
            str(self.cost),
            str(self.realized_pnl),
            str(self.fees),
            None if opened is None else ts(opened),
            self.entry_key,
            self.strategy,
            str(self.rt_entry_qty),
            str(self.rt_entry_notional),
            str(self.rt_exit_qty),
            str(self.rt_exit_notional),
            str(self.rt_realized),
            str(self.rt_fees),
        )

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TrackedPosition:
        kw: dict[str, Any] = {}
        for k in POSITION_FIELDS:
            v = d.get(k)
            if v is None:
                continue
            if k == "opened_at":
                v = datetime.fromisoformat(v)
            elif k not in ("symbol", "entry_key", "strategy"):
                v = Decimal(v)
            kw[k] = v
        return cls(**kw)

    def apply(
        self, order: TrackedOrder, dq: Decimal, dn: Decimal, dfee: Decimal, when: datetime
    ) -> ClosedTrade | None:
        """Apply an order's change of (filled qty, filled notional, fees); maybe close a trade."""
        sign = 1 if order.side is _BUY else -1
        if dfee:
            self.fees += dfee
            self.rt_fees += dfee
        if not dq:
            # Only the price changed (a real fill replaced synthetic quantity at another price).
            if self.qty and (self.qty > 0) == (sign > 0):
                self.cost += dn
            elif self.qty:
                adj = dn if sign < 0 else -dn
                self.realized_pnl += adj
                self.rt_realized += adj
            return None
        if dq < 0:
            # Never expected (filled quantity only rises); kept consistent rather than guessed.
            sign, dq, dn = -sign, -dq, -dn
        if not self.qty or (self.qty > 0) == (sign > 0):
            self._open_more(order, sign, dq, dn, when)
            return None
        price = dn / dq
        closed = None
        close_q = min(dq, abs(self.qty))
        avg = self.cost / abs(self.qty)
        direction = 1 if self.qty > 0 else -1
        pnl = (price - avg) * close_q * direction
        self.cost -= avg * close_q
        self.qty += sign * close_q
        self.realized_pnl += pnl
        self.rt_realized += pnl
        self.rt_exit_qty += close_q
        self.rt_exit_notional += price * close_q
        if not self.qty:
            self.cost = ZERO
            closed = self._close(order, when, direction)
        rest = dq - close_q
        if rest > 0:
            self._open_more(order, sign, rest, price * rest, when)
        return closed

    def _open_more(
        self, order: TrackedOrder, sign: int, dq: Decimal, dn: Decimal, when: datetime
    ) -> None:
        if not self.qty:
            self.opened_at = when
            self.entry_key = order.client_order_id
            self.strategy = order.strategy
            self.rt_entry_qty = self.rt_entry_notional = ZERO
            self.rt_exit_qty = self.rt_exit_notional = self.rt_realized = ZERO
        self.qty += dq if sign > 0 else -dq
        self.cost += dn
        self.rt_entry_qty += dq
        self.rt_entry_notional += dn

    def _close(self, order: TrackedOrder, when: datetime, direction: int) -> ClosedTrade:
        side: TradeSide = "long" if direction > 0 else "short"
        opened = self.opened_at or when
        trade = ClosedTrade(
            trade_id=make_trade_id(self.symbol, side, opened, self.entry_key),
            symbol=self.symbol,
            side=side,
            qty=self.rt_entry_qty,
            entry_price=self.rt_entry_notional / self.rt_entry_qty,
            exit_price=self.rt_exit_notional / self.rt_exit_qty,
            opened_at=opened,
            closed_at=when,
            pnl=self.rt_realized - self.rt_fees,
            fees=self.rt_fees,
            exit_reason=order.reason or ("external" if order.external else "signal"),
            strategy=self.strategy or order.strategy,
        )
        self.opened_at = None
        self.entry_key = ""
        self.rt_fees = ZERO
        return trade


POSITION_FIELDS = (
    "symbol",
    "qty",
    "cost",
    "realized_pnl",
    "fees",
    "opened_at",
    "entry_key",
    "strategy",
    "rt_entry_qty",
    "rt_entry_notional",
    "rt_exit_qty",
    "rt_exit_notional",
    "rt_realized",
    "rt_fees",
)
