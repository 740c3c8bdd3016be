"""The buying power that applies: Reg T for marginable buys, the cash-only (non-marginable)
buying power for crypto and non-marginable assets; the simulated account reports both the way
Alpaca defines them, and the emulator serves them to the Alpaca adapter unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mqd_cli.config.settings import RiskSettings, SimSettings
from mqd_cli.model import AccountReport, AssetClass, OrderIntent, Side
from mqd_cli.symbols.properties import SymbolProperties
from mqd_cli.trading.risk import BuyingPower, RiskGate, marginable
from mqd_cli.wire import parse as wire_parse

D = Decimal
CORPUS = Path(__file__).parent / "corpus"
NO_LIMITS = dict(
    max_order_notional=D(0),
    max_position_notional=D(0),
    max_gross_exposure=D(0),
    max_open_orders=0,
    check_buying_power=True,
)


def corpus_account(name: str) -> AccountReport:
    doc = json.loads((CORPUS / "account" / name).read_text(encoding="utf-8"))
    return wire_parse.parse_account(doc["payload"])


def props(symbol: str, asset_class: AssetClass, *, marginable: bool) -> SymbolProperties:
    from mqd_cli.model import AssetStatus

    return SymbolProperties(
        symbol, "id", asset_class, "X", symbol, AssetStatus.ACTIVE, True, marginable,
        False, False, True,
    )  # fmt: skip


def check(power, intent, *, price: str, marginable_buy: bool = True):
    return RiskGate(RiskSettings(**NO_LIMITS)).check(
        intent,
        price=D(price),
        positions={},
        prices={},
        open_orders=0,
        buying_power=power,
        marginable=marginable_buy,
    )


# -- choosing the power -------------------------------------------------------------------------


def test_buying_power_of_an_alpaca_account_takes_regt_and_non_marginable_as_sent():
    # docs.alpaca.markets getaccount-1, the 200 example: regt 245432.61, non-marginable 122086.5
    power = BuyingPower.of(corpus_account("docs-getaccount-200-example.json"))
    assert power == BuyingPower(regt=D("245432.61"), non_marginable=D("122086.5"))
    # a multiplier-4 account: buying_power (day trading, 4x) is not what an overnight buy gets
    legacy = corpus_account("alpaca-py-get-account.json")
    assert legacy.buying_power == D("262113.632")
    assert BuyingPower.of(legacy).regt == D("80680.36")


def test_an_account_without_the_fields_falls_back_to_buying_power_and_capped_cash():
    a = AccountReport("a", "PA1", "ACTIVE", cash=D("5000"), buying_power=D("8000"))
    assert BuyingPower.of(a) == BuyingPower(regt=D("8000"), non_marginable=D("5000"))
    negative = AccountReport("a", "PA1", "ACTIVE", cash=D("-20"), buying_power=D("8000"))
    assert BuyingPower.of(negative).non_marginable == 0
    thin = AccountReport("a", "PA1", "ACTIVE", cash=D("5000"), buying_power=D("3000"))
    assert BuyingPower.of(thin).non_marginable == D("3000")


def test_crypto_and_non_marginable_assets_are_paid_in_cash_equities_may_use_margin():
    assert marginable(props("AAPL", AssetClass.US_EQUITY, marginable=True), "AAPL")
    assert not marginable(props("ZOM", AssetClass.US_EQUITY, marginable=False), "ZOM")
    assert not marginable(props("BTC/USD", AssetClass.CRYPTO, marginable=True), "BTC/USD")
    assert not marginable(props("BTC-PERP", AssetClass.CRYPTO_PERP, marginable=True), "BTC-PERP")
    assert not marginable(None, "ETH/USD") and marginable(None, "MSFT")


# -- the gate -----------------------------------------------------------------------------------

POWER = BuyingPower(regt=D("200000"), non_marginable=D("100000"))


def test_a_crypto_buy_is_checked_against_the_non_marginable_buying_power():
    intent = OrderIntent("BTC/USD", Side.BUY, qty=D("1.5"))
    d = check(POWER, intent, price="97250", marginable_buy=False)
    assert not d.allowed and d.rule == "buying_power"
    assert d.reason == (
        "buying_power: order 145,875.00 > non-marginable buying power 100,000.00"
        " (BTC/USD is paid in cash, not on margin)"
    )
    assert check(POWER, OrderIntent("BTC/USD", Side.BUY, qty=D("1")), price="100000",
                 marginable_buy=False).allowed  # fmt: skip


def test_an_equity_buy_is_checked_against_reg_t_buying_power():
    d = check(POWER, OrderIntent("AAPL", Side.BUY, qty=D(800)), price="180")
    assert d.allowed  # 144,000: above the cash, within Reg T
    refused = check(POWER, OrderIntent("AAPL", Side.BUY, qty=D(1200)), price="180")
    assert refused.reason == "buying_power: order 216,000.00 > Reg T buying power 200,000.00"


def test_a_plain_number_is_still_the_one_buying_power():
    d = check(D("1000"), OrderIntent("BTC/USD", Side.BUY, qty=D("1")), price="5000",
              marginable_buy=False)  # fmt: skip
    assert d.reason == "buying_power: order 5,000.00 > buying power 1,000.00"


# -- the simulated account ----------------------------------------------------------------------

T0 = datetime(2026, 1, 6, 15, 0, tzinfo=UTC)  # a Tuesday, market open


def sim_broker(**settings):
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.clock import BacktestClock

    return SimBroker(SimSettings(partial_fill_probability=0.0, **settings), BacktestClock(T0))


@pytest.mark.parametrize("multiplier", [1, 2, 4])
def test_the_sim_account_reports_alpacas_buying_powers_consistently(multiplier):
    from mqd_cli.model import OrderType, TimeInForce

    broker = sim_broker(multiplier=multiplier)
    broker.submit_order(
        OrderIntent("AAPL", Side.BUY, qty=D(100), type=OrderType.MARKET,
                    time_in_force=TimeInForce.DAY, client_order_id="bp-1")
    )  # fmt: skip
    a = broker.get_account()
    excess = a.equity - a.initial_margin
    if multiplier == 1:
        assert a.regt_buying_power == a.non_marginable_buying_power == a.cash == a.buying_power
    else:
        assert a.regt_buying_power == excess * 2
        assert a.non_marginable_buying_power == min(a.cash, excess)
        assert a.options_buying_power == excess
    assert a.effective_buying_power == a.buying_power
    assert a.position_market_value == a.long_market_value + abs(a.short_market_value)
    assert a.balance_asof == datetime(2026, 1, 5).date()  # the trading day before
    assert a.pattern_day_trader is None and a.daytrading_buying_power is None


def test_the_emulator_serves_the_sim_accounts_buying_powers_to_the_alpaca_adapter(emulator):
    from mqd_cli.brokers.alpaca import AlpacaBroker

    srv = emulator()
    broker = AlpacaBroker(srv.alpaca_settings())
    try:
        a = broker.get_account()
    finally:
        broker.close()
    assert a.regt_buying_power == a.buying_power == 2 * a.equity  # a fresh margin account
    assert a.non_marginable_buying_power == a.cash == a.options_buying_power
    assert a.effective_buying_power == a.buying_power and a.crypto_status == "ACTIVE"
    assert a.raw["admin_configurations"] == {} and a.raw["user_configurations"] is None
    assert a.created_at is not None and a.balance_asof is not None
    assert "bod_dtbp" not in a.raw and "pattern_day_trader" not in a.raw


# -- the engine picks the power by asset ----------------------------------------------------------


def test_the_engine_refuses_a_crypto_buy_beyond_cash_but_sends_an_equity_buy_on_margin():
    from mqd_cli.config.loading import loads
    from mqd_cli.factory import Services
    from mqd_cli.model import Bar
    from mqd_cli.strategies.base import BaseStrategy
    from mqd_cli.symbols.sync import sync

    settings = loads(
        '[risk]\nmax_order_notional = "0"\nmax_position_notional = "0"\n'
        'max_gross_exposure = "0"\n[sim]\npartial_fill_probability = 0.0\n'
    ).settings
    services = Services(settings).backtest_session(T0)
    clock, broker, store = services.clock, services.sim_broker, services.store
    sync(store, broker, clock)

    class Plan(BaseStrategy):
        name = "plan"
        plan: list[OrderIntent] = []

        def on_bar(self, bar, ctx):
            out, self.plan = self.plan, []
            return out

    strategy = Plan()
    protections = services.session_protections()
    engine = services.engine(
        strategy, tracker=services.session_tracker(strategy.name), protections=protections
    )
    protections.notify = engine.on_protection
    broker.subscribe(engine.on_trade_update)

    def step(symbol: str, close: str, intent: OrderIntent) -> None:
        strategy.plan = [intent]
        clock.advance(60)
        c = D(close)
        engine.on_bar(Bar(symbol, clock.now() - timedelta(minutes=1), c, c, c, c, D(1000)))

    # 145,875 of BTC/USD: within Reg T (about 200,000), beyond the cash (100,000)
    step("BTC/USD", "97250", OrderIntent("BTC/USD", Side.BUY, qty=D("1.5"), reason="entry"))
    (refusal,) = engine.refusals
    assert (refusal.stage, refusal.rule) == ("risk", "buying_power")
    assert "non-marginable buying power 100,000.00" in refusal.reason
    # 144,000 of AAPL goes out on margin
    step("AAPL", "180", OrderIntent("AAPL", Side.BUY, qty=D(800), reason="entry"))
    assert engine.stats.submitted == 1 and len(engine.refusals) == 1
