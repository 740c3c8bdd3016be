"""Alpaca's JSON <-> mqd's domain types, both directions: the one import for either side.

Parsing (``parse_*`` and the scalar readers ``dec``, ``ts``, ``boolean``, ...) lives in
``wire_parse.py``: tolerant of what the real service sends, strict about what must be there
(``PayloadError`` names the missing or unusable field). Serializing (``*_to_wire``, ``num``,
``stamp``, ``error_body``) lives in ``wire_format.py`` and produces exactly the shapes of
``alpaca-protocol.md`` §3-4.
"""

from __future__ import annotations

from mqd_cli.wire_format import (
    account_to_wire,
    asset_to_wire,
    bar_to_wire,
    calendar_day_to_wire,
    clock_to_wire,
    error_body,
    num,
    order_to_wire,
    position_to_wire,
    stamp,
    trade_update_to_wire,
)
from mqd_cli.wire_parse import (
    _TS_RE,  # noqa: F401  (the timestamp grammar, used by tests)
    PayloadError,
    as_utc,
    boolean,
    dec,
    opt_str,
    parse_account,
    parse_asset,
    parse_bar,
    parse_calendar_day,
    parse_clock,
    parse_order,
    parse_position,
    parse_trade_update,
    req_dec,
    req_str,
    req_ts,
    ts,
)

__all__ = [
    "PayloadError",
    "account_to_wire",
    "as_utc",
    "asset_to_wire",
    "bar_to_wire",
    "boolean",
    "calendar_day_to_wire",
    "clock_to_wire",
    "dec",
    "error_body",
    "num",
    "opt_str",
    "order_to_wire",
    "parse_account",
    "parse_asset",
    "parse_bar",
    "parse_calendar_day",
    "parse_clock",
    "parse_order",
    "parse_position",
    "parse_trade_update",
    "position_to_wire",
    "req_dec",
    "req_str",
    "req_ts",
    "stamp",
    "trade_update_to_wire",
    "ts",
]
