"""The simulated exchange's asset universe: a few well-known names and a large generator.

The built-in universe covers every rule the simulator enforces: fractionable and not, shortable
and easy to borrow or not, a stock below $1 (sub-penny ticks), an inactive (delisted) name, and
crypto pairs with ``min_order_size`` / ``min_trade_increment`` / ``price_increment`` as Alpaca
publishes them. ``generate_universe`` builds a deterministic universe of any size (35,000 by
default, about the size of Alpaca's ``/v2/assets``) for sync and load tests.
"""

from __future__ import annotations

import random
import string
import uuid
from decimal import Decimal

from mqd_cli.model import AssetClass, AssetInfo, AssetStatus

__all__ = ["START_PRICES", "asset_id_for", "default_assets", "generate_universe"]

_NAMESPACE = uuid.UUID("5d0c3a52-8f5b-4b8e-9a63-2f0b8d1e7c11")


def asset_id_for(symbol: str) -> str:
    """A stable asset id (UUID) for a symbol."""
    return str(uuid.uuid5(_NAMESPACE, symbol.upper()))


def _equity(
    symbol: str,
    name: str,
    exchange: str,
    *,
    fractionable: bool = True,
    shortable: bool = True,
    easy_to_borrow: bool = True,
    status: AssetStatus = AssetStatus.ACTIVE,
    tradable: bool = True,
    attributes: tuple[str, ...] = (),
) -> AssetInfo:
    marginable = status is AssetStatus.ACTIVE
    return AssetInfo(
        id=asset_id_for(symbol),
        symbol=symbol,
        asset_class=AssetClass.US_EQUITY,
        exchange=exchange,
        status=status,
        tradable=tradable,
        marginable=marginable,
        shortable=shortable,
        easy_to_borrow=easy_to_borrow,
        fractionable=fractionable,
        name=name,
        maintenance_margin_requirement=Decimal(30 if marginable else 100),
        margin_requirement_long=Decimal(30 if marginable else 100),
        margin_requirement_short=Decimal(30 if marginable else 100),
        attributes=attributes,
    )


def _crypto(symbol: str, name: str, min_size: str, increment: str, price_inc: str) -> AssetInfo:
    return AssetInfo(
        id=asset_id_for(symbol),
        symbol=symbol,
        asset_class=AssetClass.CRYPTO,
        exchange="CRYPTO",
        status=AssetStatus.ACTIVE,
        tradable=True,
        marginable=False,
        shortable=False,
        easy_to_borrow=False,
        fractionable=True,
        name=name,
        min_order_size=Decimal(min_size),
        min_trade_increment=Decimal(increment),
        price_increment=Decimal(price_inc),
        maintenance_margin_requirement=Decimal(100),
        margin_requirement_long=Decimal(100),
        margin_requirement_short=Decimal(100),
    )


_OPTIONS = ("fractional_eh_enabled", "has_options", "overnight_tradable")

# Start prices of the random walk (roughly where these traded in early 2026).
START_PRICES: dict[str, Decimal] = {
    "AAPL": Decimal("178.50"),
    "MSFT": Decimal("433.40"),
    "SPY": Decimal("571.20"),
    "NVDA": Decimal("131.20"),
    "QQQ": Decimal("502.10"),
    "BRK.A": Decimal("702150.00"),
    "GME": Decimal("24.80"),
    "AMC": Decimal("3.12"),
    "ZOM": Decimal("0.1523"),
    "TWTR": Decimal("53.70"),
    "BTC/USD": Decimal("97250.00"),
    "ETH/USD": Decimal("3412.50"),
    "SOL/USD": Decimal("187.40"),
}


def default_assets() -> list[AssetInfo]:
    """The built-in universe (each asset exercises one rule; see the module docstring)."""
    return [
        _equity("AAPL", "Apple Inc. Common Stock", "NASDAQ", attributes=_OPTIONS),
        _equity("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", attributes=_OPTIONS),
        _equity("SPY", "SPDR S&P 500 ETF Trust", "ARCA", attributes=_OPTIONS),
        _equity("NVDA", "NVIDIA Corporation Common Stock", "NASDAQ", attributes=_OPTIONS),
        _equity("QQQ", "Invesco QQQ Trust, Series 1", "NASDAQ", attributes=_OPTIONS),
        # not fractionable; one share costs more than a fresh account's buying power
        _equity("BRK.A", "Berkshire Hathaway Inc. Class A", "NYSE", fractionable=False),
        # shortable but hard to borrow: the sim refuses short sells of it
        _equity("GME", "GameStop Corp. Class A", "NYSE", easy_to_borrow=False),
        # not shortable at all
        _equity(
            "AMC",
            "AMC Entertainment Holdings, Inc. Class A",
            "NYSE",
            shortable=False,
            easy_to_borrow=False,
        ),
        # below $1: prices may carry four decimals
        _equity(
            "ZOM",
            "Zomedica Corp. Common Shares",
            "AMEX",
            fractionable=False,
            shortable=False,
            easy_to_borrow=False,
        ),
        # delisted
        _equity(
            "TWTR",
            "Twitter, Inc. Common Stock",
            "NYSE",
            status=AssetStatus.INACTIVE,
            tradable=False,
            shortable=False,
            easy_to_borrow=False,
            fractionable=False,
        ),
        _crypto("BTC/USD", "Bitcoin  / US Dollar", "0.0001", "0.000000001", "1"),
        _crypto("ETH/USD", "Ethereum  / US Dollar", "0.001", "0.000000001", "0.1"),
        _crypto("SOL/USD", "Solana  / US Dollar", "0.01", "0.000000001", "0.0025"),
    ]


_EXCHANGES = ("NASDAQ", "NYSE", "ARCA", "AMEX", "BATS", "NYSEARCA", "OTC")
_WORDS = (
    "Acme",
    "Apex",
    "Atlas",
    "Beacon",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Iron",
    "Juniper",
    "Keystone",
    "Lumen",
    "Meridian",
    "Nova",
    "Orion",
    "Pioneer",
    "Quartz",
    "Ridge",
    "Summit",
    "Titan",
    "Union",
    "Vertex",
    "Willow",
    "Zenith",
)
_KINDS = ("Holdings Inc.", "Corp.", "Group", "Technologies", "Bancorp", "Therapeutics", "ETF")


def generate_universe(n: int = 35_000, seed: int = 0) -> list[AssetInfo]:
    """``n`` assets: the built-in ones first, then generated US equities (deterministic in seed).

    Generated symbols are unique 1-5 letter tickers (some with a ``.A``/``.B`` class suffix);
    about 6 % are inactive, 70 % fractionable, 80 % shortable.
    """
    base = default_assets()
    if n <= len(base):
        return base[:n]
    rng = random.Random(f"mqd-sim-universe|{seed}")
    taken = {a.symbol for a in base}
    out = list(base)
    letters = string.ascii_uppercase
    while len(out) < n:
        symbol = "".join(rng.choice(letters) for _ in range(rng.choice((1, 2, 3, 3, 4, 4, 4, 5))))
        if rng.random() < 0.02:
            symbol += rng.choice((".A", ".B"))
        if symbol in taken:
            continue
        taken.add(symbol)
        active = rng.random() >= 0.06
        shortable = active and rng.random() < 0.8
        attributes = tuple(a for a in _OPTIONS if rng.random() < 0.3) if active else ()
        out.append(
            _equity(
                symbol,
                f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {rng.choice(_KINDS)}",
                rng.choice(_EXCHANGES),
                fractionable=active and rng.random() < 0.7,
                shortable=shortable,
                easy_to_borrow=shortable and rng.random() < 0.85,
                status=AssetStatus.ACTIVE if active else AssetStatus.INACTIVE,
                tradable=active,
                attributes=attributes,
            )
        )
    return out
