"""The simulated exchange's order records: what it knows about each order, and its report.

``SimOrder`` is the exchange's mutable view of one order (fills so far, trigger state, the
session moments it expires or auctions at, the legs of an advanced order); ``report`` turns it
into the ``OrderReport`` every caller sees. Only ``SimBroker`` and its helper modules
(sim_admission, sim_matching, sim_hours, sim_legs) touch these records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from mqd_cli.model import (
    AssetInfo,
    OrderClass,
    OrderIntent,
    OrderReport,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

__all__ = [
    "LIMIT_TYPES",
    "NANO",
    "STOP_LOSS",
    "TAKE_PROFIT",
    "STOP_TYPES",
    "ZERO",
    "SimOrder",
    "held_for_sells",
    "is_whole",
    "new_order",
    "report",
]

ZERO = Decimal("0")
NANO = Decimal("0.000000001")
WORKING = frozenset({OrderStatus.ACCEPTED, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
LIMIT_TYPES = (OrderType.LIMIT, OrderType.STOP_LIMIT)  # types that carry a limit_price
STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT)  # types that carry a stop_price
TAKE_PROFIT = "take_profit"  # the role of a take-profit leg (and of an oco order itself)
STOP_LOSS = "stop_loss"  # the role of a stop-loss leg


def is_whole(value: Decimal) -> bool:
    return value == value.to_integral_value()


@dataclass
class SimOrder:
    seq: int
    id: str
    client_order_id: str
    asset: AssetInfo
    side: Side
    type: OrderType
    tif: TimeInForce
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    extended_hours: bool
    status: OrderStatus
    created_at: datetime
    position_intent: str
    updated_at: datetime = None  # type: ignore[assignment]
    target_qty: Decimal | None = None  # qty, or notional / first fill price
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    hwm: Decimal | None = None
    triggered: bool = False
    expires_at: datetime | None = None
    auction_at: datetime | None = None  # opg/cls under NYSE hours: the one moment it may fill
    seen_until: datetime | None = None
    bar_fills: dict[datetime, Decimal] = field(default_factory=dict)
    order_class: OrderClass = OrderClass.SIMPLE
    role: str = ""  # TAKE_PROFIT or STOP_LOSS within an advanced order, else ""
    # The group of an advanced order: a leg's parent, a parent's legs (for oco the order itself
    # is the take-profit and its one leg the stop-loss). Not compared or shown: they cycle.
    parent: SimOrder | None = field(default=None, repr=False, compare=False)
    legs: list[SimOrder] = field(default_factory=list, repr=False, compare=False)
    # A held stop-loss leg whose group is live: it stays ``held`` but watches its stop, and
    # becomes ``new`` (cancelling its sibling) when the stop triggers.
    armed: bool = False

    @property
    def symbol(self) -> str:
        return self.asset.symbol

    @property
    def remaining(self) -> Decimal | None:
        return None if self.target_qty is None else self.target_qty - self.filled_qty

    @property
    def is_working(self) -> bool:
        return self.status in WORKING or (self.armed and self.status is OrderStatus.HELD)

    @property
    def siblings(self) -> list[SimOrder]:
        """The other one-cancels-other orders of its group: a bracket's other leg, an oco
        order's leg (or the oco order, for its leg); none for an oto leg or a parent."""
        if self.order_class is OrderClass.OCO:
            group = [self, *self.legs] if self.parent is None else [self.parent, *self.parent.legs]
        elif self.order_class is OrderClass.BRACKET and self.parent is not None:
            group = list(self.parent.legs)
        else:
            return []
        return [o for o in group if o is not self]

    def successor(
        self,
        *,
        seq: int,
        id: str,
        client_order_id: str,
        now: datetime,
        tif: TimeInForce,
        qty: Decimal | None,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        trail_price: Decimal | None,
        trail_percent: Decimal | None,
    ) -> SimOrder:
        """The order that replaces this one: same asset, side, type and group, nothing filled
        yet (the broker relinks the group to it)."""
        return replace(
            self,
            legs=list(self.legs),
            seq=seq,
            id=id,
            client_order_id=client_order_id,
            tif=tif,
            qty=qty,
            target_qty=qty,
            limit_price=limit_price,
            stop_price=stop_price,
            trail_price=trail_price,
            trail_percent=trail_percent,
            status=OrderStatus.NEW,
            created_at=now,
            updated_at=now,
            filled_qty=ZERO,
            filled_value=ZERO,
            filled_at=None,
            canceled_at=None,
            expired_at=None,
            replaced_at=None,
            replaced_by=None,
            replaces=self.id,
            hwm=None,
            triggered=False,
            expires_at=None,
            auction_at=None,
            seen_until=None,
            bar_fills={},
        )


def new_order(
    intent: OrderIntent,
    asset: AssetInfo,
    now: datetime,
    *,
    seq: int,
    id: str,
    client_order_id: str,
    position_intent: str,
) -> SimOrder:
    """The record of an admitted intent (``pending_new``); prices its type does not use drop.

    An oco order is itself the take-profit: its limit is ``take_profit_limit_price`` when the
    intent gives no ``limit_price`` (admission refuses two different ones)."""
    type_ = intent.type
    trailing = type_ is OrderType.TRAILING_STOP
    oco = intent.order_class is OrderClass.OCO
    limit = intent.limit_price
    if oco and limit is None:
        limit = intent.take_profit_limit_price
    return SimOrder(
        seq=seq,
        id=id,
        client_order_id=client_order_id,
        asset=asset,
        side=intent.side,
        type=type_,
        tif=intent.time_in_force,
        qty=intent.qty,
        notional=intent.notional,
        limit_price=limit if type_ in LIMIT_TYPES else None,
        stop_price=intent.stop_price if type_ in STOP_TYPES else None,
        trail_price=intent.trail_price if trailing else None,
        trail_percent=intent.trail_percent if trailing else None,
        extended_hours=intent.extended_hours,
        status=OrderStatus.PENDING_NEW,
        created_at=now,
        updated_at=now,
        position_intent=position_intent,
        target_qty=intent.qty,
        order_class=intent.order_class,
        role=TAKE_PROFIT if oco else "",
    )


def held_for_sells(
    working: Iterable[SimOrder], symbol: str, exclude: str | None = None
) -> tuple[Decimal, list[str]]:
    """The qty that working sell orders of ``symbol`` hold, and their ids. A stop-loss leg
    whose one-cancels-other sibling still works holds nothing more: the two close the same
    shares, and only one of them can fill."""
    held, ids = ZERO, []
    for o in working:
        if o.is_working and o.symbol == symbol and o.side is Side.SELL and o.id != exclude:
            ids.append(o.id)
            if o.role == STOP_LOSS and any(s.is_working for s in o.siblings):
                continue
            held += o.remaining if o.remaining is not None else ZERO
    return held, ids


def report(o: SimOrder, *, nested: bool = True) -> OrderReport:
    """The order as callers see it; with ``nested`` a parent carries its legs (Alpaca's
    ``nested=true``), without it each leg is only an order of its own."""
    avg = None
    if o.filled_qty > 0:
        avg = (o.filled_value / o.filled_qty).quantize(NANO).normalize()
    return OrderReport(
        id=o.id,
        client_order_id=o.client_order_id,
        symbol=o.symbol,
        side=o.side,
        type=o.type,
        time_in_force=o.tif,
        status=o.status,
        qty=o.qty,
        notional=o.notional,
        filled_qty=o.filled_qty,
        filled_avg_price=avg,
        created_at=o.created_at,
        updated_at=o.updated_at,
        submitted_at=o.created_at,
        filled_at=o.filled_at,
        canceled_at=o.canceled_at,
        expired_at=o.expired_at,
        failed_at=o.failed_at,
        replaced_at=o.replaced_at,
        replaced_by=o.replaced_by,
        replaces=o.replaces,
        limit_price=o.limit_price,
        stop_price=o.stop_price,
        trail_price=o.trail_price,
        trail_percent=o.trail_percent,
        hwm=o.hwm if o.type is OrderType.TRAILING_STOP else None,
        extended_hours=o.extended_hours,
        asset_class=o.asset.asset_class,
        asset_id=o.asset.id,
        order_class=o.order_class,
        legs=tuple([report(leg) for leg in o.legs]) if nested and o.legs else (),
        raw={"position_intent": o.position_intent},
    )
