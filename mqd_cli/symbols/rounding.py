"""Side-aware rounding of an order to its asset's tick and size increments.

Prices move the less aggressive way (a buy limit down, a sell limit up); sizes round down. A size
that rounds to zero raises ``RoundingError``: never a silent zero order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mqd_cli.errors import MqdError
from mqd_cli.model import OrderIntent, Side
from mqd_cli.symbols.properties import NOTIONAL_INCREMENT, SymbolProperties, round_price, round_to
from mqd_cli.symbols.rules import MIN_NOTIONAL, Problem

_ONE = Decimal(1)


@dataclass(frozen=True)
class Adjustment:
    """One value rounding changed."""

    field: str
    before: Decimal
    after: Decimal
    reason: str


class RoundingError(MqdError):
    """A value rounded to zero: the order must not be sent (never a silent zero order)."""

    def __init__(self, problem: Problem, adjustments: list[Adjustment] | None = None):
        super().__init__(problem.message, problem.fix)
        self.problem = problem
        self.adjustments = list(adjustments or ())


def round_intent(
    props: SymbolProperties, intent: OrderIntent
) -> tuple[OrderIntent, list[Adjustment]]:
    """Round prices to the tick and sizes to the increment, never more aggressively.

    Raises ``RoundingError`` when a size rounds to zero.
    """
    changes: dict[str, Any] = {}
    adjustments: list[Adjustment] = []
    side = intent.side
    if side is not Side.UNKNOWN:
        for name in ("limit_price", "stop_price"):
            price = getattr(intent, name)
            if price is None or price <= 0:
                continue
            tick = props.tick(price)
            if price % tick:
                after, up = round_price(price, tick, side, name)
                changes[name] = after
                kind = "limit" if name == "limit_price" else "stop"
                adjustments.append(
                    Adjustment(
                        name,
                        price,
                        after,
                        f"{tick} tick; a {side.value} {kind} rounds {'up' if up else 'down'}",
                    )
                )
    qty = intent.qty
    if qty is not None and qty > 0:
        inc = props.qty_increment
        if qty % inc:
            after = round_to(qty, inc, up=False)
            unit = "whole shares (not fractionable)" if inc == _ONE else f"the {inc} increment"
            adj = Adjustment("qty", qty, after, f"rounded down to {unit}")
            adjustments.append(adj)
            if not after:
                raise RoundingError(
                    Problem(
                        "ZERO_AFTER_ROUNDING",
                        f"{intent.symbol}: qty {qty} rounds down to 0 at {unit}",
                        f"use a qty of at least {props.min_qty}",
                    ),
                    adjustments,
                )
            changes["qty"] = after
    notional = intent.notional
    if notional is not None and notional > 0 and notional % NOTIONAL_INCREMENT:
        after = round_to(notional, NOTIONAL_INCREMENT, up=False)
        adjustments.append(Adjustment("notional", notional, after, "rounded down to cents"))
        if not after:
            raise RoundingError(
                Problem(
                    "ZERO_AFTER_ROUNDING",
                    f"{intent.symbol}: notional {notional} rounds down to $0.00",
                    f"use a notional of at least {MIN_NOTIONAL}",
                ),
                adjustments,
            )
        changes["notional"] = after
    if not changes:
        return intent, adjustments
    return dataclasses.replace(intent, **changes), adjustments
