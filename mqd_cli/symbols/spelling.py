"""One spelling per symbol: Alpaca's crypto names mapped to mqd's.

Alpaca spells a crypto pair two ways. Orders, assets and market data say ``BTC/USD``; positions
(and legacy orders) say ``BTCUSD``. mqd keeps one spelling, the one with the slash, so a
position, the order that opened it, a protection lock and a reconcile row all meet on one key.

* ``canonical_symbol(symbol, asset_class)``: the one spelling. Without an asset class the slash
  cannot be placed safely (``TUSD`` is no pair), so only case and blanks are normalised.
* ``crypto_pair(symbol)``: ``BTCUSD`` → ``BTC/USD`` by the quote currencies Alpaca lists, or
  ``None``; for lookups that try the pair spelling as a second guess.
* ``position_symbol(symbol, asset_class)``: the spelling Alpaca gives a position (the emulator
  answers with it, so a rehearsal exercises the mapping).

This module imports nothing of mqd's but the model enums, so every layer may use it.
"""

from __future__ import annotations

from mqd_cli.model import AssetClass

# Longest first: ``USDT`` must win over ``USD`` for ``ETHUSDT``.
CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")
_CRYPTO_CLASSES = frozenset({AssetClass.CRYPTO, AssetClass.CRYPTO_PERP})


def _is_crypto(asset_class: AssetClass | str | None) -> bool:
    if asset_class is None:
        return False
    if isinstance(asset_class, AssetClass):
        return asset_class in _CRYPTO_CLASSES
    return asset_class.strip().lower() in ("crypto", "crypto_perp")


def crypto_pair(symbol: str) -> str | None:
    """``BTCUSD`` → ``BTC/USD``; ``BTC/USD`` as it is; ``None`` when no quote currency ends it."""
    s = symbol.strip().upper()
    if "/" in s:
        base, _, quote = s.partition("/")
        return s if base and quote else None
    for quote in CRYPTO_QUOTES:
        if s.endswith(quote) and len(s) > len(quote):
            return f"{s[: -len(quote)]}/{quote}"
    return None


def canonical_symbol(symbol: str, asset_class: AssetClass | str | None = None) -> str:
    """The one spelling mqd keys a symbol by: upper case, crypto pairs with their slash."""
    s = symbol.strip().upper()
    if "/" not in s and _is_crypto(asset_class):
        return crypto_pair(s) or s
    return s


def position_symbol(symbol: str, asset_class: AssetClass | str | None = None) -> str:
    """The spelling Alpaca gives a position: ``BTCUSD`` for the pair ``BTC/USD``."""
    s = canonical_symbol(symbol, asset_class)
    return s.replace("/", "") if _is_crypto(asset_class) else s
