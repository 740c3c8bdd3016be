"""The legs of Alpaca's advanced orders on the simulated exchange: bracket, oco and oto.

An advanced order is a group: a parent and its legs (``SimOrder.parent`` / ``SimOrder.legs``).

* **bracket**: an entry plus a take-profit limit and a stop-loss stop (or stop-limit), both on
  the opposite side, both ``held`` until the entry is *completely* filled. Then the take-profit
  works (``new``) and the stop-loss stays ``held`` but watches its stop; when the stop triggers
  it becomes ``new`` and the take-profit is canceled. When the take-profit fills, the stop-loss
  is canceled; a partial take-profit fill shrinks the stop-loss to what is left.
* **oto**: an entry plus one leg (take-profit or stop-loss), ``held`` until the entry is
  completely filled, then ``new``.
* **oco**: a limit order closing a position (the take-profit) with one stop-loss leg, working
  at once: the leg ``held`` and watching its stop, as in a bracket.

Whatever ends one order of a group without filling it (a cancel, an expiry) cancels the rest of
the group that is still open. Legs carry the group's ``order_class``, broker-made ids and
``client_order_id``s, and their own trade updates. ``SimBroker`` applies this; the functions
here build and walk the groups.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from mqd_cli.brokers.sim.orders import STOP_LOSS, TAKE_PROFIT, SimOrder
from mqd_cli.model import OrderClass, OrderIntent, OrderStatus, OrderType

__all__ = ["follow_partial_fill", "group_of", "new_legs", "relink", "waits_for_parent"]


def new_legs(
    parent: SimOrder,
    intent: OrderIntent,
    now: datetime,
    *,
    new_id: Callable[[], str],
    next_seq: Callable[[], int],
) -> list[SimOrder]:
    """The held legs of an admitted advanced order, linked to ``parent``."""
    oco = intent.order_class is OrderClass.OCO
    side = parent.side if oco else parent.side.opposite
    closing = parent.position_intent if oco else f"{side.value}_to_close"
    legs = []
    if intent.take_profit_limit_price is not None and not oco:
        legs.append(
            _leg(parent, TAKE_PROFIT, OrderType.LIMIT, intent.take_profit_limit_price, None, now)
        )
    if intent.stop_loss_stop_price is not None:
        limit = intent.stop_loss_limit_price
        kind = OrderType.STOP if limit is None else OrderType.STOP_LIMIT
        legs.append(_leg(parent, STOP_LOSS, kind, limit, intent.stop_loss_stop_price, now))
    for leg in legs:
        leg.seq = next_seq()
        leg.id = new_id()
        leg.client_order_id = new_id()
        leg.side = side
        leg.position_intent = closing
    return legs


def _leg(
    parent: SimOrder,
    role: str,
    kind: OrderType,
    limit: Decimal | None,
    stop: Decimal | None,
    now: datetime,
) -> SimOrder:
    return SimOrder(
        seq=0,
        id="",
        client_order_id="",
        asset=parent.asset,
        side=parent.side,
        type=kind,
        tif=parent.tif,
        qty=parent.qty,
        notional=None,
        limit_price=limit,
        stop_price=stop,
        trail_price=None,
        trail_percent=None,
        extended_hours=False,
        status=OrderStatus.HELD,
        created_at=now,
        updated_at=now,
        position_intent="",
        target_qty=parent.qty,
        order_class=parent.order_class,
        role=role,
        parent=parent,
    )


def group_of(o: SimOrder) -> list[SimOrder]:
    """Every order of ``o``'s group, parent first (just ``o`` for a simple order)."""
    root = o.parent or o
    return [root, *root.legs]


def waits_for_parent(o: SimOrder) -> bool:
    """A leg that works only once its parent is completely filled (bracket and oto legs)."""
    return o.parent is not None and o.order_class in (OrderClass.BRACKET, OrderClass.OTO)


def follow_partial_fill(o: SimOrder) -> None:
    """After a partial fill of ``o``, its one-cancels-other siblings close only what is left
    (Alpaca: "if the take-profit order is partially filled, the stop-loss order will be
    adjusted to the remaining quantity")."""
    left = o.remaining
    if left is None:
        return
    for s in o.siblings:
        if s.status.is_open and s.filled_qty == 0:
            s.qty = s.target_qty = left


def relink(old: SimOrder, new: SimOrder) -> None:
    """``new`` replaced ``old``: it takes ``old``'s place in the group."""
    if old.parent is not None:
        siblings = old.parent.legs
        siblings[siblings.index(old)] = new
    for leg in new.legs:
        leg.parent = new
