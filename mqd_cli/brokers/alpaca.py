"""The Alpaca adapter: alpaca-py's ``TradingClient`` behind the Broker protocol.

The only module that imports alpaca-py, and only inside functions (it costs ~0.35 s). Design:

* ``raw_data=True`` everywhere: payloads go through ``wire.parse_*`` into mqd domain types, so a
  new Alpaca enum value never breaks parsing and no alpaca-py model leaves this module.
* Orders, replaces and list queries are sent with the client's generic ``post/patch/get`` and
  decimal *strings* (the API documents strings); alpaca-py's request models would turn every
  price into a float.
* alpaca-py's own retry is off (it sleeps 3 s x 3 and retries order submits blindly); every
  request carries a timeout (alpaca-py passes none) and goes through the throttler, which sees
  every response's status and rate-limit headers through a ``requests`` response hook.
* ``APIError`` becomes the typed errors of ``brokers/errors.py`` by HTTP status, keeping
  Alpaca's code, message and body verbatim.
* An order submit is never retried: after an ambiguous failure the order is looked up by its
  ``client_order_id`` before anything is reported.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from mqd_cli.brokers.errors import (
    AuthFailed,
    BrokerCallError,
    BrokerUnavailable,
    DuplicateClientOrderId,
    InsufficientFunds,
    NotFound,
    OrderRejected,
    RateLimited,
)
from mqd_cli.model import (
    AccountReport,
    AssetInfo,
    Bar,
    CalendarDay,
    CancelResult,
    ClockReport,
    FillActivity,
    OrderClass,
    OrderIntent,
    OrderReport,
    PositionReport,
    TimeInForce,
)
from mqd_cli.wire import format as wire_format
from mqd_cli.wire import parse as wire_parse

if TYPE_CHECKING:
    from mqd_cli.config.settings import AlpacaSettings

T = TypeVar("T")

TRADING_LIMIT = "alpaca_trading"
DATA_LIMIT = "alpaca_data"
PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
DATA_URL = "https://data.alpaca.markets"
PAGE_LIMIT = 500  # Alpaca's maximum for GET /v2/orders
BARS_PAGE_LIMIT = 10_000  # Alpaca's maximum for the bars endpoints
ACTIVITY_PAGE = 100  # Alpaca's maximum page_size for account activities
_KEY_HINT = "check [alpaca] key_id/secret_key, and paper = true for paper keys"


class PassThroughThrottler:
    """Used when no throttler is given: calls straight through, observes nothing."""

    def call(self, limits: Any, fn: Callable[[], T], *, idempotent: bool, weight: int = 1) -> T:
        return fn()

    def observe(self, limit: str, status: int, headers: Any) -> None:
        return None


def trading_origin(settings: AlpacaSettings) -> str:
    """The REST origin alpaca-py needs: scheme + host[:port], no ``/v2``, no trailing slash."""
    url = settings.base_url.strip().rstrip("/")
    url = url.removesuffix("/v2")
    return url or (PAPER_URL if settings.paper else LIVE_URL)


def stream_endpoint(settings: AlpacaSettings) -> str:
    """The ``trade_updates`` websocket URL (configured, else paper or live)."""
    if settings.stream_url.strip():
        return settings.stream_url.strip()
    return ("wss://paper-api" if settings.paper else "wss://api") + ".alpaca.markets/stream"


def data_origin(settings: AlpacaSettings) -> str:
    return settings.data_url.strip().rstrip("/").removesuffix("/v2") or DATA_URL


def timeframe_text(timeframe: str | timedelta) -> str:
    """Alpaca's timeframe string (``1Min``, ``15Min``, ``1Hour``, ``1Day``) for a bar length."""
    if isinstance(timeframe, str):
        return timeframe
    secs = int(timeframe.total_seconds())
    if secs <= 0 or secs % 60:
        raise ValueError(f"bar length {timeframe} is not a whole number of minutes")
    if secs % 86400 == 0 and secs // 86400 in (1, 7):
        return "1Day" if secs == 86400 else "1Week"
    if secs % 3600 == 0 and secs // 3600 < 24:
        return f"{secs // 3600}Hour"
    if secs // 60 < 60:
        return f"{secs // 60}Min"
    raise ValueError(f"bar length {timeframe} has no Alpaca timeframe")


def _iso(value: datetime) -> str:
    return wire_parse.as_utc(value).isoformat()


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def map_http_error(status: int | None, text: str, headers: Any = None) -> BrokerCallError:
    """The typed error for an HTTP error answer, keeping Alpaca's code, message and body."""
    headers = headers or {}
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        parsed = {}
    body = parsed if isinstance(parsed, dict) else {}
    code = body.get("code") if isinstance(body.get("code"), int) else None
    message = str(body.get("message") or text.strip()[:200] or f"HTTP {status}")
    kw: dict[str, Any] = {"status": status, "code": code, "body": body}
    if status == 401:
        return AuthFailed(message, _KEY_HINT, **kw)
    if status == 403:
        if code == 40310000:
            return InsufficientFunds(message, "reduce the order or free buying power", **kw)
        if code is None:
            return AuthFailed(message, _KEY_HINT, **kw)
        return OrderRejected(message, **kw)
    if status == 404:
        return NotFound(message, **kw)
    if status == 429:
        retry_after = None
        try:
            retry_after = float(headers.get("Retry-After")) if headers.get("Retry-After") else None
        except (TypeError, ValueError):
            retry_after = None
        return RateLimited(
            message,
            reset_at=_epoch(headers.get("X-Ratelimit-Reset")),
            retry_after=retry_after,
            **kw,
        )
    if status is None or status >= 500:
        return BrokerUnavailable(message, "the broker had a problem; retry later", **kw)
    if status == 422 and DuplicateClientOrderId.MESSAGE in message.lower():
        # Alpaca's code for it (40010001) is its generic "invalid": only the text tells.
        return DuplicateClientOrderId(message, **kw)
    return OrderRejected(message, **kw)


def intent_to_wire(intent: OrderIntent) -> dict[str, Any]:
    """The POST /v2/orders body: decimal strings, only the fields that apply.

    An advanced order carries ``order_class`` and its legs as alpaca-py's ``TakeProfitRequest``
    and ``StopLossRequest`` shape them: ``take_profit {limit_price}``, ``stop_loss {stop_price,
    limit_price}``."""
    body: dict[str, Any] = {
        "symbol": intent.symbol,
        "side": intent.side.value,
        "type": intent.type.value,
        "time_in_force": intent.time_in_force.value,
    }
    if intent.qty is not None:
        body["qty"] = wire_format.num(intent.qty)
    if intent.notional is not None:
        body["notional"] = wire_format.num(intent.notional)
    for name in ("limit_price", "stop_price", "trail_price", "trail_percent"):
        value = getattr(intent, name)
        if value is not None:
            body[name] = wire_format.num(value)
    if intent.extended_hours:
        body["extended_hours"] = True
    if intent.client_order_id:
        body["client_order_id"] = intent.client_order_id
    if intent.order_class is not OrderClass.SIMPLE:
        body["order_class"] = intent.order_class.value
        if intent.take_profit_limit_price is not None:
            body["take_profit"] = {"limit_price": wire_format.num(intent.take_profit_limit_price)}
        if intent.stop_loss_stop_price is not None:
            stop_loss = {"stop_price": wire_format.num(intent.stop_loss_stop_price)}
            if intent.stop_loss_limit_price is not None:
                stop_loss["limit_price"] = wire_format.num(intent.stop_loss_limit_price)
            body["stop_loss"] = stop_loss
    return body


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class AlpacaBroker:
    """The Broker protocol over Alpaca's REST API (or `mqd sim serve`)."""

    name = "alpaca"

    def __init__(self, settings: AlpacaSettings, *, throttler: Any = None):
        key, secret = settings.key_id.reveal(), settings.secret_key.reveal()
        if not key or not secret:
            raise AuthFailed(
                "Alpaca API keys are not set",
                "export APCA_API_KEY_ID and APCA_API_SECRET_KEY, or set [alpaca] keys",
            )
        from alpaca.trading.client import TradingClient

        self.settings = settings
        self.throttler = throttler if throttler is not None else PassThroughThrottler()
        self.timeout = settings.timeout.total_seconds()
        self.base_url = trading_origin(settings)
        self.data_url = data_origin(settings)
        self.stream_url = stream_endpoint(settings)
        self._client = TradingClient(
            key, secret, paper=settings.paper, raw_data=True, url_override=self.base_url
        )
        # alpaca-py retries 429/504 itself (3 x 3 s, order submits included): off.
        self._client._retry = 0
        self._client._retry_wait = 0
        self._client._retry_codes = []
        self._install_session_hooks(self._client._session, TRADING_LIMIT)
        self._auth_headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}
        self._http: Any = None  # httpx client for the data API, built on first use

    def _install_session_hooks(self, session: Any, limit: str) -> None:
        original = session.request
        timeout = self.timeout

        def request_with_timeout(method: str, url: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout)
            return original(method, url, **kwargs)

        def observe(response: Any, *args: Any, **kwargs: Any) -> None:
            # A 429 reaches the throttler as RateLimited through call(); observe the rest.
            if response.status_code != 429:
                self.throttler.observe(limit, response.status_code, response.headers)

        session.request = request_with_timeout
        session.hooks["response"].append(observe)

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any], *, idempotent: bool = True) -> Any:
        return self.throttler.call(TRADING_LIMIT, lambda: self._attempt(fn), idempotent=idempotent)

    def _attempt(self, fn: Callable[[], Any]) -> Any:
        import requests
        from alpaca.common.exceptions import APIError

        try:
            return fn()
        except APIError as exc:
            response = exc.response
            headers = response.headers if response is not None else {}
            raise map_http_error(exc.status_code, str(exc), headers) from None
        except requests.Timeout:
            raise BrokerUnavailable(
                f"Alpaca did not answer within {self.timeout:g}s ({self.base_url})",
                "the outcome is unknown; check the order by client_order_id",
            ) from None
        except requests.RequestException as exc:
            raise BrokerUnavailable(
                f"cannot reach Alpaca at {self.base_url}: {type(exc).__name__}",
                "check the network and [alpaca] base_url",
            ) from None
        except ValueError as exc:  # alpaca-py's client-side checks, or a non-JSON 2xx body
            raise BrokerUnavailable(f"unusable answer from Alpaca: {exc}") from None

    def _parse(self, parse: Callable[[Any], T], payload: Any) -> T:
        try:
            return parse(payload)
        except wire_parse.PayloadError as exc:
            raise BrokerUnavailable(f"unexpected payload from Alpaca: {exc}") from None

    # -- account and positions --------------------------------------------------------------

    def get_account(self) -> AccountReport:
        return self._parse(wire_parse.parse_account, self._call(self._client.get_account))

    def list_positions(self) -> list[PositionReport]:
        rows = self._call(self._client.get_all_positions) or []
        return [self._parse(wire_parse.parse_position, row) for row in rows]

    def get_position(self, symbol: str) -> PositionReport:
        row = self._call(lambda: self._client.get_open_position(symbol))
        return self._parse(wire_parse.parse_position, row)

    # -- orders -----------------------------------------------------------------------------

    def list_orders(
        self,
        status: str = "open",
        *,
        after: datetime | None = None,
        until: datetime | None = None,
        symbols: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[OrderReport]:
        """Newest first. Pages by moving ``until`` to the oldest ``submitted_at`` seen."""
        seen: dict[str, OrderReport] = {}
        cursor = until
        while True:
            params: dict[str, Any] = {
                "status": status,
                "limit": PAGE_LIMIT,
                "direction": "desc",
                "nested": "false",
            }
            if after is not None:
                params["after"] = _iso(after)
            if cursor is not None:
                params["until"] = _iso(cursor)
            if symbols:
                params["symbols"] = ",".join(symbols)
            rows = self._call(functools.partial(self._client.get, "/orders", params)) or []
            page = [self._parse(wire_parse.parse_order, row) for row in rows]
            new = [o for o in page if o.id not in seen]
            for order in new:
                seen[order.id] = order
            if len(page) < PAGE_LIMIT or not new or (limit is not None and len(seen) >= limit):
                break
            oldest = min(o.submitted_at or o.created_at for o in page)
            # `until` is exclusive: step just past the oldest so orders sharing its timestamp
            # on the next page are not skipped (duplicates are dropped by id).
            cursor = oldest + timedelta(microseconds=1)
        orders = sorted(
            seen.values(), key=lambda o: (o.submitted_at or o.created_at, o.id), reverse=True
        )
        return orders if limit is None else orders[:limit]

    def get_order(self, order_id: str) -> OrderReport:
        if not _is_uuid(order_id):
            raise NotFound(f"order not found: {order_id!r} is not an order id", status=None)
        # nested: a bracket, oco or oto order comes with its legs
        row = self._call(
            functools.partial(self._client.get, f"/orders/{order_id}", {"nested": "true"})
        )
        return self._parse(wire_parse.parse_order, row)

    def get_order_by_client_id(self, client_order_id: str) -> OrderReport:
        row = self._call(lambda: self._client.get_order_by_client_id(client_order_id))
        return self._parse(wire_parse.parse_order, row)

    def submit_order(self, intent: OrderIntent) -> OrderReport:
        """Submit once; after an ambiguous failure, look the order up instead of resubmitting."""
        if not intent.client_order_id:
            raise OrderRejected(
                "order has no client_order_id", "the order tracker must assign one first"
            )
        body = intent_to_wire(intent)
        try:
            row = self._call(lambda: self._client.post("/orders", body), idempotent=False)
        except BrokerUnavailable as exc:
            try:
                return self.get_order_by_client_id(intent.client_order_id)
            except NotFound:
                raise BrokerUnavailable(
                    f"order {intent.client_order_id} was not accepted: {exc.message}",
                    "the broker has no such order; it is safe to submit it again",
                    status=exc.status,
                    code=exc.code,
                    body=exc.body,
                ) from None
            except BrokerCallError:
                raise BrokerUnavailable(
                    f"order {intent.client_order_id}: outcome unknown ({exc.message})",
                    "look it up with its client_order_id before submitting again",
                    status=exc.status,
                    code=exc.code,
                    body=exc.body,
                ) from None
        return self._parse(wire_parse.parse_order, row)

    def cancel_order(self, order_id: str) -> None:
        if not _is_uuid(order_id):
            raise NotFound(f"order not found: {order_id!r} is not an order id", status=None)
        self._call(lambda: self._client.delete(f"/orders/{order_id}"))

    def cancel_all_orders(self) -> list[CancelResult]:
        rows = self._call(self._client.cancel_orders) or []
        out = []
        for row in rows:
            if not isinstance(row, dict) or "id" not in row:
                raise BrokerUnavailable(f"unexpected cancel-all row from Alpaca: {row!r}")
            body = row.get("body")
            order = (
                self._parse(wire_parse.parse_order, body)
                if isinstance(body, dict) and body.get("id")
                else None
            )
            out.append(CancelResult(str(row["id"]), int(row.get("status") or 0), order))
        return out

    def replace_order(
        self,
        order_id: str,
        *,
        qty: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        trail: Decimal | None = None,
        time_in_force: TimeInForce | None = None,
        client_order_id: str | None = None,
    ) -> OrderReport:
        if not _is_uuid(order_id):
            raise NotFound(f"order not found: {order_id!r} is not an order id", status=None)
        body: dict[str, Any] = {}
        for name, value in (
            ("qty", qty),
            ("limit_price", limit_price),
            ("stop_price", stop_price),
            ("trail", trail),
        ):
            if value is not None:
                body[name] = wire_format.num(value)
        if time_in_force is not None:
            body["time_in_force"] = time_in_force.value
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        # A replace creates a new order: not retried blindly either.
        row = self._call(lambda: self._client.patch(f"/orders/{order_id}", body), idempotent=False)
        return self._parse(wire_parse.parse_order, row)

    # -- assets, clock, calendar ------------------------------------------------------------

    def list_assets(
        self, asset_class: str | None = None, status: str | None = None
    ) -> list[AssetInfo]:
        """The assets of ``asset_class``; ``None`` sends no class, and Alpaca then answers with
        every class it lists (its reference names us_equity as the default, the live service
        serves crypto and crypto_perp too: alpaca-py#624). ``symbols.sync`` asks by name for a
        traded class the answer lacks."""
        params = {"asset_class": asset_class} if asset_class else {}
        if status:
            params["status"] = status
        rows = self._call(functools.partial(self._client.get, "/assets", params)) or []
        return [self._parse(wire_parse.parse_asset, row) for row in rows]

    def get_asset(self, symbol: str) -> AssetInfo:
        return self._parse(
            wire_parse.parse_asset, self._call(lambda: self._client.get_asset(symbol))
        )

    def get_clock(self) -> ClockReport:
        return self._parse(wire_parse.parse_clock, self._call(self._client.get_clock))

    def fill_activities(self, after: datetime) -> list[FillActivity]:
        """``FILL`` account activities after ``after``, oldest first (paged by token).

        Each carries its execution's exact quantity and price and the order's cumulative
        quantity after it: the gap fill uses them to split what it recovers into executions.
        """
        out: dict[str, FillActivity] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "after": _iso(after),
                "direction": "asc",
                "page_size": ACTIVITY_PAGE,
            }
            if token is not None:
                params["page_token"] = token
            rows = self._call(
                functools.partial(self._client.get, "/account/activities/FILL", params)
            )
            page = [self._parse(wire_parse.parse_fill_activity, row) for row in rows or []]
            fresh = [a for a in page if a.id not in out]
            for activity in fresh:
                out[activity.id] = activity
            if len(page) < ACTIVITY_PAGE or not fresh:
                break
            token = page[-1].id
        return sorted(out.values(), key=lambda a: (a.transaction_time, a.cum_qty))

    def get_calendar(self, start: date, end: date) -> list[CalendarDay]:
        params = {"start": start.isoformat(), "end": end.isoformat()}
        rows = self._call(lambda: self._client.get("/calendar", params)) or []
        return [self._parse(wire_parse.parse_calendar_day, row) for row in rows]

    # -- market data ------------------------------------------------------------------------

    def get_bars(
        self,
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        timeframe: str | timedelta = "1Min",
        *,
        limit: int | None = None,
    ) -> dict[str, list[Bar]]:
        """Historical bars per symbol (oldest first) from the data API, following
        ``next_page_token``. Unknown symbols get an empty list."""
        out: dict[str, list[Bar]] = {s: [] for s in symbols}
        if not symbols:
            return out
        params: dict[str, Any] = {
            "symbols": ",".join(symbols),
            "timeframe": timeframe_text(timeframe),
            "start": _iso(start),
            "end": _iso(end),
            "limit": BARS_PAGE_LIMIT,
            "feed": self.settings.data_feed,
            "sort": "asc",
        }
        total = 0
        while True:
            doc = self.throttler.call(
                DATA_LIMIT,
                functools.partial(self._data_get, "/v2/stocks/bars", dict(params)),
                idempotent=True,
            )
            bars = doc.get("bars") if isinstance(doc, dict) else None
            if not isinstance(bars, dict):
                raise BrokerUnavailable(f"unexpected bars payload from {self.data_url}")
            for symbol, rows in bars.items():
                if not isinstance(rows, list):
                    raise BrokerUnavailable(f"unexpected bars payload for {symbol}")
                parsed = [
                    self._parse(functools.partial(wire_parse.parse_bar, symbol), r) for r in rows
                ]
                out.setdefault(symbol, []).extend(parsed)
                total += len(parsed)
            token = doc.get("next_page_token")
            if not token or (limit is not None and total >= limit):
                break
            params["page_token"] = token
        return out

    def _data_get(self, path: str, params: dict[str, Any]) -> Any:
        import httpx

        if self._http is None:
            self._http = httpx.Client(
                base_url=self.data_url, headers=self._auth_headers, timeout=self.timeout
            )
        try:
            response = self._http.get(path, params=params)
        except httpx.TimeoutException:
            raise BrokerUnavailable(
                f"the data API did not answer within {self.timeout:g}s ({self.data_url})"
            ) from None
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(
                f"cannot reach the data API at {self.data_url}: {type(exc).__name__}",
                "check the network and [alpaca] data_url",
            ) from None
        if response.status_code != 429:
            self.throttler.observe(DATA_LIMIT, response.status_code, response.headers)
        if response.status_code >= 400:
            raise map_http_error(response.status_code, response.text, response.headers)
        try:
            return response.json()
        except ValueError:
            raise BrokerUnavailable(f"non-JSON answer from {self.data_url}{path}") from None

    def close(self) -> None:
        self._client._session.close()
        if self._http is not None:
            self._http.close()
            self._http = None
