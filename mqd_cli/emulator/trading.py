"""The emulator's ``/v2`` trading routes: account, orders, positions, assets, clock, calendar.

Each handler parses the request the way Alpaca does, asks the ``SimBroker`` and answers with
Alpaca's wire format; ``Emulator._rest`` wraps them with keys, rate limits and faults.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mqd_cli.brokers.errors import BrokerCallError, NotFound
from mqd_cli.emulator.http import (
    Reply,
    broker_error_body,
    invalid,
    json_response,
    read_json_body,
)
from mqd_cli.emulator.params import (
    is_uuid,
    parse_bool,
    parse_choice,
    parse_decimal,
    parse_int,
    parse_list,
    parse_time,
)
from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.model import (
    AssetClass,
    OrderClass,
    OrderIntent,
    OrderReport,
    OrderType,
    Side,
    TimeInForce,
)
from mqd_cli.symbols.spelling import position_symbol
from mqd_cli.wire import format as wire_format

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.clock import BacktestClock


class TradingRoutes:
    """The trading handlers of ``Emulator`` (a part of it: they use its broker and clock)."""

    broker: SimBroker
    clock: BacktestClock

    def _forget_assets(self) -> None:
        """Drop the answers cached from the broker's asset list (a new market has new ones) and
        serialize the unfiltered list of each class anew.

        Those lists are what a sync asks for; built here, a first ``/v2/assets`` answers from
        bytes like any later one (35,000 assets take ~0.5 s to build), as a real broker does.
        """
        self._assets_cache: dict[tuple, bytes] = {}
        self._asset_ids: dict[str, str] | None = None
        for asset_class in (AssetClass.US_EQUITY.value, AssetClass.CRYPTO.value):
            self._assets_body(asset_class, None, None, set())

    # -- trading endpoints --------------------------------------------------------------------

    async def get_account(self, request: Any) -> Any:
        return json_response(
            wire_format.account_to_wire(self.broker.get_account(), self.broker.created_at)
        )

    async def post_order(self, request: Any) -> Any:
        body = await read_json_body(request)
        order_class = parse_choice(body.get("order_class"), "order_class", OrderClass)
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
        # Alpaca ignores take_profit and stop_loss on a simple order.
        legs = _leg_prices(body) if order_class not in (None, OrderClass.SIMPLE) else {}
        if (
            order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
            and prices["limit_price"] is None
            and order_class is not OrderClass.OCO  # its limit is take_profit.limit_price
        ):
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
            limit_price=prices["limit_price"],
            stop_price=prices["stop_price"],
            trail_price=prices["trail_price"],
            trail_percent=prices["trail_percent"],
            order_class=order_class or OrderClass.SIMPLE,
            take_profit_limit_price=legs.get("take_profit_limit_price"),
            stop_loss_stop_price=legs.get("stop_loss_stop_price"),
            stop_loss_limit_price=legs.get("stop_loss_limit_price"),
        )
        return json_response(wire_format.order_to_wire(self.broker.submit_order(intent)))

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
        symbols = parse_list(q.get("symbols"))
        after = parse_time(q.get("after"), "after")
        until = parse_time(q.get("until"), "until")
        orders = self.broker.list_orders(
            status, after=after, until=until, symbols=symbols or None, limit=None, nested=nested
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
        return json_response([wire_format.order_to_wire(o) for o in orders[:limit]])

    def _order_id(self, request: Any) -> str:
        order_id = request.path_params["order_id"]
        if not is_uuid(order_id):
            raise invalid("order_id is missing")
        return order_id

    async def get_order(self, request: Any) -> Any:
        order = self.broker.get_order(self._order_id(request))
        return json_response(_with_legs(order, request))

    async def get_order_by_client_id(self, request: Any) -> Any:
        cid = request.query_params.get("client_order_id")
        if not cid:
            raise invalid("client_order_id is missing")
        return json_response(_with_legs(self.broker.get_order_by_client_id(cid), request))

    async def replace_order(self, request: Any) -> Any:
        order_id = self._order_id(request)
        body = await read_json_body(request)
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
        return json_response(wire_format.order_to_wire(order))

    async def cancel_order(self, request: Any) -> Any:
        from starlette.responses import Response

        self.broker.cancel_order(self._order_id(request))
        return Response(status_code=204)

    async def cancel_all(self, request: Any) -> Any:
        rows = []
        for result in self.broker.cancel_all_orders():
            row: dict[str, Any] = {"id": result.order_id, "status": result.status}
            if result.order is not None:
                row["body"] = wire_format.order_to_wire(result.order)
            rows.append(row)
        return json_response(rows, 207)

    # -- positions ----------------------------------------------------------------------------

    def _symbol_for(self, symbol_or_id: str) -> str:
        if not is_uuid(symbol_or_id):
            return symbol_or_id
        if self._asset_ids is None:
            self._asset_ids = {a.id: a.symbol for a in self.broker.list_assets()}
        return self._asset_ids.get(symbol_or_id, symbol_or_id)

    async def list_positions(self, request: Any) -> Any:
        return json_response(
            [wire_format.position_to_wire(p) for p in self.broker.list_positions()]
        )

    async def get_position(self, request: Any) -> Any:
        symbol = self._symbol_for(request.path_params["symbol"])
        return json_response(wire_format.position_to_wire(self.broker.get_position(symbol)))

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
        return json_response(wire_format.order_to_wire(self._close(symbol, qty, pct)))

    async def close_all_positions(self, request: Any) -> Any:
        if parse_bool(request.query_params.get("cancel_orders"), "cancel_orders"):
            self.broker.cancel_all_orders()
        rows = []
        for position in self.broker.list_positions():
            # Rows name the position as Alpaca does (``BTCUSD``); the order inside says BTC/USD.
            name = position_symbol(position.symbol, position.asset_class)
            try:
                order = self._close(position.symbol)
                rows.append(
                    {
                        "symbol": name,
                        "status": 200,
                        "body": wire_format.order_to_wire(order),
                    }
                )
            except BrokerCallError as exc:
                rows.append(
                    {
                        "symbol": name,
                        "status": exc.status or 500,
                        "body": broker_error_body(exc),
                    }
                )
        return json_response(rows, 207)

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
        return json_response(self._assets_body(asset_class, status, exchange, attributes))

    def _assets_body(
        self, asset_class: str, status: str | None, exchange: str | None, attributes: set[str]
    ) -> bytes:
        """The encoded ``/v2/assets`` answer for these filters, built once per market."""
        key = (asset_class, status, exchange, tuple(sorted(attributes)))
        cached = self._assets_cache.get(key)
        if cached is None:
            assets = self.broker.list_assets(asset_class, status)
            rows = [
                wire_format.asset_to_wire(a)
                for a in assets
                if a.asset_class.value == asset_class
                and (status is None or a.status.value == status)
                and (exchange is None or a.exchange == exchange)
                and (not attributes or attributes & set(a.attributes))
            ]
            cached = self._assets_cache[key] = json.dumps(rows, separators=(",", ":")).encode()
        return cached

    async def get_asset(self, request: Any) -> Any:
        raw = request.path_params["symbol"]
        symbol = self._symbol_for(raw)
        try:
            asset = self.broker.get_asset(symbol)
        except NotFound:
            raise Reply(
                404, wire_format.error_body(40410000, f"asset not found for {raw}")
            ) from None
        return json_response(wire_format.asset_to_wire(asset))

    async def get_clock(self, request: Any) -> Any:
        return json_response(wire_format.clock_to_wire(self.broker.get_clock(), EXCHANGE_TZ))

    async def get_calendar(self, request: Any) -> Any:
        q = request.query_params
        today = self.clock.now().astimezone(EXCHANGE_TZ).date()
        start = parse_time(q.get("start"), "start")
        end = parse_time(q.get("end"), "end")
        first = start.date() if start else today
        last = end.date() if end else first + timedelta(days=365)
        if last < first:
            return json_response([])
        if (last - first).days > 366 * 60:
            raise invalid("calendar range is too long")
        days = self.broker.get_calendar(first, last)
        return json_response([wire_format.calendar_day_to_wire(d) for d in days])


# -- advanced orders ------------------------------------------------------------------------------


def _leg_prices(body: dict[str, Any]) -> dict[str, Decimal | None]:
    """``take_profit`` {limit_price} and ``stop_loss`` {stop_price, limit_price} of a bracket,
    oco or oto order, as ``OrderIntent`` fields; a malformed object is a 422."""
    out: dict[str, Decimal | None] = {}
    for key, fields in (
        ("take_profit", (("limit_price", "take_profit_limit_price"),)),
        (
            "stop_loss",
            (("stop_price", "stop_loss_stop_price"), ("limit_price", "stop_loss_limit_price")),
        ),
    ):
        leg = body.get(key)
        if leg is None:
            continue
        if not isinstance(leg, dict):
            raise invalid(f"invalid {key}")
        for wire, name in fields:
            out[name] = parse_decimal(leg.get(wire), f"{key}.{wire}")
    return out


def _with_legs(order: OrderReport, request: Any) -> dict[str, Any]:
    """One order as ``GET /v2/orders/{id}`` answers: its legs only with ``nested=true``."""
    row = wire_format.order_to_wire(order)
    if not parse_bool(request.query_params.get("nested"), "nested"):
        row["legs"] = None
    return row
