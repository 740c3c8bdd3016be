"""The Alpaca-compatible emulator behind `mqd sim serve`: the simulated exchange over HTTP.

A real ASGI server (starlette + uvicorn) speaking Alpaca's wire protocol (see
``alpaca-protocol.md`` §1-4 and the checklist in §7) over one ``SimBroker``:

* REST ``/v2`` trading endpoints with Alpaca's status codes, error bodies and codes, key headers
  checked, ``X-Ratelimit-*`` headers on every answer and a per-key budget (429 beyond it);
* ``/stream`` (``trade_updates``): no welcome message, both auth forms, the listen reply, JSON
  in binary frames, one connection per key (a second gets HTTP 429 at the handshake);
* data REST bars (``/v2/stocks/bars``, ``/v2/stocks/{symbol}/bars``) with ``next_page_token``;
* fault injection (``Faults``): stream drops, 429/5xx shares, latency, duplicated and
  reordered stream events;
* ``/_sim/...``: a test-only control API (state, faults, advance time, drop streams, reset).

This module is the public face; the parts live in the ``mqd_cli.emulator`` package (its
docstring lists them).
"""

from __future__ import annotations

from mqd_cli.emulator.exchange import Emulator
from mqd_cli.emulator.http import (
    BAD_BODY,
    FORBIDDEN,
    INTERNAL,
    RATE_LIMITED,
    UNAUTHORIZED,
    RateBudget,
    Reply,
    invalid,
    real_header_case,
)
from mqd_cli.emulator.params import (
    is_uuid,
    page_token,
    parse_bool,
    parse_choice,
    parse_decimal,
    parse_int,
    parse_time,
    parse_timeframe,
    read_page_token,
)
from mqd_cli.emulator.server import EmulatorServer, bind, serve, urls, uvicorn_server
from mqd_cli.emulator.settings import EmulatorConfig, Faults
from mqd_cli.emulator.stream import StreamConnection

__all__ = [
    "BAD_BODY",
    "FORBIDDEN",
    "INTERNAL",
    "RATE_LIMITED",
    "UNAUTHORIZED",
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "Faults",
    "RateBudget",
    "Reply",
    "StreamConnection",
    "bind",
    "invalid",
    "is_uuid",
    "page_token",
    "parse_bool",
    "parse_choice",
    "parse_decimal",
    "parse_int",
    "parse_time",
    "parse_timeframe",
    "read_page_token",
    "real_header_case",
    "serve",
    "urls",
    "uvicorn_server",
]
