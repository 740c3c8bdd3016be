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

Time: the engine runs on a ``BacktestClock`` that a timer task moves to
``start + elapsed real time x speed`` every ``tick`` seconds (and before every request), then
calls ``broker.step()`` so resting orders fill while clients wait. Everything runs on the
server's one event loop thread, so the broker needs no locks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import random
import re
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from mqd_cli import wire
from mqd_cli.brokers.errors import BrokerCallError, NotFound
from mqd_cli.clock import BacktestClock, RealTimeClock
from mqd_cli.config import SimSettings
from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.model import (
    AssetClass,
    OrderIntent,
    OrderType,
    Side,
    TimeInForce,
)

log = logging.getLogger("mqd.simserver")

FORBIDDEN = {"message": "forbidden."}
UNAUTHORIZED = wire.error_body(40110000, "request is not authorized")
RATE_LIMITED = wire.error_body(42910000, "rate limit exceeded")
INTERNAL = wire.error_body(50010000, "internal server error")
BAD_BODY = wire.error_body(40010000, "request body format is invalid")
_5XX = (500, 502, 503, 504)


@dataclass
class Faults:
    """Fault injection, switchable at start (CLI flags) or at run time (``POST /_sim/faults``).

    Rates are shares of calls in [0, 1]; times are seconds. All zero = a healthy exchange.
    """

    stream_drop_every: int = 0  # close a stream connection after every N events sent
    stream_drop_after: float = 0.0  # close a stream connection T s after it authenticated
    stream_duplicate_rate: float = 0.0  # share of events sent twice
    stream_reorder_rate: float = 0.0  # share of events held back and sent after the next one
    stream_reap_delay: float = 0.0  # s a closed connection still counts as the key's one stream
    rest_429_rate: float = 0.0  # share of REST calls answered 429 (budget or not)
    rest_5xx_rate: float = 0.0  # share of REST calls answered 500/502/503/504
    latency: float = 0.0  # s added before every REST answer

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes``; ValueError names an unknown field or a bad value."""
        known = {f.name: f for f in dataclasses.fields(self)}
        staged = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(known)})")
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                raise ValueError(f"fault {name}: expected a number, got {value!r}")
            if value < 0 or (name.endswith("_rate") and value > 1):
                raise ValueError(f"fault {name}: {value!r} is out of range")
            staged[name] = int(value) if known[name].type in (int, "int") else float(value)
            if name == "stream_drop_every" and staged[name] != value:
                raise ValueError(f"fault {name}: expected a whole number, got {value!r}")
        for name, value in staged.items():
            setattr(self, name, value)


@dataclass
class EmulatorConfig:
    """Everything `mqd sim serve` can be told; tests build one directly."""

    seed: int = 42
    start: datetime | None = None  # simulated time at start (None = now)
    speed: float = 1.0  # simulated seconds per real second
    tick: float = 0.05  # s between market steps
    rate_limit: int = 200  # trading requests per key per window
    data_rate_limit: int = 200  # data requests per key per window
    rate_window: float = 60.0  # s
    key_id: str = "mqd-sim-key"
    secret_key: str = "mqd-sim-secret"
    universe: int = 0  # >0: a generated universe of this many assets (default: [sim])
    control: bool = True  # serve /_sim/...
    faults: Faults = field(default_factory=Faults)
    sim: SimSettings = field(default_factory=SimSettings)


class Reply(Exception):
    """An error answer raised by a handler: HTTP status and JSON body."""

    def __init__(self, status: int, body: Any):
        super().__init__(body)
        self.status = status
        self.body = body


def invalid(message: str, code: int = 40010001, status: int = 422) -> Reply:
    return Reply(status, wire.error_body(code, message))


# -- request parsing ------------------------------------------------------------------------------


def parse_decimal(value: Any, name: str) -> Decimal | None:
    """A number from a JSON number or a string; None/"" -> None; anything else is a 422."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise invalid(f"invalid {name}")
    try:
        out = Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid(f"invalid {name}") from None
    if not out.is_finite():
        raise invalid(f"invalid {name}")
    return out


def parse_bool(value: Any, name: str, default: bool = False) -> bool:
    """JSON booleans, or "true"/"false" in any case (alpaca-py sends Python's ``True``)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid(f"invalid {name}")


def parse_choice(value: Any, name: str, enum: type, required: bool = False) -> Any:
    if value is None or value == "":
        if required:
            raise invalid(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise invalid(f"invalid {name}")
    member = enum(value.strip())
    if member.value == "unknown":
        raise invalid(f"invalid {name}: {value}")
    return member


def parse_time(value: str | None, name: str) -> datetime | None:
    """RFC 3339 or YYYY-MM-DD (midnight UTC) from a query string."""
    if value is None or value == "":
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        return wire.ts(value, name)
    except (wire.PayloadError, ValueError):
        raise invalid(f"invalid {name}: {value}") from None


def parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        out = int(value)
    except ValueError:
        raise invalid(f"invalid {name}: {value}") from None
    if out < low:
        raise invalid(f"{name} must be at least {low}")
    return min(out, high)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_TIMEFRAME_RE = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W)$")
_TIMEFRAME_UNIT = {
    "Min": 60,
    "T": 60,
    "Hour": 3600,
    "H": 3600,
    "Day": 86400,
    "D": 86400,
    "Week": 604800,
    "W": 604800,
}


def parse_timeframe(value: str | None) -> timedelta:
    """``1Min``..``59Min``, ``1Hour``..``23Hour``, ``1Day``, ``1Week`` (and T/H/D/W)."""
    m = _TIMEFRAME_RE.match(value or "")
    if not m:
        raise Reply(400, {"message": f"invalid timeframe: {value!r}"})
    n, unit = int(m.group(1)), m.group(2)
    limits = {"Min": 59, "T": 59, "Hour": 23, "H": 23, "Day": 1, "D": 1, "Week": 1, "W": 1}
    if not 1 <= n <= limits[unit]:
        raise Reply(400, {"message": f"invalid timeframe: {value!r}"})
    return timedelta(seconds=n * _TIMEFRAME_UNIT[unit])


def page_token(symbol: str, t: datetime) -> str:
    """Alpaca's observed token shape: base64 of ``SYMBOL|M|<t with 9 fractional digits>``."""
    text = f"{symbol}|M|{t.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z"
    return base64.b64encode(text.encode()).decode()


def read_page_token(token: str) -> tuple[str, datetime]:
    try:
        symbol, _, stamp = base64.b64decode(token, validate=True).decode().split("|")
        return symbol, wire.req_ts(stamp, "page_token")
    except (ValueError, wire.PayloadError):
        raise Reply(400, {"message": "invalid page_token"}) from None


# -- rate limiting --------------------------------------------------------------------------------


class RateBudget:
    """A fixed window per key: ``limit`` requests per ``window`` seconds (real time)."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self._windows: dict[str, list[float]] = {}  # key -> [window start epoch, count]

    def take(self, key: str, now: float) -> tuple[bool, dict[str, str]]:
        start, count = self._windows.get(key, [now, 0])
        if now >= start + self.window:
            start, count = now, 0
        allowed = count < self.limit
        if allowed:
            count += 1
        self._windows[key] = [start, count]
        return allowed, self.headers(self.limit - count, start + self.window)

    def peek(self, key: str, now: float) -> dict[str, str]:
        start, count = self._windows.get(key, [now, 0])
        if now >= start + self.window:
            start, count = now, 0
        return self.headers(self.limit - count, start + self.window)

    def headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {
            "X-Ratelimit-Limit": str(self.limit),
            "X-Ratelimit-Remaining": str(max(0, remaining)),
            "X-Ratelimit-Reset": str(int(reset + 0.999)),
        }

    def clear(self) -> None:
        self._windows.clear()


# -- the emulator ---------------------------------------------------------------------------------


class StreamConnection:
    def __init__(self, websocket: Any):
        self.ws = websocket
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.authorized = False
        self.listening = False
        self.sent = 0
        self.closed = False

    async def send(self, message: dict) -> None:
        await self.ws.send_bytes(json.dumps(message, separators=(",", ":")).encode())

    async def close(self, code: int = 1011) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code)


class Emulator:
    """The simulated exchange plus the ASGI app that serves it (``self.app``)."""

    def __init__(self, config: EmulatorConfig | None = None):
        self.config = config or EmulatorConfig()
        self.faults = dataclasses.replace(self.config.faults)
        self.real = RealTimeClock()
        self.rng = random.Random(self.config.seed)
        self.trading_budget = RateBudget(self.config.rate_limit, self.config.rate_window)
        self.data_budget = RateBudget(self.config.data_rate_limit, self.config.rate_window)
        self.streams: set[StreamConnection] = set()
        self._slot_free_at = 0.0
        self.events_emitted = 0
        self.requests = 0
        self._build_market()
        self.app = self._build_app()

    # -- market and time ----------------------------------------------------------------------

    def _build_market(self) -> None:
        from mqd_cli.brokers.sim import SimBroker

        start = self.config.start or self.real.now()
        self.clock = BacktestClock(start)
        self._origin_sim = start
        self._origin_real = self.real.monotonic()
        self._offset = timedelta(0)
        sim = dataclasses.replace(self.config.sim, seed=self.config.seed)
        if self.config.universe:
            sim = dataclasses.replace(sim, universe_size=self.config.universe)
        self.broker = SimBroker(sim, self.clock)
        self._unsubscribe = self.broker.subscribe(self._on_event)
        self.created_at = start
        self._assets_cache: dict[tuple, bytes] = {}
        self._asset_ids: dict[str, str] | None = None

    def sim_now(self) -> datetime:
        elapsed = (self.real.monotonic() - self._origin_real) * self.config.speed
        return self._origin_sim + timedelta(seconds=elapsed) + self._offset

    def sync(self) -> None:
        """Bring the engine to the emulator's current simulated time and match orders."""
        target = self.sim_now()
        if target > self.clock.now():
            self.clock.advance_to(target)
        self.broker.step()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick)
            try:
                self.sync()
            except Exception:  # a bad step must not stop time
                log.exception("market step failed")

    def _on_event(self, update: Any) -> None:
        message = wire.trade_update_to_wire(update)
        self.events_emitted += 1
        for conn in list(self.streams):
            if conn.listening and not conn.closed:
                conn.queue.put_nowait(message)

    def reset(self) -> None:
        """A fresh market (same config), counters and faults back to their start values."""
        self._unsubscribe()
        self._build_market()
        self.faults = dataclasses.replace(self.config.faults)
        self.trading_budget.clear()
        self.data_budget.clear()
        self.rng = random.Random(self.config.seed)

    # -- HTTP plumbing ------------------------------------------------------------------------

    @staticmethod
    def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Any:
        from starlette.responses import Response

        content = (
            body
            if isinstance(body, bytes)
            else json.dumps(body, separators=(",", ":"), default=str).encode()
        )
        return Response(content, status, headers=dict(headers or {}), media_type="application/json")

    def _credentials(self, headers: Mapping[str, str]) -> tuple[str, str] | None:
        key, secret = headers.get("apca-api-key-id"), headers.get("apca-api-secret-key")
        if key is not None and secret is not None:
            return key, secret
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                key, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                return key, secret
            except ValueError:
                return None
        return None

    def _rest(self, handler: Callable[..., Any], budget: str = "trading") -> Callable[..., Any]:
        """Wrap a handler: latency, auth, rate limit, injected faults, errors -> Alpaca bodies."""

        async def endpoint(request: Any) -> Any:
            self.requests += 1
            faults = self.faults
            if faults.latency:
                await asyncio.sleep(faults.latency)
            bucket = self.trading_budget if budget == "trading" else self.data_budget
            now = self.real.now().timestamp()
            creds = self._credentials(request.headers)
            if creds is None:
                return self._json(FORBIDDEN, 403, bucket.peek("", now))
            if creds != (self.config.key_id, self.config.secret_key):
                return self._json(UNAUTHORIZED, 401, bucket.peek("", now))
            allowed, headers = bucket.take(creds[0], now)
            if not allowed:
                return self._json(RATE_LIMITED, 429, headers)
            if faults.rest_429_rate and self.rng.random() < faults.rest_429_rate:
                return self._json(RATE_LIMITED, 429, headers)
            if faults.rest_5xx_rate and self.rng.random() < faults.rest_5xx_rate:
                return self._json(INTERNAL, self.rng.choice(_5XX), headers)
            try:
                self.sync()
                response = await handler(request)
            except Reply as reply:
                response = self._json(reply.body, reply.status)
            except BrokerCallError as exc:
                response = self._json(self._error_body(exc), exc.status or 500)
            except Exception:
                log.exception("emulator handler failed: %s %s", request.method, request.url.path)
                response = self._json(INTERNAL, 500)
            response.headers.update(headers)
            return response

        return endpoint

    @staticmethod
    def _error_body(exc: BrokerCallError) -> dict:
        body = dict(exc.body or {})
        body.setdefault("code", exc.code if exc.code is not None else 50010000)
        body.setdefault("message", exc.message)
        return body

    @staticmethod
    async def _body(request: Any) -> dict:
        raw = await request.body()
        try:
            data = json.loads(raw, parse_float=Decimal) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            raise Reply(400, BAD_BODY) from None
        if not isinstance(data, dict):
            raise Reply(400, BAD_BODY)
        return data

    # -- trading endpoints --------------------------------------------------------------------

    async def get_account(self, request: Any) -> Any:
        return self._json(wire.account_to_wire(self.broker.get_account(), self.broker.created_at))

    async def post_order(self, request: Any) -> Any:
        body = await self._body(request)
        order_class = body.get("order_class")
        if order_class not in (None, "", "simple"):
            raise invalid(f"order_class {order_class} is not supported by the emulator", 42210000)
        symbol = body.get("symbol")
        if symbol is None or symbol == "":
            raise invalid("symbol is required")
        if not isinstance(symbol, str):
            raise invalid("invalid symbol")
        qty = parse_decimal(body.get("qty"), "qty")
        notional = parse_decimal(body.get("notional"), "notional")
        if qty is None and notional is None:
            raise invalid("qty or notional is required")
        if qty is not None and notional is not None:
            raise invalid("only one of qty or notional may be specified")
        for name, value in (("qty", qty), ("notional", notional)):
            if value is not None and value <= 0:
                raise invalid(f"{name} must be > 0")
        side = parse_choice(body.get("side"), "side", Side, required=True)
        order_type = parse_choice(
            body.get("type") or body.get("order_type"), "type", OrderType, required=True
        )
        tif = parse_choice(body.get("time_in_force"), "time_in_force", TimeInForce, required=True)
        prices = {
            n: parse_decimal(body.get(n), n)
            for n in ("limit_price", "stop_price", "trail_price", "trail_percent")
        }
        for name, value in prices.items():
            if value is not None and value <= 0:
                raise invalid(f"{name} must be > 0")
        if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and prices["limit_price"] is None:
            raise invalid("limit_price is required")
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and prices["stop_price"] is None:
            raise invalid("stop_price is required")
        if order_type is OrderType.TRAILING_STOP and (
            (prices["trail_price"] is None) == (prices["trail_percent"] is None)
        ):
            raise invalid("exactly one of trail_price or trail_percent is required")
        cid = body.get("client_order_id")
        if cid in (None, ""):
            cid = str(uuid.uuid4())
        elif not isinstance(cid, str):
            raise invalid("invalid client_order_id")
        elif len(cid) > 128:
            raise invalid("client_order_id must be no more than 128 characters")
        intent = OrderIntent(
            symbol=symbol.strip(),
            side=side,
            qty=qty,
            notional=notional,
            type=order_type,
            time_in_force=tif,
            extended_hours=parse_bool(body.get("extended_hours"), "extended_hours"),
            client_order_id=cid,
            **prices,
        )
        return self._json(wire.order_to_wire(self.broker.submit_order(intent)))

    async def list_orders(self, request: Any) -> Any:
        q = request.query_params
        status = (q.get("status") or "open").lower()
        if status not in ("open", "closed", "all"):
            raise invalid(f"invalid status: {q.get('status')}")
        limit = parse_int(q.get("limit"), "limit", 50, 1, 500)
        direction = (q.get("direction") or "desc").lower()
        if direction not in ("asc", "desc"):
            raise invalid(f"invalid direction: {q.get('direction')}")
        nested = parse_bool(q.get("nested"), "nested")
        side = parse_choice(q.get("side"), "side", Side)
        symbols = [s.strip() for s in (q.get("symbols") or "").split(",") if s.strip()]
        after = parse_time(q.get("after"), "after")
        until = parse_time(q.get("until"), "until")
        orders = self.broker.list_orders(
            status, after=after, until=until, symbols=symbols or None, limit=None
        )
        if side is not None:
            orders = [o for o in orders if o.side is side]

        def submitted(o: Any) -> datetime:
            return o.submitted_at or o.created_at

        # after/until are exclusive bounds on submission time.
        orders = [
            o
            for o in orders
            if (after is None or submitted(o) > after) and (until is None or submitted(o) < until)
        ]
        orders.sort(key=lambda o: (submitted(o), o.id), reverse=direction == "desc")
        rows = []
        for order in orders[:limit]:
            row = wire.order_to_wire(order)
            if not nested:
                row["legs"] = None
            rows.append(row)
        return self._json(rows)

    def _order_id(self, request: Any) -> str:
        order_id = request.path_params["order_id"]
        if not is_uuid(order_id):
            raise invalid("order_id is missing")
        return order_id

    async def get_order(self, request: Any) -> Any:
        return self._json(wire.order_to_wire(self.broker.get_order(self._order_id(request))))

    async def get_order_by_client_id(self, request: Any) -> Any:
        cid = request.query_params.get("client_order_id")
        if not cid:
            raise invalid("client_order_id is missing")
        return self._json(wire.order_to_wire(self.broker.get_order_by_client_id(cid)))

    async def replace_order(self, request: Any) -> Any:
        order_id = self._order_id(request)
        body = await self._body(request)
        cid = body.get("client_order_id")
        if cid is not None and (not isinstance(cid, str) or len(cid) > 128):
            raise invalid("invalid client_order_id")
        qty = parse_decimal(body.get("qty"), "qty")
        if qty is not None and (qty <= 0 or qty != qty.to_integral_value()):
            raise invalid("qty must be a positive whole number")
        changes = {n: parse_decimal(body.get(n), n) for n in ("limit_price", "stop_price", "trail")}
        tif = parse_choice(body.get("time_in_force"), "time_in_force", TimeInForce)
        order = self.broker.replace_order(
            order_id, qty=qty, time_in_force=tif, client_order_id=cid or None, **changes
        )
        return self._json(wire.order_to_wire(order))

    async def cancel_order(self, request: Any) -> Any:
        from starlette.responses import Response

        self.broker.cancel_order(self._order_id(request))
        return Response(status_code=204)

    async def cancel_all(self, request: Any) -> Any:
        rows = []
        for result in self.broker.cancel_all_orders():
            row: dict[str, Any] = {"id": result.order_id, "status": result.status}
            if result.order is not None:
                row["body"] = wire.order_to_wire(result.order)
            rows.append(row)
        return self._json(rows, 207)

    # -- positions ----------------------------------------------------------------------------

    def _symbol_for(self, symbol_or_id: str) -> str:
        if not is_uuid(symbol_or_id):
            return symbol_or_id
        if self._asset_ids is None:
            self._asset_ids = {a.id: a.symbol for a in self.broker.list_assets()}
        return self._asset_ids.get(symbol_or_id, symbol_or_id)

    async def list_positions(self, request: Any) -> Any:
        return self._json([wire.position_to_wire(p) for p in self.broker.list_positions()])

    async def get_position(self, request: Any) -> Any:
        symbol = self._symbol_for(request.path_params["symbol"])
        return self._json(wire.position_to_wire(self.broker.get_position(symbol)))

    def _close(
        self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Any:
        if percentage is not None:
            size = abs(self.broker.get_position(symbol).qty)
            qty = (size * percentage / 100).quantize(Decimal("0.000000001"))
        return self.broker.close_position(symbol, qty)

    async def close_position(self, request: Any) -> Any:
        symbol = self._symbol_for(request.path_params["symbol"])
        q = request.query_params
        qty = parse_decimal(q.get("qty"), "qty")
        pct = parse_decimal(q.get("percentage"), "percentage")
        if qty is not None and pct is not None:
            raise invalid("only one of qty or percentage may be specified")
        if pct is not None and not 0 < pct <= 100:
            raise invalid("percentage must be in (0, 100]")
        return self._json(wire.order_to_wire(self._close(symbol, qty, pct)))

    async def close_all_positions(self, request: Any) -> Any:
        if parse_bool(request.query_params.get("cancel_orders"), "cancel_orders"):
            self.broker.cancel_all_orders()
        rows = []
        for position in self.broker.list_positions():
            try:
                order = self._close(position.symbol)
                rows.append(
                    {"symbol": position.symbol, "status": 200, "body": wire.order_to_wire(order)}
                )
            except BrokerCallError as exc:
                rows.append(
                    {
                        "symbol": position.symbol,
                        "status": exc.status or 500,
                        "body": self._error_body(exc),
                    }
                )
        return self._json(rows, 207)

    # -- assets, clock, calendar --------------------------------------------------------------

    async def list_assets(self, request: Any) -> Any:
        q = request.query_params
        asset_class = (q.get("asset_class") or "us_equity").lower()
        if AssetClass(asset_class) is AssetClass.UNKNOWN:
            raise invalid(f"invalid asset_class: {asset_class}")
        status = (q.get("status") or "").lower() or None
        if status not in (None, "active", "inactive"):
            raise invalid(f"invalid status: {status}")
        exchange = q.get("exchange") or None
        attributes = {a for a in (q.get("attributes") or "").split(",") if a}
        key = (asset_class, status, exchange, tuple(sorted(attributes)))
        cached = self._assets_cache.get(key)
        if cached is None:
            assets = self.broker.list_assets(asset_class, status)
            rows = [
                wire.asset_to_wire(a)
                for a in assets
                if a.asset_class.value == asset_class
                and (status is None or a.status.value == status)
                and (exchange is None or a.exchange == exchange)
                and (not attributes or attributes & set(a.attributes))
            ]
            cached = self._assets_cache[key] = json.dumps(rows, separators=(",", ":")).encode()
        return self._json(cached)

    async def get_asset(self, request: Any) -> Any:
        raw = request.path_params["symbol"]
        symbol = self._symbol_for(raw)
        try:
            asset = self.broker.get_asset(symbol)
        except NotFound:
            raise Reply(404, wire.error_body(40410000, f"asset not found for {raw}")) from None
        return self._json(wire.asset_to_wire(asset))

    async def get_clock(self, request: Any) -> Any:
        return self._json(wire.clock_to_wire(self.broker.get_clock(), EXCHANGE_TZ))

    async def get_calendar(self, request: Any) -> Any:
        q = request.query_params
        today = self.clock.now().astimezone(EXCHANGE_TZ).date()
        start = parse_time(q.get("start"), "start")
        end = parse_time(q.get("end"), "end")
        first = start.date() if start else today
        last = end.date() if end else first + timedelta(days=365)
        if last < first:
            return self._json([])
        if (last - first).days > 366 * 60:
            raise invalid("calendar range is too long")
        days = self.broker.get_calendar(first, last)
        return self._json([wire.calendar_day_to_wire(d) for d in days])

    # -- market data --------------------------------------------------------------------------

    def _bars_query(self, request: Any, symbols: list[str]) -> tuple[dict, str | None]:
        q = request.query_params
        timeframe = parse_timeframe(q.get("timeframe"))
        now = self.clock.now()
        try:
            start = parse_time(q.get("start"), "start")
            end = parse_time(q.get("end"), "end")
            limit = parse_int(q.get("limit"), "limit", 1000, 1, 10_000)
        except Reply as reply:
            raise Reply(400, {"message": reply.body["message"]}) from None
        if start is None:
            local = now.astimezone(EXCHANGE_TZ)
            start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        end = min(end or now, now)
        sort = (q.get("sort") or "asc").lower()
        if sort not in ("asc", "desc"):
            raise Reply(400, {"message": f"invalid sort: {sort}"})
        feed = (q.get("feed") or "iex").lower()
        if feed not in ("iex", "sip", "otc", "boats", "delayed_sip"):
            raise Reply(400, {"message": f"invalid feed: {feed}"})
        resume: tuple[str, datetime] | None = None
        if q.get("page_token"):
            resume = read_page_token(q["page_token"])
        out: dict[str, list] = {}
        taken = 0
        more_after: tuple[str, datetime] | None = None
        last: tuple[str, datetime] | None = None
        for symbol in sorted(set(symbols)):
            if resume and symbol < resume[0]:
                continue
            try:
                # Alpaca's end is inclusive; the engine's is exclusive.
                bars = (
                    self.broker.bars(symbol, start, end + timedelta(microseconds=1), timeframe)
                    if start <= end
                    else []
                )
            except NotFound:
                bars = []
            bars = [b for b in bars if start <= b.timestamp <= end]
            bars.sort(key=lambda b: b.timestamp, reverse=sort == "desc")
            if resume and symbol == resume[0]:
                t = resume[1]
                bars = [b for b in bars if (b.timestamp > t if sort == "asc" else b.timestamp < t)]
            for bar in bars:
                if taken >= limit:
                    more_after = more_after or (symbol, bar.timestamp)
                    break
                out.setdefault(symbol, []).append(wire.bar_to_wire(bar))
                taken += 1
                last = (symbol, bar.timestamp)
            if more_after:
                break
        token = page_token(*last) if more_after and last else None
        return out, token

    async def bars_multi(self, request: Any) -> Any:
        symbols = [
            s.strip() for s in (request.query_params.get("symbols") or "").split(",") if s.strip()
        ]
        if not symbols:
            raise Reply(400, {"message": "symbols is required"})
        bars, token = self._bars_query(request, symbols)
        return self._json({"bars": bars, "next_page_token": token})

    async def bars_single(self, request: Any) -> Any:
        symbol = request.path_params["symbol"]
        bars, token = self._bars_query(request, [symbol])
        return self._json(
            {"bars": bars.get(symbol, []), "symbol": symbol, "next_page_token": token}
        )

    # -- trade_updates stream -----------------------------------------------------------------

    async def stream(self, websocket: Any) -> None:
        now = self.real.monotonic()
        if self.streams or now < self._slot_free_at:
            from starlette.responses import Response

            body = json.dumps(wire.error_body(42910000, "connection limit exceeded")).encode()
            await websocket.send_denial_response(Response(body, 429, media_type="application/json"))
            return
        conn = StreamConnection(websocket)
        self.streams.add(conn)  # taken before the first await: no race for the one slot
        pump: asyncio.Task | None = None
        timer: asyncio.Task | None = None
        try:
            await websocket.accept()
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = (
                    message.get("text") if message.get("text") is not None else message.get("bytes")
                )
                try:
                    data = json.loads(raw or b"")
                except (ValueError, UnicodeDecodeError):
                    data = None
                if not isinstance(data, dict):
                    await conn.send(
                        {"stream": "error", "data": {"error_message": "invalid syntax"}}
                    )
                    continue
                action = data.get("action")
                if action in ("auth", "authenticate"):
                    conn.authorized = self._stream_auth(data)
                    status = "authorized" if conn.authorized else "unauthorized"
                    await conn.send(
                        {
                            "stream": "authorization",
                            "data": {"status": status, "action": "authenticate"},
                        }
                    )
                    if conn.authorized and pump is None:
                        pump = asyncio.create_task(self._pump(conn))
                        if self.faults.stream_drop_after:
                            timer = asyncio.create_task(
                                self._drop_later(conn, self.faults.stream_drop_after)
                            )
                elif action == "listen":
                    if not conn.authorized:
                        await conn.send(
                            {
                                "stream": "authorization",
                                "data": {"status": "unauthorized", "action": "listen"},
                            }
                        )
                        continue
                    streams = (
                        (data.get("data") or {}).get("streams")
                        if isinstance(data.get("data"), dict)
                        else None
                    )
                    wanted = (
                        [s for s in streams or [] if s == "trade_updates"]
                        if isinstance(streams, list)
                        else []
                    )
                    conn.listening = bool(wanted)
                    await conn.send({"stream": "listening", "data": {"streams": wanted}})
                else:
                    await conn.send(
                        {"stream": "error", "data": {"error_message": f"invalid action: {action}"}}
                    )
        except Exception as exc:  # a client vanishing mid-send is normal
            log.debug("stream connection ended: %r", exc)
        finally:
            conn.closed = True
            for task in (pump, timer):
                if task is not None:
                    task.cancel()
            self.streams.discard(conn)
            self._slot_free_at = self.real.monotonic() + self.faults.stream_reap_delay

    def _stream_auth(self, data: dict) -> bool:
        inner = data.get("data") if isinstance(data.get("data"), dict) else {}
        key = data.get("key", inner.get("key_id"))
        secret = data.get("secret", inner.get("secret_key"))
        return (key, secret) == (self.config.key_id, self.config.secret_key)

    async def _drop_later(self, conn: StreamConnection, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await conn.close()

    async def _pump(self, conn: StreamConnection) -> None:
        """Send queued events, applying the duplicate / reorder / drop-every faults."""
        held: dict | None = None
        try:
            while not conn.closed:
                try:
                    message = await (
                        asyncio.wait_for(conn.queue.get(), 0.2) if held else conn.queue.get()
                    )
                except TimeoutError:
                    batch, held = [held], None  # nothing came after the held event: flush it
                else:
                    faults = self.faults
                    if held is not None:
                        batch, held = [message, held], None
                    elif faults.stream_reorder_rate and (
                        self.rng.random() < faults.stream_reorder_rate
                    ):
                        held = message
                        continue
                    else:
                        batch = [message]
                    if faults.stream_duplicate_rate and (
                        self.rng.random() < faults.stream_duplicate_rate
                    ):
                        batch.append(message)
                for item in batch:
                    await conn.send(item)
                    conn.sent += 1
                    every = self.faults.stream_drop_every
                    if every and conn.sent % every == 0:
                        await conn.close()
                        return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("stream pump ended: %r", exc)
            await conn.close()

    # -- control API (test-only, /_sim/...) ---------------------------------------------------

    def state(self) -> dict:
        return {
            "sim_time": wire.stamp(self.clock.now()),
            "speed": self.config.speed,
            "faults": dataclasses.asdict(self.faults),
            "stream_connections": len(self.streams),
            "events_emitted": self.events_emitted,
            "requests": self.requests,
        }

    async def control_state(self, request: Any) -> Any:
        return self._json(self.state())

    async def control_faults(self, request: Any) -> Any:
        try:
            body = await self._body(request)
            self.faults.update(body)
        except Reply as reply:
            return self._json(reply.body, reply.status)
        except ValueError as exc:
            return self._json(wire.error_body(40010001, str(exc)), 422)
        return self._json(self.state())

    async def control_advance(self, request: Any) -> Any:
        try:
            body = await self._body(request)
            seconds = float(parse_decimal(body.get("seconds"), "seconds") or 0)
        except Reply as reply:
            return self._json(reply.body, reply.status)
        if seconds < 0:
            return self._json(wire.error_body(40010001, "seconds must be >= 0"), 422)
        self._offset += timedelta(seconds=seconds)
        self.sync()
        return self._json(self.state())

    async def control_drop_streams(self, request: Any) -> Any:
        conns = list(self.streams)
        for conn in conns:
            await conn.close()
        return self._json({"dropped": len(conns)})

    async def control_reset(self, request: Any) -> Any:
        for conn in list(self.streams):
            await conn.close()
        self.reset()
        return self._json(self.state())

    # -- app ----------------------------------------------------------------------------------

    def _build_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route, WebSocketRoute

        r = self._rest
        routes = [
            Route("/v2/account", r(self.get_account)),
            Route("/v2/orders", r(self.post_order), methods=["POST"]),
            Route("/v2/orders", r(self.list_orders), methods=["GET"]),
            Route("/v2/orders", r(self.cancel_all), methods=["DELETE"]),
            Route("/v2/orders:by_client_order_id", r(self.get_order_by_client_id)),
            Route("/v2/orders/{order_id}", r(self.get_order), methods=["GET"]),
            Route("/v2/orders/{order_id}", r(self.replace_order), methods=["PATCH"]),
            Route("/v2/orders/{order_id}", r(self.cancel_order), methods=["DELETE"]),
            Route("/v2/positions", r(self.list_positions), methods=["GET"]),
            Route("/v2/positions", r(self.close_all_positions), methods=["DELETE"]),
            Route("/v2/positions/{symbol:path}", r(self.get_position), methods=["GET"]),
            Route("/v2/positions/{symbol:path}", r(self.close_position), methods=["DELETE"]),
            Route("/v2/assets", r(self.list_assets)),
            Route("/v2/assets/{symbol:path}", r(self.get_asset)),
            Route("/v2/clock", r(self.get_clock)),
            Route("/v2/calendar", r(self.get_calendar)),
            Route("/v2/stocks/bars", r(self.bars_multi, "data")),
            Route("/v2/stocks/{symbol}/bars", r(self.bars_single, "data")),
            WebSocketRoute("/stream", self.stream),
        ]
        if self.config.control:
            routes += [
                Route("/_sim/state", self.control_state),
                Route("/_sim/faults", self.control_faults, methods=["POST"]),
                Route("/_sim/advance", self.control_advance, methods=["POST"]),
                Route("/_sim/drop_streams", self.control_drop_streams, methods=["POST"]),
                Route("/_sim/reset", self.control_reset, methods=["POST"]),
            ]

        async def not_found(request: Any, exc: Any) -> Any:
            return self._json(wire.error_body(40410000, "endpoint not found"), 404)

        async def not_allowed(request: Any, exc: Any) -> Any:
            return self._json(wire.error_body(40510000, "method not allowed"), 405)

        @contextlib.asynccontextmanager
        async def lifespan(app: Any):
            ticker = asyncio.create_task(self._ticker())
            try:
                yield
            finally:
                ticker.cancel()
                for conn in list(self.streams):
                    await conn.close(1001)

        app = Starlette(
            routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_allowed}
        )
        return real_header_case(app)


_HEADER_CASE = {
    name.lower().encode(): name.encode()
    for name in ("X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset")
}


def real_header_case(app: Any) -> Any:
    """Starlette lowercases header names; Alpaca sends ``X-Ratelimit-*`` in this casing."""

    async def cased(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_cased(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(_HEADER_CASE.get(k, k), v) for k, v in message["headers"]]
            await send(message)

        await app(scope, receive, send_cased)

    return cased


# -- running it -----------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 = a free port), bound before the URLs are printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (else ~40 ms per answer
    # from Nagle + delayed ACK on loopback).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def urls(sock: socket.socket) -> dict[str, str]:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    return {"base_url": base, "stream_url": f"ws://{shown}:{port}/stream", "data_url": base}


class _DenialNoise(logging.Filter):
    """uvicorn's sans-io websocket protocol logs a refused handshake (our 429) as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


def uvicorn_server(emulator: Emulator) -> Any:
    import signal

    import uvicorn

    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialNoise) for f in error_log.filters):
        error_log.addFilter(_DenialNoise())

    class Server(uvicorn.Server):
        """uvicorn's server without re-raising the stop signal: SIGINT/SIGTERM end serve()."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            stops = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        emulator.app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        ws_ping_interval=None,
        timeout_graceful_shutdown=2,
    )
    return Server(config)


def serve(emulator: Emulator, sock: socket.socket) -> int | None:
    """Serve until Ctrl-C or SIGTERM; returns the signal that stopped it (shut down cleanly)."""
    server = uvicorn_server(emulator)
    server.run(sockets=[sock])
    return server._captured_signals[0] if server._captured_signals else None


class EmulatorServer:
    """An emulator on a loopback port in a background thread (tests and benchmarks).

    ``with EmulatorServer(EmulatorConfig(...)) as srv:`` gives ``srv.base_url``,
    ``srv.stream_url``, ``srv.data_url`` and ``srv.emulator``.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ):
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.emulator: Emulator | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.urls: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return self.urls["base_url"]

    @property
    def stream_url(self) -> str:
        return self.urls["stream_url"]

    @property
    def data_url(self) -> str:
        return self.urls["data_url"]

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        self.emulator = Emulator(self.config)
        sock = bind(self.host, self.port)
        self.urls = urls(sock)
        self._server = uvicorn_server(self.emulator)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="mqd-emulator", daemon=True
        )
        self._thread.start()
        ready = threading.Event()
        waited = 0.0
        while not self._server.started and waited < timeout and self._thread.is_alive():
            ready.wait(0.01)
            waited += 0.01
        if not self._server.started:
            self.stop()
            raise RuntimeError("the emulator did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "Faults",
    "bind",
    "serve",
    "urls",
]
