"""The real, unmodified alpaca-py TradingClient and TradingStream against the emulator.

Models are parsed (``raw_data=False``) on purpose: that is alpaca-py's strictest path.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

pytest.importorskip("alpaca")

from alpaca.common.exceptions import APIError  # noqa: E402
from alpaca.trading.client import TradingClient  # noqa: E402
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce  # noqa: E402
from alpaca.trading.requests import (  # noqa: E402
    GetAssetsRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
)
from alpaca.trading.stream import TradingStream  # noqa: E402


@pytest.fixture
def srv(emulator):
    return emulator()


@pytest.fixture
def client(srv):
    c = TradingClient(srv.key_id, srv.secret_key, paper=True, url_override=srv.base_url)
    c._retry = 0  # its default retry sleeps 3 s per 429/504
    return c


def limit(price="1.00", qty=1, **kw):
    return LimitOrderRequest(
        symbol="AAPL",
        qty=qty,
        side=OrderSide.BUY,
        time_in_force=TimeInForce.DAY,
        limit_price=float(price),
        client_order_id=f"py-{uuid.uuid4()}",
        **kw,
    )


def test_account_clock_calendar_and_assets_parse_into_alpaca_models(client):
    assert client.get_account().status.value == "ACTIVE"
    clock = client.get_clock()
    assert clock.next_close > clock.timestamp
    days = client.get_calendar(GetCalendarRequest(start="2026-01-05", end="2026-01-06"))
    assert [d.date.isoformat() for d in days] == ["2026-01-05", "2026-01-06"]
    assets = client.get_all_assets(GetAssetsRequest(status="active"))
    assert any(a.symbol == "AAPL" for a in assets)
    assert client.get_asset("AAPL").fractionable in (True, False)


def test_submit_fill_position_and_list(client, srv):
    order = client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    srv.advance(60)
    filled = client.get_order_by_id(order.id)
    assert filled.status is OrderStatus.FILLED and float(filled.filled_qty) == 3
    assert client.get_order_by_client_id(order.client_order_id).id == order.id
    positions = client.get_all_positions()
    assert [(p.symbol, p.qty) for p in positions] == [("AAPL", "3")]
    assert client.get_open_position("AAPL").side.value == "long"
    listed = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True))
    assert order.id in {o.id for o in listed}


def test_cancel_replace_and_cancel_all(client):
    resting = client.submit_order(limit("1.00"))
    new = client.replace_order_by_id(resting.id, ReplaceOrderRequest(limit_price=1.02, qty=2))
    assert new.replaces == resting.id
    assert client.get_order_by_id(resting.id).status is OrderStatus.REPLACED
    assert client.cancel_order_by_id(new.id) is None
    assert client.get_order_by_id(new.id).status is OrderStatus.CANCELED
    client.submit_order(limit("1.00"))
    results = client.cancel_orders()
    assert results and all(r.status == 200 for r in results)


def test_errors_carry_status_code_and_message(client):
    with pytest.raises(APIError) as info:
        client.submit_order(limit("1.005"))
    assert info.value.status_code == 422
    assert info.value.code == 42210000
    assert "sub-penny increment" in info.value.message
    with pytest.raises(APIError) as info:
        client.get_order_by_id(uuid.uuid4())
    assert (info.value.status_code, info.value.code) == (404, 40410000)
    with pytest.raises(APIError) as info:
        client.get_open_position("MSFT")
    assert info.value.message == "position does not exist"
    with pytest.raises(APIError) as info:
        client.submit_order(limit("100", qty=10_000_000))
    assert (info.value.status_code, info.value.code) == (403, 40310000)
    twice = limit("1.00")
    client.submit_order(twice)
    with pytest.raises(APIError) as info:
        client.submit_order(twice)
    assert (info.value.status_code, info.value.code) == (422, 40010001)
    client.cancel_orders()


def test_rate_limit_answer_is_an_api_error_with_headers(emulator):
    srv = emulator(rate_limit=1)
    c = TradingClient(srv.key_id, srv.secret_key, url_override=srv.base_url)
    c._retry = 0
    c.get_clock()
    with pytest.raises(APIError) as info:
        c.get_clock()
    assert (info.value.status_code, info.value.code) == (429, 42910000)
    assert int(info.value.response.headers["X-Ratelimit-Reset"]) > 0


def test_wrong_keys_are_401(srv):
    c = TradingClient("wrong", "keys", url_override=srv.base_url)
    with pytest.raises(APIError) as info:
        c.get_account()
    assert (info.value.status_code, info.value.code) == (401, 40110000)


def test_trading_stream_handshake_and_events(client, srv):
    updates = []
    stream = TradingStream(srv.key_id, srv.secret_key, url_override=srv.stream_url)

    async def on_update(update):
        updates.append(update)

    stream.subscribe_trade_updates(on_update)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while srv.state()["stream_connections"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # auth + listen
        order = client.submit_order(
            MarketOrderRequest(
                symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )
        while len(updates) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stream.stop()
        thread.join(5)
    assert [u.event for u in updates[:3]] == ["pending_new", "new", "fill"]
    fill = updates[2]
    assert fill.order.id == order.id and fill.qty == 2 and fill.position_qty == 2
    assert fill.execution_id is not None and fill.timestamp is not None
