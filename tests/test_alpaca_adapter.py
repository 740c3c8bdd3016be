"""AlpacaBroker (alpaca-py behind the Broker protocol) over loopback against `mqd sim serve`."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli.brokers import alpaca as alpaca_mod
from mqd_cli.brokers.alpaca import AlpacaBroker, intent_to_wire, map_http_error, timeframe_text
from mqd_cli.brokers.base import Broker
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
from mqd_cli.config.fields import Secret
from mqd_cli.config.settings import AlpacaSettings
from mqd_cli.model import OrderIntent, OrderStatus, OrderType, Side, TimeInForce
from tests.contract_broker import CONTRACT, Harness


@pytest.fixture(scope="module")
def shared(emulator_module):
    broker = AlpacaBroker(emulator_module.alpaca_settings())
    yield emulator_module, broker
    broker.close()


@pytest.fixture
def fresh(shared):
    srv, broker = shared
    srv.reset()
    return srv, broker


def intent(tag="a", **kw):
    values = {
        "symbol": "AAPL",
        "side": Side.BUY,
        "qty": Decimal("1"),
        "client_order_id": f"ad-{tag}-{uuid.uuid4().hex[:10]}",
    }
    values.update(kw)
    return OrderIntent(**values)


def resting(tag="r", **kw):
    return intent(
        tag, type=OrderType.LIMIT, limit_price=Decimal("1.00"), time_in_force=TimeInForce.GTC, **kw
    )


class RecordingThrottler:
    def __init__(self):
        self.calls, self.observed = [], []

    def call(self, limits, fn, *, idempotent, weight=1):
        self.calls.append((limits, idempotent))
        return fn()

    def observe(self, limit, status, headers):
        self.observed.append((limit, status, headers.get("X-Ratelimit-Remaining")))


# -- the contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__.removeprefix("check_"))
def test_alpaca_adapter_honours_the_broker_contract_over_loopback(check, fresh):
    srv, broker = fresh
    check(Harness(broker=broker, advance=srv.advance))


def test_adapter_satisfies_the_broker_protocol(shared):
    assert isinstance(shared[1], Broker)


# -- specifics ------------------------------------------------------------------------------------


def test_every_call_goes_through_the_throttler_and_headers_are_observed(emulator_module):
    throttler = RecordingThrottler()
    broker = AlpacaBroker(emulator_module.alpaca_settings(), throttler=throttler)
    broker.get_clock()
    order = broker.submit_order(resting())
    broker.cancel_order(order.id)
    assert throttler.calls == [
        ("alpaca_trading", True),
        ("alpaca_trading", False),
        ("alpaca_trading", True),
    ]
    assert [o[:2] for o in throttler.observed] == [
        ("alpaca_trading", 200),
        ("alpaca_trading", 200),
        ("alpaca_trading", 204),
    ]
    assert all(o[2] is not None for o in throttler.observed)
    broker.close()


def test_list_orders_pages_by_moving_until_and_dedupes(fresh, monkeypatch):
    srv, broker = fresh
    monkeypatch.setattr(alpaca_mod, "PAGE_LIMIT", 3)
    placed = []
    for i in range(8):
        placed.append(broker.submit_order(resting(f"p{i}")).id)
        if i % 3 == 0:
            srv.advance(1)
    listed = broker.list_orders("open")
    assert [o.id for o in listed] == list(reversed(placed))
    assert [o.id for o in broker.list_orders("open", limit=5)] == list(reversed(placed))[:5]
    assert broker.list_orders("closed") == []


def test_list_assets_without_class_sends_no_class_and_takes_what_the_server_defaults_to(shared):
    # The emulator applies Alpaca's documented default (us_equity); the live service answers
    # with every class. symbols.sync asks for crypto by name when it is missing.
    classes = {a.asset_class.value for a in shared[1].list_assets()}
    assert classes == {"us_equity"}
    assert {a.asset_class.value for a in shared[1].list_assets("crypto")} == {"crypto"}


def test_rejections_relay_status_code_message_and_body(fresh):
    _, broker = fresh
    with pytest.raises(OrderRejected) as info:
        broker.submit_order(
            intent(
                type=OrderType.LIMIT, limit_price=Decimal("1.005"), time_in_force=TimeInForce.GTC
            )
        )
    err = info.value
    assert (err.status, err.code) == (422, 42210000)
    assert err.message == (
        "invalid limit_price 1.005. sub-penny increment does not fulfill minimum pricing criteria"
    )
    assert err.body == {"code": 42210000, "message": err.message}
    with pytest.raises(InsufficientFunds) as info:
        broker.submit_order(intent(qty=Decimal("100000000")))
    assert (info.value.status, info.value.code) == (403, 40310000)
    assert "buying_power" in info.value.body
    with pytest.raises(NotFound) as info:
        broker.get_order(str(uuid.uuid4()))
    assert (info.value.status, info.value.code, info.value.message) == (
        404,
        40410000,
        "order not found",
    )
    with pytest.raises(NotFound):
        broker.get_order("not-a-uuid")


def test_wrong_keys_are_auth_failed(emulator_module):
    settings = emulator_module.alpaca_settings(key_id=Secret("wrong"))
    broker = AlpacaBroker(settings)
    with pytest.raises(AuthFailed) as info:
        broker.get_account()
    assert (info.value.status, info.value.code) == (401, 40110000)
    assert info.value.exit_code == 3


def test_missing_keys_fail_before_any_request(emulator_module):
    with pytest.raises(AuthFailed, match="not set"):
        AlpacaBroker(emulator_module.alpaca_settings(key_id=Secret("env:NO_SUCH_VAR_X")))


def test_429_is_rate_limited_with_reset_time_and_no_sdk_retry(emulator):
    srv = emulator(rate_limit=2)
    broker = AlpacaBroker(srv.alpaca_settings())
    broker.get_clock()
    broker.get_clock()
    with pytest.raises(RateLimited) as info:
        broker.get_clock()
    assert info.value.code == 42910000
    assert info.value.reset_at is not None and info.value.reset_at > datetime.now(UTC) - timedelta(
        seconds=5
    )
    assert srv.state()["requests"] == 3  # alpaca-py's own 3 x 3 s retry is off


def test_5xx_and_timeouts_are_broker_unavailable(emulator):
    srv = emulator(rest_5xx_rate=1.0)
    broker = AlpacaBroker(srv.alpaca_settings(timeout=timedelta(milliseconds=200)))
    with pytest.raises(BrokerUnavailable) as info:
        broker.get_clock()
    assert info.value.status in (500, 502, 503, 504)
    assert srv.state()["requests"] == 1  # no retry on 504 either
    srv.set_faults(rest_5xx_rate=0, latency=1.0)
    with pytest.raises(BrokerUnavailable, match="did not answer within 0.2s"):
        broker.get_account()


def test_unreachable_broker_is_broker_unavailable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = AlpacaSettings(
        base_url=f"http://127.0.0.1:{port}",
        key_id=Secret("k"),
        secret_key=Secret("s"),
        timeout=timedelta(seconds=1),
    )
    with pytest.raises(BrokerUnavailable, match="cannot reach Alpaca"):
        AlpacaBroker(settings).get_clock()


def test_submit_after_a_lost_answer_looks_the_order_up_instead_of_resubmitting(fresh):
    import requests

    srv, broker = fresh
    post = broker._client.post

    def post_then_lose_the_answer(path, data=None):
        post(path, data)
        raise requests.ConnectionError("connection reset")

    broker._client.post = post_then_lose_the_answer
    try:
        order_intent = resting("lost")
        report = broker.submit_order(order_intent)
    finally:
        broker._client.post = post
    assert report.client_order_id == order_intent.client_order_id
    assert len(broker.list_orders("open")) == 1


def test_submit_that_never_arrived_says_it_is_safe_to_resubmit(fresh):
    import requests

    _, broker = fresh

    def lose(path, data=None):
        raise requests.ConnectionError("refused")

    broker._client.post, post = lose, broker._client.post
    try:
        with pytest.raises(BrokerUnavailable) as info:
            broker.submit_order(resting("never"))
    finally:
        broker._client.post = post
    assert "safe to submit it again" in info.value.hint


def test_replace_cancel_all_positions_calendar(fresh):
    srv, broker = fresh
    old = broker.submit_order(resting("rep"))
    new = broker.replace_order(old.id, limit_price=Decimal("1.01"), qty=Decimal("2"))
    assert new.replaces == old.id and new.limit_price == Decimal("1.01")
    assert broker.get_order(old.id).status is OrderStatus.REPLACED
    results = broker.cancel_all_orders()
    assert [r.order_id for r in results] == [new.id] and results[0].status == 200
    broker.submit_order(intent("pos", qty=Decimal("2")))
    srv.advance(60)
    assert [(p.symbol, p.qty) for p in broker.list_positions()] == [("AAPL", Decimal("2"))]
    assert broker.get_position("AAPL").qty == Decimal("2")
    days = broker.get_calendar(date(2026, 1, 2), date(2026, 1, 6))
    assert [d.date.day for d in days] == [2, 5, 6]


def test_get_bars_follows_next_page_token(fresh, monkeypatch):
    _, broker = fresh
    monkeypatch.setattr(alpaca_mod, "BARS_PAGE_LIMIT", 4)
    start = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    bars = broker.get_bars(
        ["AAPL", "MSFT", "ZZZZ"], start, start + timedelta(minutes=9), timedelta(minutes=1)
    )
    assert [len(bars[s]) for s in ("AAPL", "MSFT", "ZZZZ")] == [10, 10, 0]
    assert bars["AAPL"][0].timestamp == start and bars["AAPL"][0].close > 0


# -- pure pieces ----------------------------------------------------------------------------------


def test_intent_body_keeps_decimals_as_strings():
    body = intent_to_wire(intent(type=OrderType.LIMIT, limit_price=Decimal("187.355")))
    assert body["qty"] == "1" and body["limit_price"] == "187.355"
    assert "notional" not in body and "stop_price" not in body


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"code": 40110000, "message": "request is not authorized"}, AuthFailed),
        (403, {"message": "forbidden."}, AuthFailed),
        (403, {"code": 40310000, "message": "insufficient buying power"}, InsufficientFunds),
        (404, {"code": 40410000, "message": "order not found"}, NotFound),
        (
            422,
            {"code": 40010001, "message": "client_order_id must be unique"},
            DuplicateClientOrderId,
        ),
        (429, {"code": 42910000, "message": "rate limit exceeded"}, RateLimited),
        (503, "<html>bad gateway</html>", BrokerUnavailable),
    ],
)
def test_http_errors_map_to_typed_errors(status, body, expected):
    text = body if isinstance(body, str) else json.dumps(body)
    err = map_http_error(status, text, {"X-Ratelimit-Reset": "1700000000", "Retry-After": "3"})
    assert type(err) is expected
    assert err.status == status
    if isinstance(body, dict):
        assert err.message == body["message"] and err.code == body.get("code")
    if expected is RateLimited:
        assert err.reset_at == datetime.fromtimestamp(1700000000, UTC)
        assert err.retry_after == 3.0


@given(
    status=st.one_of(st.none(), st.integers(100, 599)),
    text=st.text(max_size=60),
    reset=st.text(max_size=12),
)
def test_error_mapping_never_raises_on_odd_bodies(status, text, reset):
    err = map_http_error(status, text, {"X-Ratelimit-Reset": reset, "Retry-After": reset})
    assert isinstance(err, BrokerCallError)


@pytest.mark.parametrize(
    ("length", "text"),
    [
        (timedelta(minutes=1), "1Min"),
        (timedelta(minutes=15), "15Min"),
        (timedelta(hours=1), "1Hour"),
        (timedelta(days=1), "1Day"),
        ("5Min", "5Min"),
    ],
)
def test_timeframe_text(length, text):
    assert timeframe_text(length) == text


def test_alpaca_py_is_imported_lazily():
    import subprocess
    import sys

    code = (
        "import sys, mqd_cli.brokers.alpaca, mqd_cli.emulator.server; "
        "print('alpaca' in sys.modules, 'starlette' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
