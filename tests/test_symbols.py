"""Symbol properties: tick rules, side-aware rounding, every problem code, margin, the cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqd_cli.brokers.sim.assets import default_assets
from mqd_cli.clock import BacktestClock
from mqd_cli.model import AssetInfo, OrderIntent, OrderType, Side, TimeInForce
from mqd_cli.store import Store
from mqd_cli.symbols.book import SymbolBook
from mqd_cli.symbols.properties import (
    US_EQUITY_TICKS,
    SymbolProperties,
    equity_tick,
    margin_requirement,
)
from mqd_cli.symbols.rounding import RoundingError, round_intent
from mqd_cli.symbols.rules import check_intent
from mqd_cli.symbols.sync import sync

T0 = datetime(2026, 9, 16, 14, 0, tzinfo=UTC)
PROPS = {a.symbol: SymbolProperties.from_asset(a) for a in default_assets()}


class ListBroker:
    """Serves a fixed asset list the way a broker's list_assets does."""

    name = "list"

    def __init__(self, assets: list[AssetInfo]):
        self.assets = assets

    def list_assets(self, asset_class: str | None = None, status: str | None = None):
        return [a for a in self.assets if asset_class in (None, a.asset_class.value)]


@pytest.fixture
def clock():
    return BacktestClock(T0)


@pytest.fixture
def book(tmp_path, clock):
    """A book synced from the simulated broker's built-in universe."""
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.config.settings import SimSettings

    store = Store.open(tmp_path / "mqd.db")
    sync(store, SimBroker(SimSettings(), clock), clock)
    yield SymbolBook(store, clock, stale_after=timedelta(days=1))
    store.close()


def limit(symbol, side, price, qty="10", **kw):
    return OrderIntent(
        symbol, Side(side), qty=D(qty), type=OrderType.LIMIT, limit_price=D(price), **kw
    )


def stop(symbol, side, price, qty="10"):
    return OrderIntent(symbol, Side(side), qty=D(qty), type=OrderType.STOP, stop_price=D(price))


# -- tick rule ------------------------------------------------------------------------------------


def test_equity_tick_is_a_cent_at_or_above_one_dollar_and_a_hundredth_cent_below():
    assert equity_tick(D("1.00")) == D("0.01")
    assert equity_tick(D("250")) == D("0.01")
    assert equity_tick(D("0.9999")) == D("0.0001")
    assert equity_tick(D("0.0001")) == D("0.0001")


def test_the_tick_rule_is_one_table():
    expected = ((D("1.00"), D("0.01")), (D("0"), D("0.0001")))
    assert expected == US_EQUITY_TICKS


# -- rounding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "field", "expected"),
    [
        (limit("AAPL", "buy", "11.055"), "limit_price", "11.05"),
        (limit("AAPL", "sell", "11.055"), "limit_price", "11.06"),
        (limit("ZOM", "buy", "0.987654"), "limit_price", "0.9876"),
        (limit("ZOM", "sell", "0.987654"), "limit_price", "0.9877"),
        (limit("AAPL", "buy", "1.123456"), "limit_price", "1.12"),
        (limit("AAPL", "sell", "1.123456"), "limit_price", "1.13"),
        (limit("ZOM", "buy", "0.999999999"), "limit_price", "0.9999"),
        (limit("ZOM", "sell", "0.99995"), "limit_price", "1.0000"),
        (stop("AAPL", "buy", "11.055"), "stop_price", "11.06"),
        (stop("AAPL", "sell", "11.055"), "stop_price", "11.05"),
        (stop("ZOM", "sell", "0.123456"), "stop_price", "0.1234"),
        (limit("BTC/USD", "buy", "97250.7", qty="0.01"), "limit_price", "97250"),
        (limit("ETH/USD", "sell", "3412.55", qty="0.01"), "limit_price", "3412.6"),
        (limit("SOL/USD", "buy", "187.4013", qty="1"), "limit_price", "187.4000"),
        (limit("SOL/USD", "sell", "187.4013", qty="1"), "limit_price", "187.4025"),
    ],
)
def test_rounding_table(intent, field, expected):
    rounded, adjustments = round_intent(PROPS[intent.symbol], intent)
    assert getattr(rounded, field) == D(expected)
    assert [(a.field, a.before, a.after) for a in adjustments] == [
        (field, getattr(intent, field), D(expected))
    ]


def test_stop_limit_rounds_the_stop_away_from_the_market_and_the_limit_passively():
    intent = OrderIntent(
        "AAPL",
        Side.BUY,
        qty=D(1),
        type=OrderType.STOP_LIMIT,
        stop_price=D("10.005"),
        limit_price=D("10.105"),
    )
    rounded, adjustments = round_intent(PROPS["AAPL"], intent)
    assert (rounded.stop_price, rounded.limit_price) == (D("10.01"), D("10.10"))
    assert {a.field for a in adjustments} == {"stop_price", "limit_price"}
    assert "buy limit rounds down" in adjustments[0].reason


@pytest.mark.parametrize(
    ("symbol", "qty", "expected"),
    [
        ("AAPL", "1.1234567891", "1.123456789"),
        ("BRK.A", "2.7", "2"),
        ("BTC/USD", "0.12345678912", "0.123456789"),
    ],
)
def test_quantity_rounds_down_to_the_increment(symbol, qty, expected):
    rounded, adjustments = round_intent(PROPS[symbol], OrderIntent(symbol, Side.BUY, qty=D(qty)))
    assert rounded.qty == D(expected)
    assert adjustments[0].field == "qty" and adjustments[0].after == D(expected)


def test_quantity_rounding_to_zero_is_an_error_not_a_zero_order(book):
    intent = OrderIntent("BRK.A", Side.BUY, qty=D("0.5"))
    with pytest.raises(RoundingError) as exc:
        book.round(intent)
    assert exc.value.problem.code == "ZERO_AFTER_ROUNDING"
    order, adjustments, problems = book.prepare(intent)
    assert order is None
    assert adjustments[0].after == 0
    assert [p.code for p in problems] == ["ZERO_AFTER_ROUNDING"]


def test_notional_rounds_down_to_cents_and_a_sub_cent_notional_is_an_error(book):
    rounded, adj = book.round(OrderIntent("AAPL", Side.BUY, notional=D("10.559")))
    assert rounded.notional == D("10.55") and adj[0].field == "notional"
    with pytest.raises(RoundingError):
        book.round(OrderIntent("AAPL", Side.BUY, notional=D("0.004")))


def test_an_order_already_on_the_grid_is_returned_unchanged(book):
    intent = limit("AAPL", "buy", "11.05")
    rounded, adjustments = book.round(intent)
    assert rounded is intent and adjustments == []


def test_prepare_rounds_then_validates_and_returns_the_order_to_send(book):
    order, adjustments, problems = book.prepare(limit("AAPL", "sell", "11.055"), position_qty=D(10))
    assert order is not None and order.limit_price == D("11.06")
    assert [a.field for a in adjustments] == ["limit_price"] and problems == []


_prices = st.decimals(
    min_value=D("0.0001"), max_value=D("200000"), places=8, allow_nan=False, allow_infinity=False
).filter(lambda d: d > 0)
_symbols = st.sampled_from(["AAPL", "ZOM", "BRK.A", "BTC/USD", "ETH/USD", "SOL/USD"])


def _aggression(side: Side, field: str, before: D, after: D) -> int:
    """>0 when ``after`` is more aggressive than ``before``."""
    if field == "limit_price":  # a higher buy limit / lower sell limit fills more easily
        return (
            (after > before) - (after < before)
            if side is Side.BUY
            else (after < before) - (after > before)
        )
    # a lower buy stop / higher sell stop triggers sooner
    return (
        (after < before) - (after > before)
        if side is Side.BUY
        else (after > before) - (after < before)
    )


@settings(max_examples=300, deadline=None)
@given(
    symbol=_symbols,
    side=st.sampled_from([Side.BUY, Side.SELL]),
    kind=st.sampled_from(["limit_price", "stop_price"]),
    price=_prices,
)
def test_rounding_is_idempotent_never_more_aggressive_and_lands_on_the_grid(
    symbol, side, kind, price
):
    typ = OrderType.LIMIT if kind == "limit_price" else OrderType.STOP
    props = PROPS[symbol]
    intent = OrderIntent(
        symbol, side, qty=D(1), type=typ, time_in_force=TimeInForce.GTC, **{kind: price}
    )
    once, _ = round_intent(props, intent)
    twice, again = round_intent(props, once)
    assert again == [] and twice == once
    after = getattr(once, kind)
    assert _aggression(side, kind, price, after) <= 0
    assert abs(after - price) < props.tick(price) + props.tick(after)
    assert "PRICE_INCREMENT" not in {p.code for p in check_intent(props, once)}


@settings(max_examples=200, deadline=None)
@given(
    symbol=_symbols,
    qty=st.decimals(
        min_value=D("0.000000001"),
        max_value=D("100000"),
        places=12,
        allow_nan=False,
        allow_infinity=False,
    ),
)
def test_quantity_rounding_is_idempotent_and_never_increases(symbol, qty):
    props = PROPS[symbol]
    intent = OrderIntent(symbol, Side.BUY, qty=qty)
    try:
        once, _ = round_intent(props, intent)
    except RoundingError as exc:
        assert qty < props.qty_increment and exc.problem.code == "ZERO_AFTER_ROUNDING"
        return
    assert 0 < once.qty <= qty and once.qty % props.qty_increment == 0
    assert round_intent(props, once) == (once, [])


# -- every problem code from a real sim asset -----------------------------------------------------

_BUY = Side.BUY
_SELL = Side.SELL
CASES = [
    ("UNKNOWN_SYMBOL", OrderIntent("NOPE", _BUY, qty=D(1)), {}),
    ("INACTIVE", OrderIntent("TWTR", _BUY, qty=D(1)), {}),
    ("NOT_TRADABLE", OrderIntent("TWTR", _BUY, qty=D(1)), {}),
    ("NOT_SHORTABLE", OrderIntent("AMC", _SELL, qty=D(5)), {"position_qty": D(2)}),
    ("HARD_TO_BORROW", OrderIntent("GME", _SELL, qty=D(5)), {}),
    ("NOT_FRACTIONABLE", OrderIntent("BRK.A", _BUY, qty=D("1.5")), {}),
    ("FRACTIONAL_TIF", OrderIntent("AAPL", _BUY, qty=D("0.5"), time_in_force=TimeInForce.GTC), {}),
    ("FRACTIONAL_SHORT", OrderIntent("AAPL", _SELL, qty=D("0.5")), {}),
    (
        "FRACTIONAL_TYPE",
        OrderIntent("AAPL", _BUY, notional=D(50), type=OrderType.LIMIT, limit_price=D(170)),
        {},
    ),
    ("BELOW_MIN_NOTIONAL", OrderIntent("AAPL", _BUY, notional=D("0.50")), {}),
    (
        "BELOW_MIN_QTY",
        OrderIntent("BTC/USD", _BUY, qty=D("0.00005"), time_in_force=TimeInForce.GTC),
        {},
    ),
    (
        "QTY_INCREMENT",
        OrderIntent("BTC/USD", _BUY, qty=D("0.0001000000001"), time_in_force=TimeInForce.GTC),
        {},
    ),
    ("PRICE_INCREMENT", limit("AAPL", "buy", "11.055"), {}),
    ("EXTENDED_HOURS_TYPE", OrderIntent("AAPL", _BUY, qty=D(1), extended_hours=True), {}),
    ("FRACTIONAL_EXTENDED_HOURS", limit("GME", "buy", "20", qty="0.5", extended_hours=True), {}),
    ("QTY_AND_NOTIONAL", OrderIntent("AAPL", _BUY, qty=D(1), notional=D(100)), {}),
    ("NO_QTY", OrderIntent("AAPL", _BUY), {}),
    ("BAD_QTY", OrderIntent("AAPL", _BUY, qty=D(-3)), {}),
    ("CRYPTO_TIF", OrderIntent("ETH/USD", _BUY, qty=D(1)), {}),
    (
        "UNSUPPORTED_TYPE",
        OrderIntent(
            "ETH/USD",
            _BUY,
            qty=D(1),
            type=OrderType.STOP,
            stop_price=D(3000),
            time_in_force=TimeInForce.GTC,
        ),
        {},
    ),
    ("MISSING_LIMIT_PRICE", OrderIntent("AAPL", _BUY, qty=D(1), type=OrderType.LIMIT), {}),
    ("MISSING_STOP_PRICE", OrderIntent("AAPL", _BUY, qty=D(1), type=OrderType.STOP), {}),
    (
        "MISSING_TRAIL",
        OrderIntent("AAPL", _SELL, qty=D(1), type=OrderType.TRAILING_STOP),
        {"position_qty": D(1)},
    ),
    ("BAD_PRICE", limit("AAPL", "buy", "-1"), {}),
    ("BAD_SIDE", OrderIntent("AAPL", Side.UNKNOWN, qty=D(1)), {}),
]


@pytest.mark.parametrize(("code", "intent", "kw"), CASES, ids=[c[0] for c in CASES])
def test_every_problem_code_is_reported_for_a_real_sim_asset(book, code, intent, kw):
    problems = book.validate(intent, **kw)
    codes = [p.code for p in problems]
    assert code in codes, codes
    p = problems[codes.index(code)]
    assert p.message and p.fix


def test_valid_orders_of_the_sim_universe_have_no_problems(book):
    assert book.validate(limit("AAPL", "buy", "178.50")) == []
    assert book.validate(OrderIntent("AAPL", _BUY, notional=D(25))) == []
    assert book.validate(limit("AAPL", "buy", "178.5", qty="0.5", extended_hours=True)) == []
    assert book.validate(limit("ZOM", "buy", "0.1523", qty="100")) == []
    assert book.validate(OrderIntent("GME", _SELL, qty=D(3)), position_qty=D(3)) == []
    assert book.validate(OrderIntent("AAPL", _SELL, qty=D(2)), position_qty=D(0)) == []
    btc = OrderIntent("BTC/USD", _BUY, qty=D("0.0001"), time_in_force=TimeInForce.GTC)
    assert book.validate(btc) == []


def test_fix_hints_carry_the_corrected_value(book):
    (p,) = book.validate(limit("AAPL", "buy", "11.055"))
    assert "11.05" in p.fix and p.corrected.limit_price == D("11.05")
    (p,) = book.validate(OrderIntent("BRK.A", _BUY, qty=D("2.5")))
    assert p.code == "NOT_FRACTIONABLE" and p.corrected.qty == D(2) and "qty 2" in p.fix
    (p,) = book.validate(OrderIntent("AAPL", _BUY, notional=D("0.5")))
    assert p.corrected.notional == D("1.00")
    (p,) = book.validate(OrderIntent("AAPL", _BUY, qty=D("0.001")), price=D("178.5"))
    assert p.code == "BELOW_MIN_NOTIONAL" and p.corrected.qty * D("178.5") >= 1
    (p,) = book.validate(OrderIntent("GME", _SELL, qty=D(5)), position_qty=D(2))
    assert p.code == "HARD_TO_BORROW" and p.corrected.qty == D(2)
    (p,) = book.validate(OrderIntent("AAPL", _SELL, qty=D("2.5")), position_qty=D(1))
    assert p.code == "FRACTIONAL_SHORT" and p.corrected.qty == D(2)


def test_crypto_increments_come_from_the_asset(book):
    eth = book.get("ETH/USD")
    assert (eth.min_order_size, eth.min_trade_increment, eth.price_increment) == (
        D("0.001"),
        D("0.000000001"),
        D("0.1"),
    )
    problems = book.validate(
        limit("ETH/USD", "buy", "3412.55", qty="0.0005", time_in_force=TimeInForce.GTC)
    )
    assert {p.code for p in problems} == {"PRICE_INCREMENT", "BELOW_MIN_QTY"}
    problems = book.validate(
        OrderIntent("BTC/USD", _BUY, notional=D("5"), time_in_force=TimeInForce.GTC),
        price=D("97250"),
    )
    assert [p.code for p in problems] == ["BELOW_MIN_QTY"]
    assert problems[0].corrected.notional == D("9.73")


def test_a_sell_within_the_position_is_not_a_short(book):
    assert book.validate(OrderIntent("AMC", _SELL, qty=D(5)), position_qty=D(5)) == []
    assert book.validate(OrderIntent("AAPL", _SELL, qty=D("0.5")), position_qty=D("0.5")) == []
    assert book.validate(OrderIntent("AAPL", _SELL, notional=D(20)), position_qty=D(1)) == []


def test_correct_applies_every_fix_until_the_order_is_valid(book):
    messy = OrderIntent(
        "AAPL",
        _BUY,
        qty=D("0.5"),
        type=OrderType.LIMIT,
        limit_price=D("178.555"),
        time_in_force=TimeInForce.GTC,
    )
    fixed, problems = book.correct(messy)
    assert fixed.limit_price == D("178.55") and fixed.time_in_force is TimeInForce.DAY
    assert book.validate(fixed) == [] and [p.code for p in problems] == ["FRACTIONAL_TIF"]
    assert book.correct(OrderIntent("TWTR", _BUY, qty=D(1)))[0] is None


# -- margin ---------------------------------------------------------------------------------------


def test_margin_requirement_uses_the_long_and_short_margin_fields():
    aapl = PROPS["AAPL"]
    assert margin_requirement(aapl, D(10), D("178.50")) == D("535.50")
    assert margin_requirement(aapl, D(-10), D("178.50")) == D("535.50")
    assert margin_requirement(aapl, D(0), D("178.50")) == 0
    odd = aapl._replace(margin_requirement_short=D(50))
    assert margin_requirement(odd, D(-1), D("10.001")) == D("5.01")  # rounded up to the cent


def test_non_marginable_and_crypto_positions_need_full_margin():
    assert margin_requirement(PROPS["BTC/USD"], D("0.5"), D(97250)) == D("48625.00")
    twtr = PROPS["TWTR"]._replace(margin_requirement_long=None, maintenance_margin_requirement=None)
    assert margin_requirement(twtr, D(3), D(10)) == D("30.00")


# -- the cache ------------------------------------------------------------------------------------


def test_lookups_accept_lower_case_and_legacy_crypto_symbols(book):
    assert book.get("aapl").symbol == "AAPL"
    assert book.get("BTCUSD").symbol == "BTC/USD"
    assert book.get("NOPE") is None
    assert len(book) == len(default_assets())


def test_staleness_is_measured_from_the_last_sync(tmp_path, clock):
    store = Store.open(tmp_path / "s.db")
    book = SymbolBook(store, clock, stale_after=timedelta(hours=12))
    assert book.last_sync() is None and book.staleness() is None and book.is_stale()
    sync(store, ListBroker(default_assets()), clock)
    assert book.last_sync() == T0 and not book.is_stale()
    clock.advance(timedelta(hours=13))
    assert book.staleness() == timedelta(hours=13) and book.is_stale()


def test_stored_properties_round_trip_through_the_store(book):
    for asset in default_assets():
        stored = book.get(asset.symbol)
        assert stored[:18] == SymbolProperties.from_asset(asset)[:18]
        assert stored.synced_at == T0
