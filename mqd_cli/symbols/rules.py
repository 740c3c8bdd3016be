"""Alpaca's order rules per asset: every reason an order would be refused, with a fix.

Sub-penny prices are refused (0.01 tick at or above $1, 0.0001 below); fractional and notional
orders need a fractionable asset, ``day`` time in force, market (or limit for qty) orders, at
least $1, and cannot open a short; crypto uses the asset's ``min_order_size`` /
``min_trade_increment`` / ``price_increment`` and gtc/ioc only; extended hours need a limit +
day order (see the README, "Symbol properties"). An asset of a class mqd does not trade
(``crypto_perp``, ``us_option``, a class the model does not know) gets one problem,
``UNSUPPORTED_ASSET_CLASS`` naming the class as the broker wrote it, and no other check: its rules
are unknown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from mqd_cli.model import AssetClass, AssetStatus, OrderIntent, OrderType, Side, TimeInForce
from mqd_cli.symbols.properties import (
    FRACTIONAL_QTY_INCREMENT,
    NOTIONAL_INCREMENT,
    US_EQUITY_TICKS,
    SymbolProperties,
    plain,
    round_price,
    round_to,
)

MIN_NOTIONAL = Decimal("1")  # fractional and notional equity orders: "as little as $1"
CRYPTO_TIFS = frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK})
CRYPTO_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT})
FRACTIONAL_EH_ATTRIBUTE = "fractional_eh_enabled"
_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True)
class Problem:
    """Why an order would be refused, how to fix it and (when one exists) the fixed order."""

    code: str
    message: str
    fix: str
    corrected: OrderIntent | None = None


def _fix(intent: OrderIntent, **changes: Any) -> OrderIntent:
    return dataclasses.replace(intent, **changes)


# -- validation -----------------------------------------------------------------------------------


def class_problem(props: SymbolProperties) -> Problem | None:
    """``UNSUPPORTED_ASSET_CLASS`` when mqd does not trade the asset's class, else None."""
    if props.supported:
        return None
    return Problem(
        "UNSUPPORTED_ASSET_CLASS",
        f"{props.symbol} is a {props.class_text} asset; mqd trades us_equity and crypto only",
        "remove it from the universe; its order rules are unknown to mqd",
    )


def check_intent(
    props: SymbolProperties,
    intent: OrderIntent,
    *,
    price: Decimal | None = None,
    position_qty: Decimal = _ZERO,
) -> list[Problem]:
    """Every reason Alpaca would refuse ``intent`` for this asset (empty: it is valid).

    ``price`` is a reference price (last trade) for the notional and minimum-size checks of
    market and notional orders; ``position_qty`` is the signed current position, so a sell
    beyond it is recognised as opening a short.
    """
    unsupported = class_problem(props)
    if unsupported is not None:
        return [unsupported]
    problems: list[Problem] = []
    add = problems.append
    sym = intent.symbol
    if props.status is not AssetStatus.ACTIVE:
        add(
            Problem(
                "INACTIVE",
                f"{sym} is {props.status_text}, not active",
                "remove it from the universe or run `mqd symbols sync` if it was relisted",
            )
        )
    if not props.tradable:
        add(
            Problem(
                "NOT_TRADABLE",
                f"{sym} is not tradable at the broker",
                "remove it from the universe",
            )
        )
    side, typ, tif = intent.side, intent.type, intent.time_in_force
    if side is Side.UNKNOWN:
        add(Problem("BAD_SIDE", f"{sym}: side must be buy or sell", "set side to buy or sell"))
    qty, notional = intent.qty, intent.notional
    if qty is not None and notional is not None:
        add(
            Problem(
                "QTY_AND_NOTIONAL",
                f"{sym}: both qty ({qty}) and notional ({notional})",
                f"send only one: qty={qty}",
                _fix(intent, notional=None),
            )
        )
        notional = None
    elif qty is None and notional is None:
        add(Problem("NO_QTY", f"{sym}: neither qty nor notional", "set qty or notional"))
    if (qty is not None and qty <= 0) or (notional is not None and notional <= 0):
        add(
            Problem(
                "BAD_QTY",
                f"{sym}: the order size must be positive",
                "use a positive qty or notional",
            )
        )
        qty = notional = None
    crypto = props.asset_class is AssetClass.CRYPTO

    # -- type and prices
    if typ is OrderType.UNKNOWN or (crypto and typ not in CRYPTO_TYPES):
        allowed = (
            "market, limit, stop_limit"
            if crypto
            else "market, limit, stop, stop_limit, trailing_stop"
        )
        add(
            Problem(
                "UNSUPPORTED_TYPE",
                f"{sym}: order type {typ.value} is not accepted",
                f"use one of {allowed}",
            )
        )
    if typ in (OrderType.LIMIT, OrderType.STOP_LIMIT) and intent.limit_price is None:
        add(
            Problem(
                "MISSING_LIMIT_PRICE",
                f"{sym}: a {typ.value} order needs limit_price",
                "set limit_price",
            )
        )
    if typ in (OrderType.STOP, OrderType.STOP_LIMIT) and intent.stop_price is None:
        add(
            Problem(
                "MISSING_STOP_PRICE",
                f"{sym}: a {typ.value} order needs stop_price",
                "set stop_price",
            )
        )
    if typ is OrderType.TRAILING_STOP and (intent.trail_price is None) == (
        intent.trail_percent is None
    ):
        add(
            Problem(
                "MISSING_TRAIL",
                f"{sym}: a trailing_stop needs one of trail_price and trail_percent",
                "set exactly one of trail_price or trail_percent",
            )
        )
    for name in ("limit_price", "stop_price"):
        p = intent.limit_price if name == "limit_price" else intent.stop_price
        if p is None:
            continue
        if p <= 0:
            add(
                Problem(
                    "BAD_PRICE", f"{sym}: {name} {p} must be positive", f"set a positive {name}"
                )
            )
            continue
        tick = props.tick(p)
        if p % tick and side is not Side.UNKNOWN:
            after, up = round_price(p, tick, side, name)
            rule = (
                f"the asset's price_increment {plain(tick)}"
                if props.price_increment
                else f"the {tick} tick (sub-penny rule: {_tick_rule_text()})"
            )
            add(
                Problem(
                    "PRICE_INCREMENT",
                    f"{sym}: {name} {p} is not a multiple of {rule}",
                    f"use {name} {after} (a {side.value} rounds {'up' if up else 'down'},"
                    " never more aggressive)",
                    _fix(intent, **{name: after}),
                )
            )

    # -- sizes: crypto increments, or the fractional equity rules
    if crypto:
        if tif not in CRYPTO_TIFS:
            add(
                Problem(
                    "CRYPTO_TIF",
                    f"{sym}: crypto orders take gtc or ioc, not {tif.value}",
                    "use time_in_force gtc",
                    _fix(intent, time_in_force=TimeInForce.GTC),
                )
            )
        if qty is not None:
            if props.min_order_size and qty < props.min_order_size:
                m = props.min_order_size
                add(
                    Problem(
                        "BELOW_MIN_QTY",
                        f"{sym}: qty {qty} is below the minimum order size {plain(m)}",
                        f"use qty {plain(m)} or more",
                        _fix(intent, qty=m),
                    )
                )
            inc = props.qty_increment
            if qty % inc:
                after = round_to(qty, inc, up=False)
                add(
                    Problem(
                        "QTY_INCREMENT",
                        f"{sym}: qty {qty} is not a multiple of {plain(inc)}",
                        f"use qty {after}",
                        _fix(intent, qty=after) if after else None,
                    )
                )
        elif notional is not None and price and props.min_order_size:
            m = props.min_order_size
            if notional / price < m:
                need = round_to(m * price, NOTIONAL_INCREMENT, up=True)
                add(
                    Problem(
                        "BELOW_MIN_QTY",
                        f"{sym}: notional {notional} buys less than the "
                        f"minimum order size {plain(m)} at {price}",
                        f"use notional {need} or more",
                        _fix(intent, notional=need),
                    )
                )
        fractional = False
    else:
        fractional = notional is not None or (qty is not None and qty % _ONE != 0)
        if fractional:
            _check_fractional(props, intent, qty, notional, price, add)
        if intent.extended_hours:
            if not (typ is OrderType.LIMIT and tif is TimeInForce.DAY):
                fixed = (
                    _fix(intent, time_in_force=TimeInForce.DAY)
                    if typ is OrderType.LIMIT
                    else _fix(intent, extended_hours=False)
                )
                add(
                    Problem(
                        "EXTENDED_HOURS_TYPE",
                        f"{sym}: extended-hours orders must be limit "
                        f"day orders, not {typ.value} {tif.value}",
                        "use a limit order with time_in_force day, or extended_hours false",
                        fixed,
                    )
                )
            elif fractional and FRACTIONAL_EH_ATTRIBUTE not in props.attributes:
                add(
                    Problem(
                        "FRACTIONAL_EXTENDED_HOURS",
                        f"{sym}: fractional orders are not "
                        "enabled in extended hours for this asset",
                        "trade whole shares in extended hours, or trade in regular hours",
                        _fix(intent, extended_hours=False),
                    )
                )

    # -- shorts
    if side is Side.SELL and (qty is not None or notional is not None):
        held = position_qty if position_qty > 0 else _ZERO
        short_qty = None if qty is None else qty - held
        opening = held <= 0 if short_qty is None else short_qty > 0
        if opening:
            closing = _fix(intent, qty=held, notional=None) if held > 0 else None
            keep = f"sell at most the {held} held" if held > 0 else "do not sell short"
            if not props.shortable:
                add(
                    Problem(
                        "NOT_SHORTABLE",
                        f"{sym}: this sell opens a short and {sym} is not shortable",
                        keep,
                        closing,
                    )
                )
            elif not props.easy_to_borrow:
                add(
                    Problem(
                        "HARD_TO_BORROW",
                        f"{sym}: this sell opens a short and {sym} is hard to borrow",
                        keep,
                        closing,
                    )
                )
            elif short_qty is None or short_qty % _ONE:
                whole = (
                    None if short_qty is None else held + short_qty.to_integral_value(ROUND_FLOOR)
                )
                add(
                    Problem(
                        "FRACTIONAL_SHORT",
                        f"{sym}: fractional short sales are not supported",
                        f"short whole shares: qty {whole}" if whole else keep,
                        _fix(intent, qty=whole, notional=None) if whole else closing,
                    )
                )
    return problems


def _tick_rule_text() -> str:
    return ", ".join(
        f"{plain(t)} at or above ${p:.2f}" if p else f"{plain(t)} below" for p, t in US_EQUITY_TICKS
    )


def _check_fractional(
    props: SymbolProperties,
    intent: OrderIntent,
    qty: Decimal | None,
    notional: Decimal | None,
    price: Decimal | None,
    add: Callable[[Problem], None],
) -> None:
    sym, typ, tif = intent.symbol, intent.type, intent.time_in_force
    what = f"notional {notional}" if notional is not None else f"qty {qty}"
    if not props.fractionable:
        if qty is not None:
            whole = qty.to_integral_value(ROUND_FLOOR)
        elif price and notional is not None:  # the caller passes a qty or a notional
            whole = (notional / price).to_integral_value(ROUND_FLOOR)
        else:
            whole = None
        fixed = _fix(intent, qty=whole, notional=None) if whole else None
        add(
            Problem(
                "NOT_FRACTIONABLE",
                f"{sym} is not fractionable: {what} is a fractional order",
                f"use whole shares: qty {whole}" if whole else "use whole shares",
                fixed,
            )
        )
    elif qty is not None and qty % FRACTIONAL_QTY_INCREMENT:
        after = round_to(qty, FRACTIONAL_QTY_INCREMENT, up=False)
        add(
            Problem(
                "QTY_INCREMENT",
                f"{sym}: qty {qty} has more than 9 decimals",
                f"use qty {after}",
                _fix(intent, qty=after) if after else None,
            )
        )
    if tif is not TimeInForce.DAY:
        if qty is not None and qty >= 1:
            whole = qty.to_integral_value(ROUND_FLOOR)
            hint, fixed = (
                f"use time_in_force day, or whole shares: qty {whole}",
                _fix(intent, qty=whole),
            )
        else:
            hint, fixed = "use time_in_force day", _fix(intent, time_in_force=TimeInForce.DAY)
        add(
            Problem(
                "FRACTIONAL_TIF",
                f"{sym}: fractional orders must be day orders, not {tif.value}",
                hint,
                fixed,
            )
        )
    if notional is not None and typ is not OrderType.MARKET:
        add(
            Problem(
                "FRACTIONAL_TYPE",
                f"{sym}: notional orders must be market orders, not {typ.value}",
                "use a market order, or a qty",
                _fix(intent, type=OrderType.MARKET, limit_price=None, stop_price=None),
            )
        )
    elif typ is not OrderType.MARKET and typ is not OrderType.LIMIT:
        add(
            Problem(
                "FRACTIONAL_TYPE",
                f"{sym}: fractional orders must be market or limit orders, not {typ.value}",
                "use a market or limit order, or whole shares",
            )
        )
    if notional is not None:
        if notional < MIN_NOTIONAL:
            add(
                Problem(
                    "BELOW_MIN_NOTIONAL",
                    f"{sym}: notional {notional} is below the ${MIN_NOTIONAL} minimum",
                    f"use notional {MIN_NOTIONAL:.2f} or more",
                    _fix(intent, notional=Decimal("1.00")),
                )
            )
    else:
        ref = intent.limit_price or price
        if ref and qty is not None and qty * ref < MIN_NOTIONAL:
            need = round_to(MIN_NOTIONAL / ref, FRACTIONAL_QTY_INCREMENT, up=True)
            add(
                Problem(
                    "BELOW_MIN_NOTIONAL",
                    f"{sym}: qty {qty} at {ref} is worth less than ${MIN_NOTIONAL}",
                    f"use qty {need} or more",
                    _fix(intent, qty=need),
                )
            )
