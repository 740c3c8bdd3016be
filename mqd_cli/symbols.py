"""Symbol properties: what an order may look like for each asset, checked before it is sent.

``sync`` copies the broker's asset list (``/v2/assets``) into the store with a diff against the
previous sync. ``SymbolBook`` is the in-memory view the run loop uses on every order:
``prepare(intent)`` rounds prices and sizes side-aware (never more aggressive) and then
``validate``s the result against Alpaca's rules, returning typed problems with a fix hint.

Rules (Alpaca, see docs/symbols.md): sub-penny prices are refused (0.01 tick at or above $1,
0.0001 below); fractional and notional orders need a fractionable asset, ``day`` time in force,
market (or limit for qty) orders, at least $1, and cannot open a short; crypto uses the asset's
``min_order_size`` / ``min_trade_increment`` / ``price_increment`` and gtc/ioc only; extended
hours need a limit + day order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from mqd_cli.errors import MqdError
from mqd_cli.model import (
    AssetClass,
    AssetInfo,
    AssetStatus,
    OrderIntent,
    OrderType,
    Side,
    TimeInForce,
)

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store

# US equity minimum price variation (Reg NMS Rule 612) as data: (prices at or above, tick),
# highest first. The 2024 amendment's $0.005 tier, when it applies, is one more row here.
US_EQUITY_TICKS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal("1.00"), Decimal("0.01")),
    (Decimal("0"), Decimal("0.0001")),
)
FRACTIONAL_QTY_INCREMENT = Decimal("0.000000001")  # Alpaca takes qty with up to 9 decimals
NOTIONAL_INCREMENT = Decimal("0.01")
MIN_NOTIONAL = Decimal("1")  # fractional and notional equity orders: "as little as $1"
CRYPTO_TIFS = frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK})
CRYPTO_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT})
FRACTIONAL_EH_ATTRIBUTE = "fractional_eh_enabled"
_ZERO = Decimal(0)
_ONE = Decimal(1)


def equity_tick(price: Decimal) -> Decimal:
    """The US equity tick for an order priced at ``price`` (the order's own price)."""
    for at_or_above, tick in US_EQUITY_TICKS:
        if price >= at_or_above:
            return tick
    return US_EQUITY_TICKS[-1][1]


def round_to(value: Decimal, step: Decimal, *, up: bool) -> Decimal:
    """``value`` on a multiple of ``step``, rounded up (ceiling) or down (floor)."""
    return (value / step).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR) * step


def plain(value: Decimal | None) -> str:
    """Canonical text of a decimal: no exponent, no trailing zeros (``30``, ``0.0001``)."""
    if value is None:
        return ""
    return format(value.normalize(), "f")


# -- properties -----------------------------------------------------------------------------------


class SymbolProperties(NamedTuple):
    """One asset as stored by the last sync, plus the rules derived from it."""

    symbol: str
    asset_id: str
    asset_class: AssetClass
    exchange: str
    name: str
    status: AssetStatus
    tradable: bool
    marginable: bool
    shortable: bool
    easy_to_borrow: bool
    fractionable: bool
    min_order_size: Decimal | None = None
    min_trade_increment: Decimal | None = None
    price_increment: Decimal | None = None
    maintenance_margin_requirement: Decimal | None = None
    margin_requirement_long: Decimal | None = None
    margin_requirement_short: Decimal | None = None
    attributes: tuple[str, ...] = ()
    changed_at: datetime | None = None
    synced_at: datetime | None = None

    @property
    def is_crypto(self) -> bool:
        return self.asset_class is AssetClass.CRYPTO

    def tick(self, price: Decimal) -> Decimal:
        """Price increment for an order at ``price``: the asset's own, else the equity rule."""
        return self.price_increment or equity_tick(price)

    @property
    def qty_increment(self) -> Decimal:
        if self.is_crypto:
            return self.min_trade_increment or FRACTIONAL_QTY_INCREMENT
        return FRACTIONAL_QTY_INCREMENT if self.fractionable else _ONE

    @property
    def min_qty(self) -> Decimal:
        return self.min_order_size or self.qty_increment

    @classmethod
    def from_asset(cls, a: AssetInfo) -> SymbolProperties:
        return cls(
            a.symbol,
            a.id,
            a.asset_class,
            a.exchange,
            a.name,
            a.status,
            a.tradable,
            a.marginable,
            a.shortable,
            a.easy_to_borrow,
            a.fractionable,
            a.min_order_size,
            a.min_trade_increment,
            a.price_increment,
            a.maintenance_margin_requirement,
            a.margin_requirement_long,
            a.margin_requirement_short,
            tuple(a.attributes),
        )

    def to_doc(self) -> dict[str, Any]:
        """A JSON-friendly view (``show --json``)."""
        doc: dict[str, Any] = {}
        for name, value in zip(self._fields, self, strict=True):
            if isinstance(value, Decimal):
                value = plain(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, AssetClass | AssetStatus):
                value = value.value
            doc[name] = value
        if not self.is_crypto:
            doc["tick_rule"] = [[plain(p), plain(t)] for p, t in US_EQUITY_TICKS]
        doc["qty_increment"] = plain(self.qty_increment)
        return doc


def asset_row(a: AssetInfo, texts: dict[Decimal, str] | None = None) -> tuple:
    """The stored row of an asset, in ``store.symbols.ASSET_FIELDS`` order."""
    memo = {} if texts is None else texts

    def text(value: Decimal | None) -> str | None:
        if value is None:
            return None
        out = memo.get(value)
        if out is None:
            out = memo[value] = plain(value)
        return out

    return (
        a.symbol,
        a.id,
        a.asset_class.value,
        a.exchange,
        _one_line(a.name),
        a.status.value,
        int(a.tradable),
        int(a.marginable),
        int(a.shortable),
        int(a.easy_to_borrow),
        int(a.fractionable),
        text(a.min_order_size),
        text(a.min_trade_increment),
        text(a.price_increment),
        text(a.maintenance_margin_requirement),
        text(a.margin_requirement_long),
        text(a.margin_requirement_short),
        ",".join(sorted(a.attributes)),
    )


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ") if "\t" in text or "\n" in text else text


def _props_from_row(row: Any, decimals: dict[str, Decimal]) -> SymbolProperties:
    def dec(text: str | None) -> Decimal | None:
        if text is None:
            return None
        d = decimals.get(text)
        if d is None:
            d = decimals[text] = Decimal(text)
        return d

    return SymbolProperties(
        row[0],
        row[1],
        AssetClass(row[2]),
        row[3],
        row[4],
        AssetStatus(row[5]),
        bool(row[6]),
        bool(row[7]),
        bool(row[8]),
        bool(row[9]),
        bool(row[10]),
        dec(row[11]),
        dec(row[12]),
        dec(row[13]),
        dec(row[14]),
        dec(row[15]),
        dec(row[16]),
        tuple(row[17].split(",")) if row[17] else (),
        datetime.fromisoformat(row[18]),
        datetime.fromisoformat(row[19]),
    )


# -- problems and adjustments ---------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why an order would be refused, how to fix it and (when one exists) the fixed order."""

    code: str
    message: str
    fix: str
    corrected: OrderIntent | None = None


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


def _fix(intent: OrderIntent, **changes: Any) -> OrderIntent:
    return dataclasses.replace(intent, **changes)


def _price_rounds_up(side: Side, field_name: str) -> bool:
    """Less aggressive direction: buy limit down, sell limit up, buy stop up, sell stop down."""
    if field_name == "limit_price":
        return side is Side.SELL
    return side is Side.BUY


# -- rounding -------------------------------------------------------------------------------------


def round_intent(
    props: SymbolProperties, intent: OrderIntent
) -> tuple[OrderIntent, list[Adjustment]]:
    """Round prices to the tick and sizes to the increment, never more aggressively.

    Raises ``RoundingError`` when a size rounds to zero.
    """
    changes: dict[str, Decimal] = {}
    adjustments: list[Adjustment] = []
    side = intent.side
    if side is not Side.UNKNOWN:
        for name in ("limit_price", "stop_price"):
            price = getattr(intent, name)
            if price is None or price <= 0:
                continue
            tick = props.tick(price)
            if price % tick:
                up = _price_rounds_up(side, name)
                after = round_to(price, tick, up=up)
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


# -- validation -----------------------------------------------------------------------------------


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
    problems: list[Problem] = []
    add = problems.append
    sym = intent.symbol
    if props.status is not AssetStatus.ACTIVE:
        add(
            Problem(
                "INACTIVE",
                f"{sym} is {props.status.value}, not active",
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
            up = _price_rounds_up(side, name)
            after = round_to(p, tick, up=up)
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
        opening = held <= 0 if qty is None else short_qty > 0
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
        elif price:
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


# -- margin ---------------------------------------------------------------------------------------


def margin_requirement(props: SymbolProperties, qty: Decimal, price: Decimal) -> Decimal:
    """Maintenance margin (account currency) of a position: ``qty`` signed, negative = short.

    Uses ``margin_requirement_long``/``_short`` (percent), falling back to the deprecated
    ``maintenance_margin_requirement``; a non-marginable long or a crypto position is 100 %.
    Rounded up to the cent.
    """
    if not qty:
        return Decimal("0.00")
    short = qty < 0
    pct = props.margin_requirement_short if short else props.margin_requirement_long
    if pct is None:
        pct = props.maintenance_margin_requirement
    if pct is None or props.is_crypto or (not short and not props.marginable):
        pct = max(pct or _ZERO, Decimal(100))
    value = abs(qty) * price * pct / Decimal(100)
    return round_to(value, NOTIONAL_INCREMENT, up=True)


# -- the cache ------------------------------------------------------------------------------------


class SymbolBook:
    """In-memory symbol properties over the store; loads the whole table on first use."""

    def __init__(self, store: Store, clock: Clock, *, stale_after: timedelta = timedelta(days=1)):
        self.store = store
        self.clock = clock
        self.stale_after = stale_after
        self._rows: dict[str, Any] | None = None
        self._props: dict[str, SymbolProperties] = {}
        self._decimals: dict[str, Decimal] = {}

    def load(self) -> int:
        """(Re)load the table; returns the number of assets."""
        from mqd_cli.store import symbols as db

        self._rows = {line[: line.index("\t")]: line for line in db.snapshot_lines(self.store)}
        self._props = {}
        return len(self._rows)

    def reload(self) -> None:
        """Forget the cache (after a sync); the next lookup loads it again."""
        self._rows = None
        self._props = {}

    def __len__(self) -> int:
        if self._rows is None:
            self.load()
        return len(self._rows)

    def symbols(self) -> list[str]:
        if self._rows is None:
            self.load()
        return list(self._rows)

    def get(self, symbol: str) -> SymbolProperties | None:
        props = self._props.get(symbol)
        if props is not None:
            return props
        if self._rows is None:
            self.load()
        row = self._rows.get(symbol)
        if row is None:
            alias = _alias(symbol)
            row = self._rows.get(alias) if alias else None
            if row is None:
                return None
        from mqd_cli.store.symbols import unpack

        props = self._props[symbol] = _props_from_row(unpack(row), self._decimals)
        return props

    # -- freshness

    def last_sync(self) -> datetime | None:
        from mqd_cli.store import symbols as db

        run = db.last_sync(self.store)
        return datetime.fromisoformat(run["finished_at"]) if run else None

    def staleness(self) -> timedelta | None:
        last = self.last_sync()
        return None if last is None else self.clock.now() - last

    def is_stale(self) -> bool:
        age = self.staleness()
        return age is None or age > self.stale_after

    # -- orders

    def validate(
        self, intent: OrderIntent, *, price: Decimal | None = None, position_qty: Decimal = _ZERO
    ) -> list[Problem]:
        props = self.get(intent.symbol)
        if props is None:
            return [_unknown(intent.symbol)]
        return check_intent(props, intent, price=price, position_qty=position_qty)

    def round(self, intent: OrderIntent) -> tuple[OrderIntent, list[Adjustment]]:
        """Side-aware rounding; raises ``RoundingError`` when a size rounds to zero."""
        props = self.get(intent.symbol)
        if props is None:
            return intent, []
        return round_intent(props, intent)

    def prepare(
        self, intent: OrderIntent, *, price: Decimal | None = None, position_qty: Decimal = _ZERO
    ) -> tuple[OrderIntent | None, list[Adjustment], list[Problem]]:
        """Round, then validate: the order to send (None when any problem remains)."""
        props = self.get(intent.symbol)
        if props is None:
            return None, [], [_unknown(intent.symbol)]
        try:
            rounded, adjustments = round_intent(props, intent)
        except RoundingError as exc:
            return None, exc.adjustments, [exc.problem]
        problems = check_intent(props, rounded, price=price, position_qty=position_qty)
        return (None if problems else rounded), adjustments, problems

    def correct(
        self, intent: OrderIntent, *, price: Decimal | None = None, position_qty: Decimal = _ZERO
    ) -> tuple[OrderIntent | None, list[Problem]]:
        """Apply rounding and every fix the problems offer; None when it cannot be fixed.

        Returns the corrected order and the problems that were fixed (or the ones that remain
        when the order cannot be fixed). Used by ``mqd symbols validate --fix``.
        """
        fixed: list[Problem] = []
        current = intent
        for _ in range(8):
            props = self.get(current.symbol)
            if props is None:
                return None, [_unknown(current.symbol)]
            try:
                current, _ = round_intent(props, current)
            except RoundingError as exc:
                return None, [exc.problem]
            problems = check_intent(props, current, price=price, position_qty=position_qty)
            if not problems:
                return current, fixed
            fixable = next((p for p in problems if p.corrected is not None), None)
            if fixable is None:
                return None, problems
            fixed.append(fixable)
            current = fixable.corrected
        return None, problems


def _unknown(symbol: str) -> Problem:
    return Problem(
        "UNKNOWN_SYMBOL",
        f"{symbol} is not a known asset",
        "check the ticker, or run `mqd symbols sync` if it was listed recently",
    )


def _alias(symbol: str) -> str | None:
    """Other spellings Alpaca accepts: lower case, legacy crypto ``BTCUSD`` for ``BTC/USD``."""
    s = symbol.strip().upper()
    if "/" not in s:
        for quote in ("USDT", "USDC", "USD", "BTC"):
            if s.endswith(quote) and len(s) > len(quote) + 1:
                return f"{s[: -len(quote)]}/{quote}"
    return s if s != symbol else None


# -- sync -----------------------------------------------------------------------------------------

SYNC_CLASSES = ("us_equity", "crypto")
_CHUNK = 2000


@dataclass(frozen=True)
class SyncReport:
    """What one sync fetched and how it differs from the previous one."""

    sync_id: int
    asset_classes: tuple[str, ...]
    started_at: datetime
    finished_at: datetime
    seconds: float
    fetched: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    unchanged: int = 0
    first_sync: bool = False
    by_class: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "fetched": self.fetched,
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "unchanged": self.unchanged,
        }


def _shown(field_name: str, value: Any) -> Any:
    from mqd_cli.store.symbols import ASSET_FIELDS

    if field_name in ASSET_FIELDS[6:11]:
        return bool(value)
    return value


def sync(
    store: Store,
    broker: Broker,
    clock: Clock,
    *,
    asset_class: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyncReport:
    """Fetch every asset of ``asset_class`` (default: us_equity and crypto) and store them.

    The upsert, the removals and the sync record are ONE transaction. ``progress(done, total)``
    is called with total 0 while fetching, then as assets are compared.
    """
    from mqd_cli.store import symbols as db

    classes = (asset_class,) if asset_class else SYNC_CLASSES
    started = clock.now()
    t0 = clock.monotonic()
    first = db.last_sync(store) is None
    if progress:
        progress(0, 0)
    fetched: dict[str, tuple] = {}
    by_class: dict[str, int] = {}
    texts: dict[Decimal, str] = {}  # the same few margin values repeat 35,000 times
    for cls in classes:
        assets = broker.list_assets(asset_class=cls)
        by_class[cls] = len(assets)
        for a in assets:
            fetched[a.symbol] = asset_row(a, texts)
    finished = clock.now()
    stamp = finished.isoformat()
    total = len(fetched)
    if progress:
        progress(0, total)
    # The previous state from the snapshot: packed cores compare as plain strings.
    lines: list[str] = []  # the new snapshot; other classes' lines are kept as they are
    previous: dict[str, tuple[str, str]] = {}  # symbol -> (core, changed_at)
    for line in db.snapshot_lines(store):
        core, changed_at, _ = line.rsplit("\t", 2)
        sym, _, cls, _ = core.split("\t", 3)
        if cls in classes:
            previous[sym] = (core, changed_at)
        else:
            lines.append(line)
    fields = db.ASSET_FIELDS
    added: list[str] = []
    changed: dict[str, dict[str, list[Any]]] = {}
    upserts: list[tuple] = []
    for i, (symbol, row) in enumerate(fetched.items(), 1):
        core = db.pack_core(row)
        old = previous.get(symbol)
        changed_at = stamp
        if old is None:
            added.append(symbol)
            upserts.append(row)
        elif old[0] != core:
            changed[symbol] = {
                f: [_shown(f, a), _shown(f, b)]
                for f, a, b in zip(fields, db.unpack(old[0]), row, strict=True)
                if a != b
            }
            upserts.append(row)
        else:
            changed_at = old[1]
        lines.append(f"{core}\t{changed_at}\t{stamp}")
        if progress and i % _CHUNK == 0:
            progress(i, total)
    removed = sorted(s for s in previous if s not in fetched)
    added.sort()
    counts = {
        "fetched": total,
        "added": len(added),
        "removed": len(removed),
        "changed": len(changed),
        "unchanged": total - len(added) - len(changed),
    }
    diff = {"added": added, "removed": removed, "changed": changed}
    sync_id = db.record_sync(
        store,
        asset_classes=classes,
        broker=getattr(broker, "name", type(broker).__name__),
        started_at=started.isoformat(),
        finished_at=stamp,
        upserts=upserts,
        removed=removed,
        counts=counts,
        diff=diff,
        snapshot="\n".join(lines),
    )
    if progress:
        progress(total, total)
    return SyncReport(
        sync_id=sync_id,
        asset_classes=tuple(classes),
        started_at=started,
        finished_at=finished,
        seconds=clock.monotonic() - t0,
        fetched=total,
        added=added,
        removed=removed,
        changed=changed,
        unchanged=counts["unchanged"],
        first_sync=first,
        by_class=by_class,
    )
