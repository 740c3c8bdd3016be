"""Order admission on the simulated exchange: which orders it accepts, and how it refuses.

Every refusal carries Alpaca's HTTP status, 8-digit code, message and body (see the README,
"The simulated exchange", for the table and which texts are inferred rather than quoted):
422 40010001 for malformed orders, 422 42210000 for orders the market cannot take,
403 40310000 for insufficient buying power or qty, 404 40410000 for unknown orders, assets and
positions. The checks run in Alpaca's order, so an order with several faults gets the same
error it would get there.

Buying power counts what working orders that open or add to a position already hold; sells
must be covered by the long position minus what other sells hold, or be an allowed short
(whole shares of an easy-to-borrow asset on a margin account, never long-to-short at once).

Advanced orders (``_check_order_class``): bracket, oco and oto are equity orders of whole
shares, ``day`` or ``gtc``, never extended hours. A bracket opens a position from flat and
needs both legs, an oto one leg, an oco is a limit order closing a position with both. The legs
must sit on the right side of the base price (the entry's limit or stop, else the last trade)
by a cent, and the take-profit beyond the stop-loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, NamedTuple, TypeVar, overload

from mqd_cli.brokers.errors import (
    BrokerCallError,
    DuplicateClientOrderId,
    InsufficientFunds,
    NotFound,
    OrderRejected,
)
from mqd_cli.brokers.sim.account import SimAccount
from mqd_cli.brokers.sim.orders import (
    LIMIT_TYPES,
    NANO,
    STOP_TYPES,
    ZERO,
    SimOrder,
    held_for_sells,
    is_whole,
)
from mqd_cli.model import (
    AssetClass,
    AssetInfo,
    AssetStatus,
    OrderClass,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from mqd_cli.symbols.properties import equity_tick
from mqd_cli.wire.format import error_body, num

__all__ = [
    "Replacement",
    "admit_new",
    "admit_replacement",
    "already_final",
    "invalid",
    "not_found",
    "reject",
    "unprocessable",
]

E = TypeVar("E", bound=BrokerCallError)


# -- Alpaca's error bodies ------------------------------------------------------------------------


@overload
def reject(status: int, code: int, message: str, **extra: Any) -> OrderRejected: ...
@overload
def reject(status: int, code: int, message: str, cls: type[E], **extra: Any) -> E: ...
def reject(
    status: int,
    code: int,
    message: str,
    cls: type[BrokerCallError] = OrderRejected,
    **extra: Any,
) -> BrokerCallError:
    return cls(message, status=status, code=code, body=error_body(code, message, **extra))


def invalid(message: str) -> OrderRejected:
    return reject(422, 40010001, message)


def unprocessable(message: str) -> OrderRejected:
    return reject(422, 42210000, message)


def not_found(message: str) -> NotFound:
    return reject(404, 40410000, message, NotFound)


def already_final(o: SimOrder) -> OrderRejected:
    """422 for cancelling or replacing an order that can no longer change."""
    return unprocessable(f'order is already in "{o.status.value}" state')


def _sub_penny(name: str, price: Decimal) -> OrderRejected:
    return unprocessable(
        f"invalid {name} {num(price)}. sub-penny increment does not fulfill minimum pricing "
        "criteria"
    )


def _insufficient_buying_power(available: Decimal, cost: Decimal) -> InsufficientFunds:
    return reject(
        403,
        40310000,
        "insufficient buying power",
        InsufficientFunds,
        buying_power=num(max(ZERO, available)),
        cost_basis=num(cost),
    )


def _check_client_order_id_length(cid: str | None) -> None:
    if cid is not None and len(cid) > 128:
        raise invalid("client_order_id must be no more than 128 characters")


def _check_client_order_id_unused(cid: str | None, taken: Mapping[str, SimOrder | None]) -> None:
    if cid is not None and cid in taken:
        raise reject(422, 40010001, DuplicateClientOrderId.MESSAGE, DuplicateClientOrderId)


# -- new orders -----------------------------------------------------------------------------------


def admit_new(
    intent: OrderIntent,
    now: datetime,
    *,
    find_asset: Callable[[str], AssetInfo | None],
    account: SimAccount,
    working: Mapping[str, SimOrder],
    client_ids: Mapping[str, SimOrder | None],
) -> tuple[AssetInfo, str]:
    """Raise Alpaca's rejection unless ``intent`` may be placed now.

    Returns the asset and the position intent (``buy_to_open``, ``sell_to_close``, ...).
    """
    cid = intent.client_order_id
    _check_client_order_id_length(cid)
    asset = find_asset(intent.symbol)
    if asset is None:
        raise invalid(f'could not find asset "{intent.symbol}"')
    if asset.status is not AssetStatus.ACTIVE:
        raise unprocessable(f"asset {asset.symbol} is not active")
    if not asset.tradable:
        raise unprocessable(f"asset {asset.symbol} is not tradable")
    if intent.side not in (Side.BUY, Side.SELL):
        raise invalid("side must be buy or sell")
    if intent.type is OrderType.UNKNOWN:
        raise invalid("type must be market, limit, stop, stop_limit or trailing_stop")
    if intent.time_in_force is TimeInForce.UNKNOWN:
        raise invalid("time_in_force must be day, gtc, opg, cls, ioc or fok")
    qty, notional = intent.qty, intent.notional
    if qty is None and notional is None:
        raise invalid("qty is required")
    if qty is not None and notional is not None:
        raise invalid("only one of qty or notional may be given")
    if qty is not None and qty <= 0:
        raise invalid("qty must be > 0")
    if notional is not None and notional <= 0:
        raise invalid("notional must be > 0")
    limit_price = intent.limit_price
    if intent.order_class is OrderClass.OCO and limit_price is None:
        limit_price = intent.take_profit_limit_price  # an oco order's limit is its take-profit
        if limit_price is None:
            raise invalid("oco orders require take_profit.limit_price")
    _check_prices(
        intent.type,
        limit_price,
        intent.stop_price,
        intent.trail_price,
        intent.trail_percent,
        asset,
    )
    crypto = asset.asset_class is AssetClass.CRYPTO
    tif = intent.time_in_force
    if intent.extended_hours and (intent.type is not OrderType.LIMIT or tif is not TimeInForce.DAY):
        raise unprocessable("extended hours order must be DAY limit orders")
    if crypto:
        if tif not in (TimeInForce.GTC, TimeInForce.IOC):
            raise unprocessable("invalid crypto time_in_force")
        minimum = asset.min_order_size
        if qty is not None and minimum is not None and qty < minimum:
            raise invalid(f"qty must be >= {num(minimum)}")
        increment = asset.min_trade_increment
        if qty is not None and increment and qty % increment:
            raise invalid(f"qty must be a multiple of {num(increment)}")
    else:
        fractional = notional is not None or (qty is not None and not is_whole(qty))
        if notional is not None and not asset.fractionable:
            raise invalid("requested asset is not fractionable")
        if qty is not None and not is_whole(qty) and not asset.fractionable:
            raise invalid("qty must be integer")
        if fractional and tif is not TimeInForce.DAY:
            raise invalid("fractional orders must be DAY orders")
        if notional is not None and intent.type is not OrderType.MARKET:
            raise invalid("notional orders must be market orders")
        if fractional and intent.order_class is not OrderClass.SIMPLE:
            raise unprocessable("fractional orders must be simple orders")
    last = account.price_at(asset.symbol, now)
    pos_qty = account.position_qty(asset.symbol)
    if intent.order_class is not OrderClass.SIMPLE:
        _check_order_class(intent, asset, last, pos_qty)
    _check_client_order_id_unused(cid, client_ids)
    if qty is not None:
        est_qty = qty
    elif notional is not None:
        est_qty = (notional / last).quantize(NANO, ROUND_DOWN)
    else:  # unreachable: refused above
        raise invalid("qty is required")
    opening = est_qty
    if intent.side is Side.SELL:
        opening = _check_sell(
            asset,
            est_qty,
            pos_qty,
            working,
            whole=qty is not None and is_whole(qty) and notional is None,
            multiplier=account.settings.multiplier,
        )
    elif pos_qty < 0:
        opening = max(ZERO, est_qty + pos_qty)
    if opening > 0:
        price = _estimate(intent.type, intent.side, limit_price, intent.stop_price, last)
        cost = notional if notional is not None and intent.side is Side.BUY else (opening * price)
        if crypto or account.settings.multiplier <= 1:
            available = account.cash - _reserved(account, working, now, crypto_only=crypto)
        else:
            available = account.buying_power(now) - _reserved(account, working, now)
        if cost > available:
            raise _insufficient_buying_power(available, cost)
    if intent.side is Side.BUY:
        return asset, "buy_to_close" if pos_qty < 0 else "buy_to_open"
    return asset, "sell_to_close" if pos_qty > 0 else "sell_to_open"


# -- replacements ---------------------------------------------------------------------------------


class Replacement(NamedTuple):
    """What the order replacing ``old`` carries: the old terms with the changes applied."""

    qty: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    tif: TimeInForce


def admit_replacement(
    old: SimOrder,
    now: datetime,
    *,
    qty: Decimal | None,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    trail: Decimal | None,
    time_in_force: TimeInForce | None,
    client_order_id: str | None,
    account: SimAccount,
    working: Mapping[str, SimOrder],
    client_ids: Mapping[str, SimOrder | None],
) -> Replacement:
    """Raise Alpaca's rejection unless ``old`` may be replaced with these changes.

    The new qty is ``qty`` when given, else what the old order had left; ``trail`` changes
    whichever of trail_price / trail_percent a trailing stop uses.
    """
    if not (old.is_working or old.status is OrderStatus.HELD):  # a held leg may be replaced
        raise already_final(old)
    grouped = old.order_class is not OrderClass.SIMPLE
    if grouped and qty is not None and qty != old.qty:
        raise invalid("qty of an order with legs or of a leg cannot be replaced")
    for name, value, carries in (
        ("limit_price", limit_price, LIMIT_TYPES),
        ("stop_price", stop_price, STOP_TYPES),
    ):
        if value is not None and old.type not in carries and old.type is not _TRAILING:
            raise invalid(f"{old.type.value} orders must not have {name}")
    fractional_ok = old.asset.asset_class is AssetClass.CRYPTO
    if old.notional is not None or (
        old.qty is not None and not is_whole(old.qty) and not fractional_ok
    ):
        raise invalid("fractional and notional orders cannot be replaced")
    if qty is not None and qty <= 0:
        raise invalid("qty must be > 0")
    if qty is not None and not is_whole(qty) and not fractional_ok:
        raise invalid("qty must be integer")
    _check_client_order_id_length(client_order_id)
    _check_client_order_id_unused(client_order_id, client_ids)
    new_qty = qty if qty is not None else old.remaining
    limit = limit_price if limit_price is not None else old.limit_price
    stop = stop_price if stop_price is not None else old.stop_price
    trail_price, trail_pct = old.trail_price, old.trail_percent
    if trail is not None and old.type is OrderType.TRAILING_STOP:
        if old.trail_price is not None:
            trail_price = trail
        else:
            trail_pct = trail
    if old.type is OrderType.TRAILING_STOP:
        stop = None
    _check_prices(old.type, limit, stop, trail_price, trail_pct, old.asset)
    tif = time_in_force or old.tif
    if new_qty is None or old.parent is not None:
        pass  # no qty (refused above), or a leg: it closes what its group opened
    elif old.side is Side.SELL:
        _check_sell(
            old.asset,
            new_qty,
            account.position_qty(old.symbol),
            working,
            whole=True,
            multiplier=account.settings.multiplier,
            exclude=old.id,
        )
    else:
        last = account.price_at(old.symbol, now)
        price = _estimate(old.type, old.side, limit, stop, last)
        available = account.buying_power(now) - _reserved(account, working, now, exclude=old.id)
        cost = new_qty * price
        if cost > available:
            raise _insufficient_buying_power(available, cost)
    return Replacement(new_qty, limit, stop, trail_price, trail_pct, tif)


# -- advanced orders ------------------------------------------------------------------------------

_TRAILING = OrderType.TRAILING_STOP
_CENT = Decimal("0.01")


def _check_order_class(
    intent: OrderIntent, asset: AssetInfo, last: Decimal, pos_qty: Decimal
) -> None:
    """Alpaca's rules for bracket, oco and oto orders (the messages are Alpaca's where known:
    see the README's table)."""
    cls = intent.order_class
    name = cls.value
    if cls not in (OrderClass.BRACKET, OrderClass.OCO, OrderClass.OTO):
        raise unprocessable(f"order_class {name} is not supported for {asset.symbol}")
    if asset.asset_class is AssetClass.CRYPTO:
        raise unprocessable("crypto orders must be simple orders")
    tp, sl = intent.take_profit_limit_price, intent.stop_loss_stop_price
    sl_limit = intent.stop_loss_limit_price
    if cls is OrderClass.OTO:
        if tp is None and sl is None:
            raise invalid("oto orders require either take_profit or stop_loss")
        if tp is not None and sl is not None:
            raise invalid("oto orders take either take_profit or stop_loss, not both")
    else:
        if tp is None:
            raise invalid(f"{name} orders require take_profit.limit_price")
        if sl is None:
            raise invalid(f"{name} orders require stop_loss.stop_price")
    if sl_limit is not None and sl is None:
        raise invalid("stop_loss.limit_price requires stop_loss.stop_price")
    for field_name, value in (
        ("take_profit.limit_price", tp),
        ("stop_loss.stop_price", sl),
        ("stop_loss.limit_price", sl_limit),
    ):
        if value is None:
            continue
        if value <= 0:
            raise invalid(f"{field_name} must be > 0")
        if value != value.quantize(equity_tick(value), ROUND_DOWN):
            raise _sub_penny(field_name, value)
    if intent.time_in_force not in (TimeInForce.DAY, TimeInForce.GTC):
        raise unprocessable(f"{name} orders must be DAY or GTC orders")
    if intent.extended_hours:
        raise unprocessable("extended hours orders must be simple orders")
    if intent.type is _TRAILING:
        raise unprocessable(f"{name} orders cannot be trailing_stop orders")
    buy = intent.side is Side.BUY
    if cls is OrderClass.OCO:
        if intent.type is not OrderType.LIMIT:
            raise unprocessable("oco orders must be limit orders")
        if intent.limit_price is not None and intent.limit_price != tp:
            raise invalid("an oco order's limit_price must equal take_profit.limit_price")
        if (pos_qty > 0 and buy) or (pos_qty < 0 and not buy) or pos_qty == 0:
            raise unprocessable("oco orders must be exit orders")
        base = last  # both exits work at once: against the market
    else:
        if cls is OrderClass.BRACKET and pos_qty != 0:
            raise unprocessable("bracket orders must be entry orders")
        if intent.type in LIMIT_TYPES and intent.limit_price is not None:
            base = intent.limit_price
        elif intent.type is OrderType.STOP and intent.stop_price is not None:
            base = intent.stop_price
        else:
            base = last
    # the legs exit: a long's take-profit above the base and its stop below; a short's mirrored
    long = buy if cls is not OrderClass.OCO else not buy
    if tp is not None and sl is not None and ((tp <= sl) if long else (tp >= sl)):
        op = ">" if long else "<"
        raise unprocessable(f"take_profit.limit_price must be {op} stop_loss.stop_price")
    if tp is not None and cls is not OrderClass.OCO:
        bound = base + _CENT if long else base - _CENT
        if (tp < bound) if long else (tp > bound):
            op = ">=" if long else "<="
            sign = "+" if long else "-"
            raise reject(
                422,
                42210000,
                f"take_profit.limit_price must be {op} base_price {sign} 0.01",
                base_price=num(base),
            )
    if sl is not None:
        bound = base - _CENT if long else base + _CENT
        if (sl > bound) if long else (sl < bound):
            op = "<=" if long else ">="
            sign = "-" if long else "+"
            raise reject(
                422,
                42210000,
                f"stop_loss.stop_price must be {op} base_price {sign} 0.01",
                base_price=num(base),
            )


# -- the shared checks ----------------------------------------------------------------------------


def _check_prices(
    type_: OrderType,
    limit: Decimal | None,
    stop: Decimal | None,
    trail: Decimal | None,
    trail_pct: Decimal | None,
    asset: AssetInfo,
) -> None:
    if type_ in LIMIT_TYPES and limit is None:
        raise invalid("limit_price is required")
    if type_ in STOP_TYPES and stop is None:
        raise invalid("stop_price is required")
    if type_ is OrderType.TRAILING_STOP and (trail is None) == (trail_pct is None):
        raise invalid("exactly one of trail_price or trail_percent is required")
    for name, value in (
        ("limit_price", limit),
        ("stop_price", stop),
        ("trail_price", trail),
        ("trail_percent", trail_pct),
    ):
        if value is not None and value <= 0:
            raise invalid(f"{name} must be > 0")
    if asset.asset_class is AssetClass.CRYPTO:
        return
    for name, value in (("limit_price", limit), ("stop_price", stop)):
        if value is not None and value != value.quantize(equity_tick(value), ROUND_DOWN):
            raise _sub_penny(name, value)


def _check_sell(
    asset: AssetInfo,
    qty: Decimal,
    pos_qty: Decimal,
    working: Mapping[str, SimOrder],
    *,
    whole: bool,
    multiplier: int,
    exclude: str | None = None,
) -> Decimal:
    """Raise 403 unless the sell is covered or an allowed short; returns the opening qty."""
    held, related = held_for_sells(working.values(), asset.symbol, exclude)
    available = max(ZERO, pos_qty - held) if pos_qty > 0 else ZERO
    if pos_qty > 0 and qty <= available:
        return ZERO
    can_short = (
        pos_qty <= 0  # never long-to-short in one order
        and asset.shortable
        and asset.easy_to_borrow
        and whole
        and multiplier >= 2
        and asset.asset_class is not AssetClass.CRYPTO
    )
    if not can_short:
        raise reject(
            403,
            40310000,
            f"insufficient qty available for order (requested: {num(qty)}, "
            f"available: {num(available)})",
            InsufficientFunds,
            available=num(available),
            existing_qty=num(pos_qty),
            held_for_orders=num(held),
            related_orders=related,
            symbol=asset.symbol,
        )
    return qty


def _estimate(
    type_: OrderType, side: Side, limit: Decimal | None, stop: Decimal | None, last: Decimal
) -> Decimal:
    """The price an order is expected to fill at, for its buying-power cost."""
    if type_ in LIMIT_TYPES and limit is not None:
        return limit
    if type_ is OrderType.STOP and stop is not None:
        return max(stop, last) if side is Side.BUY else min(stop, last)
    return last


def _reserved(
    account: SimAccount,
    working: Mapping[str, SimOrder],
    now: datetime,
    *,
    exclude: str | None = None,
    crypto_only: bool = False,
) -> Decimal:
    """Buying power held by working orders that open or add to a position."""
    total = ZERO
    for o in working.values():
        if not o.is_working or o.id == exclude:
            continue
        if crypto_only and o.asset.asset_class is not AssetClass.CRYPTO:
            continue
        pos_qty = account.position_qty(o.symbol)
        if o.side is Side.SELL and pos_qty > 0:
            continue  # closing a long
        if o.notional is not None and o.target_qty is None:
            total += o.notional - o.filled_value
            continue
        last = account.price_at(o.symbol, now)
        price = _estimate(o.type, o.side, o.limit_price, o.stop_price, last)
        remaining = o.remaining or ZERO
        if o.side is Side.BUY and pos_qty < 0:
            remaining = max(ZERO, remaining + pos_qty)  # the covering part is free
        total += remaining * price
    return total
