"""The Broker contract: behaviour every Broker must show, as reusable check functions.

Each check takes a ``Harness`` (a broker on a fresh paper account whose market is open, plus a
way to let simulated time pass) and asserts through the Broker protocol only. The same checks
run against ``SimBroker`` in-process (tests/test_sim_contract.py) and against the Alpaca adapter
talking to ``mqd sim serve`` over loopback::

    from tests.contract_broker import CONTRACT, Harness

    @pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
    def test_alpaca_adapter_honours_the_broker_contract(check, emulator):
        srv = emulator()
        check(Harness(broker=build_adapter(srv), advance=srv.advance))

The account must hold no positions or orders at the start, with at least $10,000 of buying
power and the built-in sim universe (AAPL, SPY fractionable; BRK.A not fractionable and priced
above a fresh account's buying power; AMC not shortable).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from mqd_cli.brokers.base import Broker
from mqd_cli.brokers.errors import (
    DuplicateClientOrderId,
    InsufficientFunds,
    NotFound,
    OrderRejected,
)
from mqd_cli.model import (
    AssetClass,
    OrderIntent,
    OrderReport,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

__all__ = ["CONTRACT", "Harness"]


@dataclass
class Harness:
    broker: Broker
    advance: Callable[[float], object]  # let this many simulated seconds pass

    def cid(self, tag: str) -> str:
        return f"contract-{tag}-{uuid.uuid4().hex[:12]}"

    def wait_for(self, order_id: str, *statuses: OrderStatus, rounds: int = 30) -> OrderReport:
        """Advance a minute at a time until the order reaches one of ``statuses``."""
        report = self.broker.get_order(order_id)
        for _ in range(rounds):
            if report.status in statuses:
                return report
            self.advance(60)
            report = self.broker.get_order(order_id)
        raise AssertionError(f"order {order_id} stuck in {report.status} (wanted {statuses})")

    def resting_buy(self, tag: str, symbol: str = "AAPL", qty: str = "1") -> OrderReport:
        """A buy limit far below the market: it rests and never fills."""
        return self.broker.submit_order(
            OrderIntent(
                symbol=symbol,
                side=Side.BUY,
                qty=Decimal(qty),
                type=OrderType.LIMIT,
                limit_price=Decimal("1.00"),
                time_in_force=TimeInForce.GTC,
                client_order_id=self.cid(tag),
            )
        )

    def market(self, side: Side, qty: str, symbol: str = "AAPL", tag: str = "mkt") -> OrderReport:
        return self.broker.submit_order(
            OrderIntent(symbol=symbol, side=side, qty=Decimal(qty), client_order_id=self.cid(tag))
        )


def _expect(exc_type, status: int, code: int, message: str | None = None):
    class _Expect:
        def __enter__(self):
            return self

        def __exit__(self, et, ev, tb):
            assert et is not None, f"expected {exc_type.__name__} {status} {code}, nothing raised"
            assert issubclass(et, exc_type), (
                f"expected {exc_type.__name__}, got {et.__name__}: {ev}"
            )
            assert ev.status == status, (ev.status, ev)
            assert ev.code == code, (ev.code, ev)
            if message is not None:
                assert ev.message.startswith(message), (message, ev.message)
                assert ev.body.get("message") == ev.message, ev.body
            self.error = ev
            return True

    return _Expect()


# -- account, assets, clock ----------------------------------------------------------------------


def check_account_reports_equity_cash_and_buying_power(h: Harness) -> None:
    account = h.broker.get_account()
    assert account.id and account.account_number
    assert account.status == "ACTIVE"
    assert account.equity > 0 and account.cash > 0
    assert account.buying_power >= Decimal("10000")
    assert account.equity == account.cash + account.long_market_value + account.short_market_value


def check_get_asset_returns_the_asset_and_unknown_is_404(h: Harness) -> None:
    aapl = h.broker.get_asset("AAPL")
    assert aapl.symbol == "AAPL"
    assert aapl.asset_class is AssetClass.US_EQUITY
    assert aapl.tradable and aapl.fractionable
    with _expect(NotFound, 404, 40410000, "asset not found for ZZZZQ"):
        h.broker.get_asset("ZZZZQ")


def check_list_assets_filters_by_class(h: Harness) -> None:
    crypto = h.broker.list_assets(asset_class="crypto")
    assert crypto and all(a.asset_class is AssetClass.CRYPTO for a in crypto)
    btc = next(a for a in crypto if a.symbol == "BTC/USD")
    assert btc.min_order_size is not None and btc.min_trade_increment is not None
    equities = h.broker.list_assets(asset_class="us_equity", status="active")
    assert any(a.symbol == "AAPL" for a in equities)


def check_clock_and_calendar(h: Harness) -> None:
    clock = h.broker.get_clock()
    assert clock.next_open > clock.timestamp or clock.is_open
    days = h.broker.get_calendar(date(2026, 1, 1), date(2026, 1, 9))
    assert [d.date for d in days] == [date(2026, 1, d) for d in (2, 5, 6, 7, 8, 9)]
    assert days[0].open.hour == 9 and days[0].open.minute == 30


# -- orders ---------------------------------------------------------------------------------------


def check_market_buy_fills_and_opens_a_position(h: Harness) -> None:
    order = h.market(Side.BUY, "3")
    assert order.client_order_id.startswith("contract-mkt")
    assert order.symbol == "AAPL" and order.side is Side.BUY and order.qty == Decimal("3")
    filled = h.wait_for(order.id, OrderStatus.FILLED)
    assert filled.filled_qty == Decimal("3") and filled.filled_avg_price is not None
    position = h.broker.get_position("AAPL")
    assert position.qty == Decimal("3")
    assert [p.symbol for p in h.broker.list_positions()] == ["AAPL"]


def check_get_order_by_client_id(h: Harness) -> None:
    order = h.resting_buy("byc")
    found = h.broker.get_order_by_client_id(order.client_order_id)
    assert found.id == order.id
    with _expect(NotFound, 404, 40410000, "order not found"):
        h.broker.get_order_by_client_id(h.cid("missing"))


def check_duplicate_client_order_id_is_422(h: Harness) -> None:
    order = h.resting_buy("dup")
    with _expect(DuplicateClientOrderId, 422, 40010001, "client_order_id must be unique"):
        h.broker.submit_order(
            OrderIntent(
                symbol="AAPL",
                side=Side.BUY,
                qty=Decimal(1),
                type=OrderType.LIMIT,
                limit_price=Decimal("1.00"),
                time_in_force=TimeInForce.GTC,
                client_order_id=order.client_order_id,
            )
        )


def check_sub_penny_limit_price_is_422_with_alpacas_message(h: Harness) -> None:
    with _expect(
        OrderRejected,
        422,
        42210000,
        "invalid limit_price 178.505. sub-penny increment does not fulfill minimum pricing"
        " criteria",
    ):
        h.broker.submit_order(
            OrderIntent(
                symbol="AAPL",
                side=Side.BUY,
                qty=Decimal(1),
                type=OrderType.LIMIT,
                limit_price=Decimal("178.505"),
                client_order_id=h.cid("subpenny"),
            )
        )


def check_insufficient_buying_power_is_403(h: Harness) -> None:
    with _expect(InsufficientFunds, 403, 40310000, "insufficient buying power") as caught:
        h.market(Side.BUY, "1", symbol="BRK.A", tag="bp")
    assert {"buying_power", "cost_basis"} <= set(caught.error.body)


def check_selling_what_is_not_held_of_a_non_shortable_asset_is_403(h: Harness) -> None:
    with _expect(InsufficientFunds, 403, 40310000, "insufficient qty available") as caught:
        h.market(Side.SELL, "5", symbol="AMC", tag="short")
    assert caught.error.body.get("symbol") == "AMC"


def check_fractional_qty_on_non_fractionable_asset_is_422(h: Harness) -> None:
    with _expect(OrderRejected, 422, 40010001):
        h.market(Side.BUY, "0.5", symbol="BRK.A", tag="frac")


def check_cancel_then_cancel_again_is_422(h: Harness) -> None:
    order = h.resting_buy("cancel")
    h.wait_for(order.id, OrderStatus.NEW, OrderStatus.ACCEPTED)
    h.broker.cancel_order(order.id)
    canceled = h.wait_for(order.id, OrderStatus.CANCELED)
    assert canceled.canceled_at is not None
    with _expect(OrderRejected, 422, 42210000, 'order is already in "canceled" state'):
        h.broker.cancel_order(order.id)


def check_cancel_unknown_order_is_404(h: Harness) -> None:
    with _expect(NotFound, 404, 40410000, "order not found"):
        h.broker.cancel_order(str(uuid.uuid4()))


def check_replace_gives_a_new_order_that_replaces_the_old(h: Harness) -> None:
    old = h.resting_buy("repl")
    h.wait_for(old.id, OrderStatus.NEW, OrderStatus.ACCEPTED)
    new = h.broker.replace_order(old.id, qty=Decimal(2), limit_price=Decimal("1.50"))
    assert new.id != old.id
    assert new.replaces == old.id
    assert new.qty == Decimal(2) and new.limit_price == Decimal("1.5")
    old_after = h.wait_for(old.id, OrderStatus.REPLACED)
    assert old_after.replaced_by == new.id


def check_list_orders_open_and_closed(h: Harness) -> None:
    resting = h.resting_buy("list")
    gone = h.resting_buy("list2")
    h.broker.cancel_order(gone.id)
    h.wait_for(gone.id, OrderStatus.CANCELED)
    open_ids = [o.id for o in h.broker.list_orders("open")]
    closed_ids = [o.id for o in h.broker.list_orders("closed")]
    assert resting.id in open_ids and resting.id not in closed_ids
    assert gone.id in closed_ids and gone.id not in open_ids
    assert {resting.id, gone.id} <= {o.id for o in h.broker.list_orders("all")}
    assert [o.id for o in h.broker.list_orders("all", symbols=["SPY"])] == []


def check_cancel_all_cancels_every_open_order(h: Harness) -> None:
    first, second = h.resting_buy("ca1"), h.resting_buy("ca2", symbol="SPY")
    rows = h.broker.cancel_all_orders()
    assert {r.order_id for r in rows} >= {first.id, second.id}
    assert all(r.status == 200 for r in rows)
    for order in (first, second):
        h.wait_for(order.id, OrderStatus.CANCELED)
    assert h.broker.list_orders("open") == []


def check_missing_position_is_404(h: Harness) -> None:
    with _expect(NotFound, 404, 40410000, "position does not exist"):
        h.broker.get_position("MSFT")


def check_round_trip_returns_to_flat_and_moves_cash_by_the_fills(h: Harness) -> None:
    start = h.broker.get_account()
    buy = h.wait_for(h.market(Side.BUY, "4", symbol="SPY", tag="rt-buy").id, OrderStatus.FILLED)
    h.advance(60)
    sell = h.wait_for(h.market(Side.SELL, "4", symbol="SPY", tag="rt-sell").id, OrderStatus.FILLED)
    end = h.broker.get_account()
    expected = start.cash - buy.filled_avg_price * 4 + sell.filled_avg_price * 4
    assert abs(end.cash - expected) <= Decimal("0.01") + Decimal("0.01") * 8  # fees, if any
    assert h.broker.list_positions() == []


def check_orders_listed_newest_first(h: Harness) -> None:
    first = h.resting_buy("order1")
    h.advance(1)
    second = h.resting_buy("order2")
    ids = [o.id for o in h.broker.list_orders("open")]
    assert ids.index(second.id) < ids.index(first.id)
    newest = h.broker.list_orders("open", limit=1)
    assert [o.id for o in newest] == [second.id]
    later = h.broker.list_orders("all", after=second.created_at - timedelta(microseconds=1))
    assert second.id in {o.id for o in later}


CONTRACT = [
    check_account_reports_equity_cash_and_buying_power,
    check_get_asset_returns_the_asset_and_unknown_is_404,
    check_list_assets_filters_by_class,
    check_clock_and_calendar,
    check_market_buy_fills_and_opens_a_position,
    check_get_order_by_client_id,
    check_duplicate_client_order_id_is_422,
    check_sub_penny_limit_price_is_422_with_alpacas_message,
    check_insufficient_buying_power_is_403,
    check_selling_what_is_not_held_of_a_non_shortable_asset_is_403,
    check_fractional_qty_on_non_fractionable_asset_is_422,
    check_cancel_then_cancel_again_is_422,
    check_cancel_unknown_order_is_404,
    check_replace_gives_a_new_order_that_replaces_the_old,
    check_list_orders_open_and_closed,
    check_cancel_all_cancels_every_open_order,
    check_missing_position_is_404,
    check_round_trip_returns_to_flat_and_moves_cash_by_the_fills,
    check_orders_listed_newest_first,
]
