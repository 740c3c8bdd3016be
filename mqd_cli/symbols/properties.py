"""What one asset allows: its tick and size increments, margin, and its stored row.

``SymbolProperties`` is an asset as the last ``mqd symbols sync`` stored it; the equity tick rule
(Reg NMS Rule 612) is data in ``US_EQUITY_TICKS``. ``asset_row`` / ``props_from_row`` convert
between an asset and its row in ``store.symbols``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, NamedTuple, TypeVar

from mqd_cli.model import SUPPORTED_ASSET_CLASSES, AssetClass, AssetInfo, AssetStatus, Side

# US equity minimum price variation (Reg NMS Rule 612) as data: (prices at or above, tick),
# highest first. The 2024 amendment's $0.005 tier, when it applies, is one more row here.
US_EQUITY_TICKS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal("1.00"), Decimal("0.01")),
    (Decimal("0"), Decimal("0.0001")),
)
FRACTIONAL_QTY_INCREMENT = Decimal("0.000000001")  # Alpaca takes qty with up to 9 decimals
NOTIONAL_INCREMENT = Decimal("0.01")
_ZERO = Decimal(0)
_ONE = Decimal(1)
_CASH_ONLY_CLASSES = frozenset({AssetClass.CRYPTO, AssetClass.CRYPTO_PERP})


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


def price_rounds_up(side: Side, field_name: str) -> bool:
    """Less aggressive direction: buy limit down, sell limit up, buy stop up, sell stop down."""
    if field_name == "limit_price":
        return side is Side.SELL
    return side is Side.BUY


def round_price(price: Decimal, tick: Decimal, side: Side, field_name: str) -> tuple[Decimal, bool]:
    """``price`` on the tick, never more aggressive for ``side``; and whether it rounded up."""
    up = price_rounds_up(side, field_name)
    return round_to(price, tick, up=up), up


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
    # The class and status as the broker wrote them ("" = the enum's value): an asset of a class
    # the enum does not know (``ipo``, ``us_index``, ...) is shown and refused under its own name.
    raw_class: str = ""
    raw_status: str = ""

    @property
    def is_crypto(self) -> bool:
        return self.asset_class is AssetClass.CRYPTO

    @property
    def class_text(self) -> str:
        return self.raw_class or self.asset_class.value

    @property
    def status_text(self) -> str:
        return self.raw_status or self.status.value

    @property
    def supported(self) -> bool:
        """Whether mqd trades this asset's class (its order rules are known)."""
        return self.asset_class in SUPPORTED_ASSET_CLASSES

    @property
    def marginable_buy(self) -> bool:
        """Whether a buy may use margin: crypto and non-marginable assets are paid in cash."""
        return self.marginable and self.asset_class not in _CASH_ONLY_CLASSES

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
            raw_class=a.class_text,
            raw_status=a.status_text,
        )

    def to_doc(self) -> dict[str, Any]:
        """A JSON-friendly view (``show --json``)."""
        doc: dict[str, Any] = {}
        value: Any
        for name, value in zip(self._fields, self, strict=True):
            if name in ("raw_class", "raw_status"):
                continue
            if name == "asset_class":
                value = self.class_text
            elif name == "status":
                value = self.status_text
            elif isinstance(value, Decimal):
                value = plain(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, AssetClass | AssetStatus):
                value = value.value
            doc[name] = value
        if not self.supported:
            doc["orders"] = f"refused: mqd does not trade {self.class_text} assets"
            return doc
        if not self.is_crypto:
            doc["tick_rule"] = [[plain(p), plain(t)] for p, t in US_EQUITY_TICKS]
        doc["qty_increment"] = plain(self.qty_increment)
        return doc


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def _memoized(convert: Callable[[_K], _V], memo: dict[_K, _V]) -> Callable[[_K | None], _V | None]:
    """``convert`` through ``memo``, None kept: sync and the cache see the same few values often."""

    def get(value: _K | None) -> _V | None:
        if value is None:
            return None
        out = memo.get(value)
        if out is None:
            out = memo[value] = convert(value)
        return out

    return get


def asset_row(a: AssetInfo, texts: dict[Decimal, str] | None = None) -> tuple:
    """The stored row of an asset, in ``store.symbols.ASSET_FIELDS`` order."""
    text = _memoized(plain, {} if texts is None else texts)
    return (
        a.symbol,
        a.id,
        a.class_text,
        a.exchange,
        _one_line(a.name),
        a.status_text,
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


def props_from_row(row: Any, decimals: dict[str, Decimal]) -> SymbolProperties:
    """The properties of a stored row (``store.symbols.unpack``); ``decimals`` memoizes values."""
    dec = _memoized(Decimal, decimals)
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
        row[2],
        row[5],
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
