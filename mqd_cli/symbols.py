"""Symbol properties: what an order may look like for each asset, checked before it is sent.

``sync`` copies the broker's asset list (``/v2/assets``) into the store with a diff against the
previous sync. ``SymbolBook`` is the in-memory view the run loop uses on every order:
``prepare(intent)`` rounds prices and sizes side-aware (never more aggressive) and then
``validate``s the result against Alpaca's rules, returning typed problems with a fix hint.

This module is the public face; the parts live in:

* ``symbol_properties``: ``SymbolProperties``, the tick and size increments, margin, stored rows;
* ``symbol_rules``: ``check_intent``, every reason Alpaca would refuse an order (``Problem``);
* ``symbol_rounding``: ``round_intent``, side-aware rounding (``Adjustment``, ``RoundingError``);
* ``symbol_book``: ``SymbolBook``, the cache the run loop asks;
* ``symbol_sync``: ``sync`` and its ``SyncReport``.
"""

from __future__ import annotations

from mqd_cli.symbol_book import SymbolBook
from mqd_cli.symbol_properties import (
    FRACTIONAL_QTY_INCREMENT,
    NOTIONAL_INCREMENT,
    US_EQUITY_TICKS,
    SymbolProperties,
    asset_row,
    equity_tick,
    margin_requirement,
    plain,
    props_from_row,
    round_price,
    round_to,
)
from mqd_cli.symbol_rounding import Adjustment, RoundingError, round_intent
from mqd_cli.symbol_rules import (
    CRYPTO_TIFS,
    CRYPTO_TYPES,
    FRACTIONAL_EH_ATTRIBUTE,
    MIN_NOTIONAL,
    Problem,
    check_intent,
)
from mqd_cli.symbol_sync import SYNC_CLASSES, SyncReport, sync

__all__ = [
    "CRYPTO_TIFS",
    "CRYPTO_TYPES",
    "FRACTIONAL_EH_ATTRIBUTE",
    "FRACTIONAL_QTY_INCREMENT",
    "MIN_NOTIONAL",
    "NOTIONAL_INCREMENT",
    "SYNC_CLASSES",
    "US_EQUITY_TICKS",
    "Adjustment",
    "Problem",
    "RoundingError",
    "SymbolBook",
    "SymbolProperties",
    "SyncReport",
    "asset_row",
    "check_intent",
    "equity_tick",
    "margin_requirement",
    "plain",
    "props_from_row",
    "round_intent",
    "round_price",
    "round_to",
    "sync",
]
