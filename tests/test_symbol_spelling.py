"""One spelling per symbol: Alpaca's ``BTCUSD`` (positions) and ``BTC/USD`` (orders, assets)
meet on one key in positions, reconcile, the risk gate, protections and the tracker.

Real payload: alpaca-py's ``tests/trading/trading_client/test_position_routes.py``
(``test_close_all_positions``, alpacahq/alpaca-py@bd1fa9ea2fc3194914be9d47f7f5822a18a05b5f)
names the position ``BTCUSD`` and the order that closes it ``BTC/USD``.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli.config.loading import loads
from mqd_cli.factory import Services
from mqd_cli.model import AssetClass, OrderIntent, Side, TimeInForce
from mqd_cli.reconcile.record import ReconcileOptions, reconcile
from mqd_cli.symbols.spelling import canonical_symbol, crypto_pair, position_symbol
from mqd_cli.symbols.sync import sync
from mqd_cli.wire.format import position_to_wire
from mqd_cli.wire.parse import parse_position
from tests.test_engine import D, build, step

BASES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6)
QUOTES = st.sampled_from(["USD", "USDT", "USDC", "BTC"])


def test_a_crypto_position_named_btcusd_is_keyed_as_its_orders_are():
    assert canonical_symbol("BTCUSD", AssetClass.CRYPTO) == "BTC/USD"
    assert canonical_symbol("ethusdt", "crypto") == "ETH/USDT"  # USDT wins over USD
    assert canonical_symbol("BTC/USD", AssetClass.CRYPTO) == "BTC/USD"
    assert position_symbol("BTC/USD", AssetClass.CRYPTO) == "BTCUSD"


def test_without_a_crypto_class_no_slash_is_guessed():
    # an equity may end in a quote currency's letters: never split it
    assert canonical_symbol("TUSD") == "TUSD"
    assert canonical_symbol(" aapl ", AssetClass.US_EQUITY) == "AAPL"
    assert position_symbol("AAPL", AssetClass.US_EQUITY) == "AAPL"
    assert crypto_pair("AAPL") is None
    assert crypto_pair("USD") is None


@given(BASES.filter(lambda b: not b.endswith(("USD", "USDT", "USDC", "BTC"))), QUOTES)
def test_both_spellings_of_a_pair_map_to_one_symbol(base, quote):
    pair = f"{base}/{quote}"
    for spelling in (pair, f"{base}{quote}", f"{base}{quote}".lower()):
        assert canonical_symbol(spelling, AssetClass.CRYPTO) == pair
    assert canonical_symbol(position_symbol(pair, "crypto"), "crypto") == pair


@given(st.text(max_size=12), st.sampled_from([None, AssetClass.CRYPTO, AssetClass.US_EQUITY]))
def test_the_one_spelling_is_stable(symbol, asset_class):
    once = canonical_symbol(symbol, asset_class)
    assert canonical_symbol(once, asset_class) == once


def test_a_real_crypto_position_payload_parses_to_the_pair_and_keeps_the_raw_name():
    # the shape of Alpaca's position (alpaca-py Position), as the close-all fixture names it
    payload = {
        "asset_id": "276e2673-764b-4ab6-a611-caf665ca6340",
        "symbol": "BTCUSD",
        "exchange": "FTXU",
        "asset_class": "crypto",
        "avg_entry_price": "23353.5",
        "qty": "0.0283",
        "qty_available": "0.0283",
        "side": "long",
        "market_value": "660.9",
        "cost_basis": "660.90",
        "unrealized_pl": "0",
        "unrealized_plpc": "0",
        "unrealized_intraday_pl": "0",
        "unrealized_intraday_plpc": "0",
        "current_price": "23353.5",
        "lastday_price": "23000",
        "change_today": "0.0153",
        "asset_marginable": False,
    }
    position = parse_position(payload)
    assert position.symbol == "BTC/USD"
    assert position.qty == Decimal("0.0283")
    assert position.raw["symbol"] == "BTCUSD"
    # and the emulator writes it back the way Alpaca does
    assert position_to_wire(position)["symbol"] == "BTCUSD"


def test_an_equity_position_keeps_its_symbol():
    payload = {"symbol": "AAPL", "qty": "3", "avg_entry_price": "180", "asset_class": "us_equity"}
    assert parse_position(payload).symbol == "AAPL"


def test_a_crypto_round_trip_through_the_emulator_reconciles_clean(emulator, tmp_path):
    """Order ``BTC/USD``, the emulator names the position ``BTCUSD`` on the wire as Alpaca
    does, mqd reads it back as ``BTC/USD`` and reconcile finds nothing."""
    srv = emulator()
    settings = loads(srv.config_toml() + f'\n[store]\npath = "{tmp_path / "mqd.db"}"\n').settings
    services = Services(settings)
    try:
        broker = services.broker
        tracker = services.session_tracker("spell")
        intent = tracker.start(
            OrderIntent(
                "BTC/USD",
                Side.BUY,
                qty=Decimal("0.0125"),
                time_in_force=TimeInForce.GTC,
                strategy="spell",
                reason="entry",
            )
        )
        tracker.on_submitted(broker.submit_order(intent))
        srv.advance(120)
        tracker.apply_order_report(broker.get_order_by_client_id(intent.client_order_id))

        wire = httpx.get(srv.base_url + "/v2/positions", headers=srv.headers, timeout=10).json()
        assert [p["symbol"] for p in wire] == ["BTCUSD"]
        positions = broker.list_positions()
        assert [(p.symbol, p.qty) for p in positions] == [("BTC/USD", Decimal("0.0125"))]
        assert broker.get_position("BTCUSD").symbol == "BTC/USD"
        assert broker.get_position("BTC/USD").qty == Decimal("0.0125")
        assert tracker.position_qty("BTC/USD") == Decimal("0.0125")

        run = reconcile(
            store=services.store,
            tracker=tracker,
            broker=broker,
            clock=services.clock,
            options=ReconcileOptions(lookback=timedelta(days=400)),
        )
        assert run.report.findings == (), run.report.findings
    finally:
        services.close()


def test_an_intent_spelled_btcusd_is_sent_tracked_and_counted_as_btc_usd():
    engine, strategy, broker, clock, store = build()
    sync(store, broker, clock)
    step(
        engine,
        clock,
        strategy,
        [OrderIntent("BTCUSD", Side.BUY, qty=D("0.01"), time_in_force=TimeInForce.GTC)],
        close="97250",
        symbol="BTC/USD",
    )
    assert engine.stats.submitted == 1
    order = engine.tracker.orders()[0]
    assert order.symbol == "BTC/USD"
    assert order.client_order_id.endswith("-scripted-BTCUSD-1")
    assert engine.ctx.position("BTC/USD") == D("0.01")
    assert broker.get_position("BTCUSD").qty == D("0.01")


def test_alpaca_py_sees_the_crypto_position_named_as_alpaca_names_it(emulator):
    """The unmodified alpaca-py client: order BTC/USD, position BTCUSD, close by BTCUSD."""
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import AssetClass as PyAssetClass
    from alpaca.trading.enums import OrderSide
    from alpaca.trading.enums import TimeInForce as PyTimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    srv = emulator()
    client = TradingClient(srv.key_id, srv.secret_key, paper=True, url_override=srv.base_url)
    order = client.submit_order(
        MarketOrderRequest(
            symbol="BTC/USD", qty=0.01, side=OrderSide.BUY, time_in_force=PyTimeInForce.GTC
        )
    )
    assert order.symbol == "BTC/USD"
    srv.advance(120)
    [position] = client.get_all_positions()
    assert position.symbol == "BTCUSD" and position.asset_class is PyAssetClass.CRYPTO
    assert client.get_open_position("BTCUSD").qty == "0.01"
    closing = client.close_position("BTCUSD")
    assert closing.symbol == "BTC/USD" and closing.side is OrderSide.SELL
