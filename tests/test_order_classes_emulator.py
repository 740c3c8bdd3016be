"""Bracket, oco and oto orders through `mqd sim serve` with the real, unmodified alpaca-py
``TradingClient`` (models parsed: its strictest path), mqd's ``AlpacaBroker``, and the
trade_updates stream.

The emulator's time stands still (``speed=0``) so the price the legs are set around does not
move while a test runs; fills are whole (no random partial fills).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import pytest

pytest.importorskip("alpaca")

from alpaca.common.exceptions import APIError  # noqa: E402
from alpaca.trading.client import TradingClient  # noqa: E402
from alpaca.trading.enums import (  # noqa: E402
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import TradeUpdate  # noqa: E402
from alpaca.trading.requests import (  # noqa: E402
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)
from websockets.sync.client import connect  # noqa: E402

from mqd_cli.brokers.alpaca import AlpacaBroker, intent_to_wire  # noqa: E402
from mqd_cli.config.settings import SimSettings  # noqa: E402
from mqd_cli.model import OrderClass as MqdOrderClass  # noqa: E402
from mqd_cli.model import OrderIntent, Side  # noqa: E402
from mqd_cli.model import OrderStatus as MqdStatus  # noqa: E402
from mqd_cli.model import OrderType as MqdType  # noqa: E402
from mqd_cli.model import TimeInForce as MqdTif  # noqa: E402

D = Decimal


@pytest.fixture
def srv(emulator):
    return emulator(speed=0.0, sim=SimSettings(partial_fill_probability=0.0))


@pytest.fixture
def client(srv):
    c = TradingClient(srv.key_id, srv.secret_key, paper=True, url_override=srv.base_url)
    c._retry = 0  # its default retry sleeps 3 s per 429/504
    return c


def price(srv) -> float:
    return float(srv.emulator.broker.last_price("AAPL"))


def cents(x: float) -> float:
    return round(x, 2)


def buy_bracket(srv, client, **kw):
    p = price(srv)
    return client.submit_order(
        MarketOrderRequest(
            symbol="AAPL",
            qty=10,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=cents(p * 1.10)),
            stop_loss=StopLossRequest(stop_price=cents(p * 0.90), limit_price=cents(p * 0.89)),
            client_order_id=f"br-{uuid.uuid4()}",
            **kw,
        )
    )


def by_type(legs):
    return {leg.type: leg for leg in legs}


def test_a_bracket_submitted_with_alpaca_py_comes_back_with_held_legs(srv, client):
    order = buy_bracket(srv, client)
    assert order.order_class is OrderClass.BRACKET and order.status is OrderStatus.NEW
    legs = by_type(order.legs)
    tp, sl = legs[OrderType.LIMIT], legs[OrderType.STOP_LIMIT]
    assert tp.status is sl.status is OrderStatus.HELD
    assert tp.side is sl.side is OrderSide.SELL and tp.qty == sl.qty == "10"
    assert tp.order_class is sl.order_class is OrderClass.BRACKET
    assert tp.client_order_id != sl.client_order_id and tp.legs is None


def test_get_orders_nests_legs_under_the_parent_only_when_asked(srv, client):
    order = buy_bracket(srv, client)  # the market entry fills at once: the legs work
    nested = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True))
    assert [o.id for o in nested] == [order.id]
    legs = by_type(nested[0].legs)
    assert nested[0].status is OrderStatus.FILLED
    assert legs[OrderType.LIMIT].status is OrderStatus.NEW
    assert legs[OrderType.STOP_LIMIT].status is OrderStatus.HELD
    flat = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert {o.id for o in flat} == {order.id, *(leg.id for leg in order.legs)}
    assert all(o.legs is None for o in flat)
    open_flat = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert {o.id for o in open_flat} == {leg.id for leg in order.legs}
    one = client.get_order_by_id(order.id, GetOrderByIdRequest(nested=True))
    assert len(one.legs) == 2
    assert client.get_order_by_id(order.id).legs is None


def test_replacing_the_take_profit_leg_with_alpaca_py_closes_the_position_and_cancels_the_stop(
    srv, client
):
    order = buy_bracket(srv, client)
    legs = by_type(order.legs)
    tp, sl = legs[OrderType.LIMIT], legs[OrderType.STOP_LIMIT]
    new = client.replace_order_by_id(
        tp.id, ReplaceOrderRequest(limit_price=cents(price(srv) * 0.99))
    )
    assert new.replaces == tp.id and new.order_class is OrderClass.BRACKET
    assert client.get_order_by_id(new.id).status is OrderStatus.FILLED
    assert client.get_order_by_id(sl.id).status is OrderStatus.CANCELED
    assert client.get_order_by_id(tp.id).status is OrderStatus.REPLACED
    assert client.get_all_positions() == []


def test_moving_the_stop_leg_with_alpaca_py_keeps_it_held(srv, client):
    order = buy_bracket(srv, client)
    sl = by_type(order.legs)[OrderType.STOP_LIMIT]
    p = price(srv)
    new = client.replace_order_by_id(
        sl.id, ReplaceOrderRequest(stop_price=cents(p * 0.95), limit_price=cents(p * 0.94))
    )
    assert new.status is OrderStatus.HELD and float(new.stop_price) == cents(p * 0.95)
    one = client.get_order_by_id(order.id, GetOrderByIdRequest(nested=True))
    assert new.id in {leg.id for leg in one.legs} and sl.id not in {leg.id for leg in one.legs}


def test_an_oco_without_limit_price_closes_a_position_with_a_working_limit_and_a_held_stop(
    srv, client
):
    client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    p = price(srv)
    oco = client.submit_order(
        LimitOrderRequest(
            symbol="AAPL",
            qty=5,
            side=OrderSide.SELL,
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=cents(p * 1.05)),
            stop_loss=StopLossRequest(stop_price=cents(p * 0.95)),
        )
    )
    assert oco.order_class is OrderClass.OCO and oco.type is OrderType.LIMIT
    assert float(oco.limit_price) == cents(p * 1.05) and oco.status is OrderStatus.NEW
    (stop,) = oco.legs
    assert (stop.type, stop.status, stop.side) == (OrderType.STOP, OrderStatus.HELD, OrderSide.SELL)
    assert client.get_open_position("AAPL").qty_available == "0"


def test_an_oto_with_only_a_stop_loss_gets_a_working_stop_after_the_entry(srv, client):
    order = client.submit_order(
        MarketOrderRequest(
            symbol="AAPL",
            qty=3,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.DAY,
            order_class=OrderClass.OTO,
            stop_loss=StopLossRequest(stop_price=cents(price(srv) * 0.9)),
        )
    )
    (stop,) = order.legs
    assert stop.type is OrderType.STOP
    assert client.get_order_by_id(stop.id).status is OrderStatus.NEW


def test_alpacas_refusal_of_a_leg_on_the_wrong_side_reaches_alpaca_py_as_a_422(srv, client):
    p = price(srv)
    with pytest.raises(APIError) as err:
        client.submit_order(
            MarketOrderRequest(
                symbol="AAPL",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                order_class=OrderClass.BRACKET,
                take_profit=TakeProfitRequest(limit_price=cents(p * 1.1)),
                stop_loss=StopLossRequest(stop_price=cents(p * 1.01)),
            )
        )
    assert err.value.status_code == 422 and err.value.code == 42210000
    assert err.value.message == "stop_loss.stop_price must be <= base_price - 0.01"
    assert json.loads(str(err.value))["base_price"] == str(D(str(p)).normalize())


def test_a_malformed_take_profit_object_is_a_422(srv):
    body = {
        "symbol": "AAPL",
        "qty": "1",
        "side": "buy",
        "type": "market",
        "time_in_force": "gtc",
        "order_class": "bracket",
        "take_profit": "110",
        "stop_loss": {"stop_price": "90"},
    }
    r = httpx.post(srv.base_url + "/v2/orders", json=body, headers=srv.headers, timeout=10)
    assert r.status_code == 422 and r.json()["message"] == "invalid take_profit"


# -- the stream -----------------------------------------------------------------------------------


def stream_events(ws, n, timeout=5.0):
    out = []
    while len(out) < n:
        message = json.loads(ws.recv(timeout=timeout))
        if message["stream"] == "trade_updates":
            out.append(message["data"])
    return out


def test_each_leg_sends_its_own_trade_updates_and_the_parents_carry_their_legs(srv, client):
    with connect(srv.stream_url) as ws:
        ws.send(json.dumps({"action": "auth", "key": srv.key_id, "secret": srv.secret_key}))
        ws.recv(timeout=5)
        ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        ws.recv(timeout=5)
        order = buy_bracket(srv, client)
        tp = by_type(order.legs)[OrderType.LIMIT]
        sl = by_type(order.legs)[OrderType.STOP_LIMIT]
        new = client.replace_order_by_id(
            tp.id, ReplaceOrderRequest(limit_price=cents(price(srv) * 0.99))
        )
        got = stream_events(ws, 9)
    seen = [(e["order"]["id"], e["event"]) for e in got]
    assert seen == [
        (str(order.id), "pending_new"),
        (str(order.id), "new"),
        (str(order.id), "fill"),
        (str(tp.id), "new"),
        (str(tp.id), "pending_replace"),
        (str(tp.id), "replaced"),
        (str(new.id), "new"),
        (str(new.id), "fill"),
        (str(sl.id), "canceled"),
    ]
    for e in got:
        TradeUpdate(**e)  # alpaca-py parses every one
        assert e["order"]["order_class"] == "bracket"
        if e["order"]["id"] == str(order.id):
            assert {leg["id"] for leg in e["order"]["legs"]} == {str(tp.id), str(sl.id)}
        else:
            assert e["order"]["legs"] is None
    fill = got[7]
    assert fill["qty"] == "10" and fill["position_qty"] == "0" and fill["execution_id"]


# -- mqd's adapter --------------------------------------------------------------------------------


def mqd_bracket(p: Decimal, **kw) -> OrderIntent:
    return OrderIntent(
        symbol="AAPL",
        side=Side.BUY,
        qty=D(4),
        time_in_force=MqdTif.GTC,
        order_class=MqdOrderClass.BRACKET,
        take_profit_limit_price=(p * D("1.1")).quantize(D("0.01")),
        stop_loss_stop_price=(p * D("0.9")).quantize(D("0.01")),
        client_order_id=f"mqd-{uuid.uuid4().hex[:12]}",
        **kw,
    )


def test_the_adapter_sends_the_legs_as_alpaca_py_shapes_them():
    ours = intent_to_wire(
        OrderIntent(
            symbol="AAPL",
            side=Side.SELL,
            qty=D(5),
            type=MqdType.LIMIT,
            time_in_force=MqdTif.GTC,
            order_class=MqdOrderClass.OCO,
            take_profit_limit_price=D("105.5"),
            stop_loss_stop_price=D("95"),
            stop_loss_limit_price=D("94.5"),
        )
    )
    theirs = LimitOrderRequest(
        symbol="AAPL",
        qty=5,
        side=OrderSide.SELL,
        time_in_force=TimeInForce.GTC,
        order_class=OrderClass.OCO,
        take_profit=TakeProfitRequest(limit_price=105.5),
        stop_loss=StopLossRequest(stop_price=95, limit_price=94.5),
    ).to_request_fields()

    def numbers(v):  # alpaca-py sends floats, mqd decimal strings: compare the numbers
        if isinstance(v, dict):
            return {k: numbers(x) for k, x in v.items()}
        try:
            return D(str(v))
        except ArithmeticError:
            return v

    assert numbers(ours) == numbers(theirs)


def test_the_adapter_submits_a_bracket_and_reads_its_legs(srv):
    broker = AlpacaBroker(srv.alpaca_settings())
    try:
        p = D(str(price(srv)))
        order = broker.submit_order(mqd_bracket(p))
        assert order.order_class is MqdOrderClass.BRACKET and len(order.legs) == 2
        again = broker.get_order(order.id)
        assert {leg.status for leg in again.legs} == {MqdStatus.NEW, MqdStatus.HELD}
        listed = broker.list_orders("open")
        assert {o.id for o in listed} == {leg.id for leg in order.legs}
        assert all(o.order_class is MqdOrderClass.BRACKET for o in listed)
    finally:
        broker.close()
