"""The sim's asset universe: the built-in names and the 35,000-asset generator."""

from __future__ import annotations

from decimal import Decimal

from mqd_cli.brokers.sim.assets import START_PRICES, default_assets, generate_universe
from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import SimSettings
from mqd_cli.model import AssetClass, AssetStatus
from mqd_cli.wire.format import asset_to_wire
from mqd_cli.wire.parse import parse_asset


def test_built_in_universe_covers_every_rule():
    assets = {a.symbol: a for a in default_assets()}
    assert assets["AAPL"].fractionable and assets["AAPL"].shortable
    assert not assets["BRK.A"].fractionable
    assert assets["GME"].shortable and not assets["GME"].easy_to_borrow
    assert not assets["AMC"].shortable
    assert START_PRICES["ZOM"] < 1
    assert assets["TWTR"].status is AssetStatus.INACTIVE and not assets["TWTR"].tradable
    btc = assets["BTC/USD"]
    assert btc.asset_class is AssetClass.CRYPTO and btc.exchange == "CRYPTO"
    assert (btc.min_order_size, btc.min_trade_increment, btc.price_increment) == (
        Decimal("0.0001"),
        Decimal("0.000000001"),
        Decimal("1"),
    )
    assert set(assets) <= set(START_PRICES)


def test_assets_survive_the_wire_round_trip():
    for asset in default_assets():
        assert parse_asset(asset_to_wire(asset)) == asset


def test_generated_universe_has_35000_unique_assets_builtins_first_and_is_deterministic():
    universe = generate_universe()
    assert len(universe) == 35_000
    assert len({a.symbol for a in universe}) == 35_000
    assert len({a.id for a in universe}) == 35_000
    assert [a.symbol for a in universe[:3]] == ["AAPL", "MSFT", "SPY"]
    assert generate_universe(500, seed=1) == generate_universe(500, seed=1)
    assert generate_universe(500, seed=1) != generate_universe(500, seed=2)
    inactive = sum(a.status is AssetStatus.INACTIVE for a in universe)
    assert 0.03 < inactive / len(universe) < 0.09
    assert all(a.tradable == (a.status is AssetStatus.ACTIVE) for a in universe)


def test_sim_broker_with_universe_size_lists_and_trades_generated_assets():
    broker = SimBroker(SimSettings(universe_size=2_000), BacktestClock())
    assets = broker.list_assets()
    assert len(assets) == 2_000
    active = [a for a in assets[20:] if a.status is AssetStatus.ACTIVE]
    assert broker.get_asset(active[0].symbol) == active[0]
    assert broker.get_asset(active[0].id) == active[0]
    assert broker.last_price(active[0].symbol) > 0
    assert (
        len(broker.list_assets(status="inactive")) + len(broker.list_assets(status="active"))
        == 2_000
    )
