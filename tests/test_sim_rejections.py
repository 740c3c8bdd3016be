"""Every SimBroker rejection carries Alpaca's HTTP status, code, message and body."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mqd_cli.brokers.errors import InsufficientFunds, NotFound, OrderRejected
from mqd_cli.model import Side
from tests.support import make_sim, scripted

D = Decimal
CALM = [("100.00", "100.20", "99.90", "100.10")] * 5


def rejected(sim, exc_type=OrderRejected, **kw):
    with pytest.raises(exc_type) as caught:
        sim.submit(**kw)
    err = caught.value
    assert err.body["code"] == err.code and err.body["message"] == err.message
    return err.status, err.code, err.message


@pytest.mark.parametrize(
    ("field", "price"), [("limit_price", "178.505"), ("stop_price", "178.505")]
)
def test_sub_penny_price_at_or_above_a_dollar_is_422_42210000(field, price):
    sim = make_sim()
    kind = "limit" if field == "limit_price" else "stop"
    assert rejected(sim, type=kind, **{field: price}) == (
        422,
        42210000,
        f"invalid {field} 178.505. sub-penny increment does not fulfill minimum pricing criteria",
    )


def test_below_a_dollar_four_decimals_pass_and_five_are_sub_penny():
    sim = make_sim()
    sim.submit(symbol="ZOM", type="limit", limit_price="0.1501", time_in_force="gtc")
    assert rejected(sim, symbol="ZOM", type="limit", limit_price="0.15015") == (
        422,
        42210000,
        "invalid limit_price 0.15015. sub-penny increment does not fulfill minimum pricing "
        "criteria",
    )


def test_insufficient_buying_power_is_403_with_buying_power_and_cost_basis():
    sim = make_sim()
    with pytest.raises(InsufficientFunds) as caught:
        sim.submit(symbol="BRK.A", qty="1")
    err = caught.value
    assert (err.status, err.code, err.message) == (403, 40310000, "insufficient buying power")
    assert set(err.body) == {"buying_power", "code", "cost_basis", "message"}
    assert D(err.body["buying_power"]) == D(200000)
    assert D(err.body["cost_basis"]) == sim.broker.last_price("BRK.A")


def test_open_buy_orders_hold_buying_power():
    sim = make_sim(scripted("AAPL", CALM), multiplier=1, starting_cash=D(1000))
    sim.submit(qty="6", type="limit", limit_price="99.00", time_in_force="gtc")  # holds 594
    with pytest.raises(InsufficientFunds) as caught:
        sim.submit(qty="5", type="limit", limit_price="99.00", time_in_force="gtc")
    assert D(caught.value.body["buying_power"]) == D(406)
    sim.submit(qty="4", type="limit", limit_price="99.00", time_in_force="gtc")


def test_selling_shares_held_by_another_order_is_403_insufficient_qty_with_details():
    sim = make_sim(scripted("AAPL", CALM))
    sim.submit(qty="10")
    resting = sim.submit(
        side=Side.SELL, qty="10", type="limit", limit_price="150.00", time_in_force="gtc"
    )
    with pytest.raises(InsufficientFunds) as caught:
        sim.submit(side=Side.SELL, qty="5")
    err = caught.value
    assert (err.status, err.code) == (403, 40310000)
    assert err.message == "insufficient qty available for order (requested: 5, available: 0)"
    assert err.body == {
        "available": "0",
        "code": 40310000,
        "existing_qty": "10",
        "held_for_orders": "10",
        "message": err.message,
        "related_orders": [resting.id],
        "symbol": "AAPL",
    }


def test_selling_more_than_a_long_position_in_one_order_is_403():
    sim = make_sim(scripted("AAPL", CALM))
    sim.submit(qty="10")
    status, code, message = rejected(sim, InsufficientFunds, side=Side.SELL, qty="15")
    assert (status, code) == (403, 40310000)
    assert message == "insufficient qty available for order (requested: 15, available: 10)"


@pytest.mark.parametrize("symbol", ["AMC", "GME", "BTC/USD"])
def test_short_sale_of_a_non_shortable_or_hard_to_borrow_asset_is_403(symbol):
    sim = make_sim()
    kw = {"time_in_force": "gtc", "qty": "1"} if "/" in symbol else {"qty": "5"}
    status, code, message = rejected(sim, InsufficientFunds, symbol=symbol, side=Side.SELL, **kw)
    assert (status, code) == (403, 40310000)
    assert message.startswith("insufficient qty available for order")


def test_fractional_short_sale_is_403():
    sim = make_sim()
    status, code, _ = rejected(sim, InsufficientFunds, side=Side.SELL, qty="0.5")
    assert (status, code) == (403, 40310000)


def test_short_sale_in_a_cash_account_is_403():
    sim = make_sim(multiplier=1)
    status, code, _ = rejected(sim, InsufficientFunds, side=Side.SELL, qty="5")
    assert (status, code) == (403, 40310000)


def test_duplicate_client_order_id_is_422_40010001():
    sim = make_sim()
    sim.submit(client_order_id="same")
    assert rejected(sim, client_order_id="same") == (
        422,
        40010001,
        "client_order_id must be unique",
    )


def test_client_order_id_over_128_characters_is_422():
    sim = make_sim()
    assert rejected(sim, client_order_id="x" * 129) == (
        422,
        40010001,
        "client_order_id must be no more than 128 characters",
    )
    sim.submit(client_order_id="x" * 128)


def test_fractional_qty_on_a_non_fractionable_asset_is_qty_must_be_integer():
    sim = make_sim()
    assert rejected(sim, symbol="ZOM", qty="1.5") == (422, 40010001, "qty must be integer")


def test_notional_on_a_non_fractionable_asset_is_not_fractionable():
    sim = make_sim()
    assert rejected(sim, symbol="ZOM", qty=None, notional="50") == (
        422,
        40010001,
        "requested asset is not fractionable",
    )


@pytest.mark.parametrize("kw", [{"qty": "0.5"}, {"qty": None, "notional": "100"}])
def test_fractional_or_notional_orders_must_be_day(kw):
    sim = make_sim()
    assert rejected(sim, time_in_force="gtc", **kw) == (
        422,
        40010001,
        "fractional orders must be DAY orders",
    )


def test_notional_buy_fills_a_fractional_quantity():
    sim = make_sim(scripted("AAPL", CALM))
    order = sim.submit(qty=None, notional="250")
    assert order.qty is None and order.notional == D(250)
    final = sim.broker.get_order(order.id)
    assert final.filled_qty == D("2.5")
    assert sim.broker.get_position("AAPL").qty == D("2.5")


def test_extended_hours_requires_a_day_limit_order():
    sim = make_sim()
    message = "extended hours order must be DAY limit orders"
    assert rejected(sim, extended_hours=True) == (422, 42210000, message)
    assert rejected(
        sim, extended_hours=True, type="limit", limit_price="1.00", time_in_force="gtc"
    ) == (422, 42210000, message)
    sim.submit(extended_hours=True, type="limit", limit_price="1.00")


def test_crypto_rejects_day_and_sizes_below_the_minimum():
    sim = make_sim()
    assert rejected(sim, symbol="BTC/USD", qty="0.01") == (
        422,
        42210000,
        "invalid crypto time_in_force",
    )
    assert rejected(sim, symbol="BTC/USD", qty="0.00001", time_in_force="gtc") == (
        422,
        40010001,
        "qty must be >= 0.0001",
    )


def test_unknown_symbol_on_submit_is_422_40010001():
    sim = make_sim()
    assert rejected(sim, symbol="ZZZZQ") == (422, 40010001, 'could not find asset "ZZZZQ"')


def test_inactive_asset_is_422():
    sim = make_sim()
    assert rejected(sim, symbol="TWTR") == (422, 42210000, "asset TWTR is not active")


def test_missing_qty_and_missing_prices_are_422():
    sim = make_sim()
    assert rejected(sim, qty=None) == (422, 40010001, "qty is required")
    assert rejected(sim, type="limit") == (422, 40010001, "limit_price is required")
    assert rejected(sim, type="stop") == (422, 40010001, "stop_price is required")
    assert rejected(sim, qty="0") == (422, 40010001, "qty must be > 0")
    assert rejected(sim, qty="1", notional="5") == (
        422,
        40010001,
        "only one of qty or notional may be given",
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.get_order("nope"), "order not found"),
        (lambda b: b.get_order_by_client_id("nope"), "order not found"),
        (lambda b: b.cancel_order("nope"), "order not found"),
        (lambda b: b.replace_order("nope", qty=D(1)), "order not found"),
        (lambda b: b.get_position("AAPL"), "position does not exist"),
        (lambda b: b.close_position("AAPL"), "position does not exist"),
        (lambda b: b.get_asset("ZZZZ"), "asset not found for ZZZZ"),
        (lambda b: b.last_price("ZZZZ"), "asset not found for ZZZZ"),
    ],
)
def test_unknown_things_are_404_40410000(call, message):
    sim = make_sim()
    with pytest.raises(NotFound) as caught:
        call(sim.broker)
    err = caught.value
    assert (err.status, err.code, err.message) == (404, 40410000, message)
    assert err.body == {"code": 40410000, "message": message}


def test_replace_with_sub_penny_or_fractional_values_is_422():
    sim = make_sim()
    order = sim.submit(type="limit", limit_price="1.00", time_in_force="gtc")
    with pytest.raises(OrderRejected) as caught:
        sim.broker.replace_order(order.id, limit_price=D("1.005"))
    assert (caught.value.status, caught.value.code) == (422, 42210000)
    with pytest.raises(OrderRejected) as caught:
        sim.broker.replace_order(order.id, qty=D("1.5"))
    assert caught.value.message == "qty must be integer"
    assert sim.broker.get_order(order.id).limit_price == D("1.00")
