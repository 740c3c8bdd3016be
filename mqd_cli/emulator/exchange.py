"""``Emulator``: the simulated exchange in time, and the ASGI app that serves it (``.app``).

Time: the engine runs on a ``BacktestClock`` that a timer task moves to
``start + elapsed real time x speed`` every ``tick`` seconds (and before every request), then
calls ``broker.step()`` so resting orders fill while clients wait, then samples the account's
equity for the portfolio history (``EquityHistory.record``). Everything runs on the server's one
event loop thread, so the broker needs no locks.

The routes live with their kind (``trading``, ``account``, ``market_data``, ``stream``); here
are what they share: keys, rate budgets and injected faults around every REST call (``_rest``),
and the test-only control API under ``/_sim/...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from mqd_cli.brokers.errors import BrokerCallError
from mqd_cli.clock import BacktestClock, RealTimeClock
from mqd_cli.emulator.account import AccountRoutes
from mqd_cli.emulator.http import (
    FORBIDDEN,
    INTERNAL,
    RATE_LIMITED,
    SERVER_ERRORS,
    UNAUTHORIZED,
    RateBudget,
    Reply,
    broker_error_body,
    credentials,
    invalid,
    json_response,
    read_json_body,
    real_header_case,
)
from mqd_cli.emulator.market_data import MarketDataRoutes
from mqd_cli.emulator.params import parse_decimal
from mqd_cli.emulator.settings import EmulatorConfig
from mqd_cli.emulator.stream import StreamConnection, TradeUpdatesStream
from mqd_cli.emulator.trading import TradingRoutes
from mqd_cli.wire import format as wire_format

log = logging.getLogger("mqd.simserver")


class Emulator(TradingRoutes, AccountRoutes, MarketDataRoutes, TradeUpdatesStream):
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
        self.loop: asyncio.AbstractEventLoop | None = None  # while serving (for other threads)
        self._build_market()
        self.app = self._build_app()

    # -- market and time ----------------------------------------------------------------------

    def _build_market(self) -> None:
        from mqd_cli.brokers.sim.broker import SimBroker

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
        self._open_account()
        self.created_at = start
        self._forget_assets()

    def sim_now(self) -> datetime:
        elapsed = (self.real.monotonic() - self._origin_real) * self.config.speed
        return self._origin_sim + timedelta(seconds=elapsed) + self._offset

    def sync(self) -> None:
        """Bring the engine to the emulator's current simulated time and match orders."""
        target = self.sim_now()
        if target > self.clock.now():
            self.clock.advance_to(target)
        self.broker.step()
        self.history.record(self.clock.now())

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick)
            try:
                self.sync()
            except Exception:  # a bad step must not stop time
                log.exception("market step failed")

    def reset(self) -> None:
        """A fresh market (same config), counters and faults back to their start values."""
        self._unsubscribe()
        self._close_account()
        self._build_market()
        self.faults = dataclasses.replace(self.config.faults)
        self.trading_budget.clear()
        self.data_budget.clear()
        self.rng = random.Random(self.config.seed)

    # -- REST plumbing ------------------------------------------------------------------------

    def _rest(self, handler: Callable[..., Any], budget: str = "trading") -> Callable[..., Any]:
        """Wrap a handler: latency, auth, rate limit, injected faults, errors -> Alpaca bodies."""

        async def endpoint(request: Any) -> Any:
            self.requests += 1
            faults = self.faults
            if faults.latency:
                await asyncio.sleep(faults.latency)
            bucket = self.trading_budget if budget == "trading" else self.data_budget
            now = self.real.now().timestamp()
            creds = credentials(request.headers)
            if creds is None:
                return json_response(FORBIDDEN, 403, bucket.peek("", now))
            if creds != (self.config.key_id, self.config.secret_key):
                return json_response(UNAUTHORIZED, 401, bucket.peek("", now))
            allowed, headers = bucket.take(creds[0], now)
            if not allowed:
                return json_response(RATE_LIMITED, 429, headers)
            if faults.rest_429_rate and self.rng.random() < faults.rest_429_rate:
                return json_response(RATE_LIMITED, 429, headers)
            if faults.rest_5xx_rate and self.rng.random() < faults.rest_5xx_rate:
                return json_response(INTERNAL, self.rng.choice(SERVER_ERRORS), headers)
            try:
                self.sync()
                response = await handler(request)
            except Reply as reply:
                response = json_response(reply.body, reply.status)
            except BrokerCallError as exc:
                response = json_response(broker_error_body(exc), exc.status or 500)
            except Exception:
                log.exception("emulator handler failed: %s %s", request.method, request.url.path)
                response = json_response(INTERNAL, 500)
            response.headers.update(headers)
            return response

        return endpoint

    # -- control API (test-only, /_sim/...) ---------------------------------------------------

    def state(self) -> dict:
        return {
            "sim_time": wire_format.stamp(self.clock.now()),
            "speed": self.config.speed,
            "faults": dataclasses.asdict(self.faults),
            "stream_connections": len(self.streams),
            "events_emitted": self.events_emitted,
            "requests": self.requests,
        }

    @staticmethod
    def _control(handler: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a control handler: a ``Reply`` it raises becomes the answer (no keys, no faults)."""

        async def endpoint(request: Any) -> Any:
            try:
                return await handler(request)
            except Reply as reply:
                return json_response(reply.body, reply.status)

        return endpoint

    async def control_state(self, request: Any) -> Any:
        return json_response(self.state())

    async def control_faults(self, request: Any) -> Any:
        body = await read_json_body(request)
        try:
            self.faults.update(body)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return json_response(self.state())

    async def control_advance(self, request: Any) -> Any:
        body = await read_json_body(request)
        seconds = float(parse_decimal(body.get("seconds"), "seconds") or 0)
        if seconds < 0:
            raise invalid("seconds must be >= 0")
        self._offset += timedelta(seconds=seconds)
        self.sync()
        return json_response(self.state())

    async def control_drop_streams(self, request: Any) -> Any:
        return json_response({"dropped": await self.close_streams()})

    async def control_reset(self, request: Any) -> Any:
        await self.close_streams()
        self.reset()
        return json_response(self.state())

    # -- app ----------------------------------------------------------------------------------

    def _build_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route, WebSocketRoute

        r = self._rest
        routes = [
            Route("/v2/account", r(self.get_account)),
            Route("/v2/account/configurations", r(self.get_account_configurations)),
            Route(
                "/v2/account/configurations",
                r(self.patch_account_configurations),
                methods=["PATCH"],
            ),
            Route("/v2/account/portfolio/history", r(self.get_portfolio_history)),
            Route("/v2/account/activities", r(self.list_activities)),
            Route("/v2/account/activities/{activity_type}", r(self.list_activities_of_type)),
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
            Route("/v2/stocks/trades/latest", r(self.latest_trades, "data")),
            Route("/v2/stocks/quotes/latest", r(self.latest_quotes, "data")),
            Route("/v2/stocks/bars/latest", r(self.latest_bars, "data")),
            Route("/v2/stocks/snapshots", r(self.snapshots, "data")),
            Route("/v2/stocks/{symbol}/bars", r(self.bars_single, "data")),
            Route("/v2/stocks/{symbol}/trades/latest", r(self.latest_trade_single, "data")),
            Route("/v2/stocks/{symbol}/quotes/latest", r(self.latest_quote_single, "data")),
            Route("/v2/stocks/{symbol}/bars/latest", r(self.latest_bar_single, "data")),
            Route("/v2/stocks/{symbol}/snapshot", r(self.snapshot_single, "data")),
            Route("/v1beta3/crypto/{loc}/bars", r(self.crypto_bars, "data")),
            Route("/v1beta3/crypto/{loc}/latest/{kind}", r(self.crypto_latest, "data")),
            Route("/v1beta3/crypto/{loc}/snapshots", r(self.crypto_snapshots, "data")),
            WebSocketRoute("/stream", self.stream),
        ]
        if self.config.control:
            c = self._control
            routes += [
                Route("/_sim/state", c(self.control_state)),
                Route("/_sim/faults", c(self.control_faults), methods=["POST"]),
                Route("/_sim/advance", c(self.control_advance), methods=["POST"]),
                Route("/_sim/drop_streams", c(self.control_drop_streams), methods=["POST"]),
                Route("/_sim/reset", c(self.control_reset), methods=["POST"]),
            ]

        async def not_found(request: Any, exc: Any) -> Any:
            return json_response(wire_format.error_body(40410000, "endpoint not found"), 404)

        async def not_allowed(request: Any, exc: Any) -> Any:
            return json_response(wire_format.error_body(40510000, "method not allowed"), 405)

        @contextlib.asynccontextmanager
        async def lifespan(app: Any):
            self.loop = asyncio.get_running_loop()
            ticker = asyncio.create_task(self._ticker())
            try:
                yield
            finally:
                ticker.cancel()
                await self.close_streams(1001)

        app = Starlette(
            routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_allowed}
        )
        return real_header_case(app)
