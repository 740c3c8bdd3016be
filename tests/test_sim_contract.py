"""The Broker contract (tests/contract_broker.py) on SimBroker, in-process on a BacktestClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import SimSettings
from tests.contract_broker import CONTRACT, Harness

MONDAY_0935_NY = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)
_S, _M = timedelta(seconds=1), timedelta(minutes=1)


def _harness(**settings) -> Harness:
    clock = BacktestClock(MONDAY_0935_NY)
    broker = SimBroker(SimSettings(**settings), clock)

    def advance(seconds: float) -> None:
        clock.advance(seconds)
        broker.step()

    return Harness(broker=broker, advance=advance)


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__.removeprefix("check_"))
def test_sim_broker_honours_the_broker_contract(check):
    check(_harness())


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__.removeprefix("check_"))
def test_sim_broker_honours_the_contract_under_nyse_hours_with_frequent_partial_fills(check):
    check(_harness(market_hours="nyse", partial_fill_probability=0.9, liquidity=2))


def test_sim_broker_satisfies_the_broker_protocol():
    from mqd_cli.brokers.base import Broker

    assert isinstance(_harness().broker, Broker)


def test_the_factory_builds_a_sim_broker_on_the_services_clock_for_broker_sim(tmp_path):
    from mqd_cli.config.settings import Settings
    from mqd_cli.factory import Services

    clock = BacktestClock(MONDAY_0935_NY)
    services = Services(Settings(), clock=clock)
    broker = services.broker
    assert isinstance(broker, SimBroker) and broker.clock is clock
    assert services.broker is broker


def test_price_csv_setting_replays_the_file(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(
        "symbol,timestamp,open,high,low,close,volume\n"
        "ACME,2026-01-05T14:35:00Z,10,11,9,10.5,100\n"
        "ACME,2026-01-05T14:36:00Z,10.5,10.8,10.1,10.2,100\n",
        encoding="utf-8",
    )
    clock = BacktestClock(MONDAY_0935_NY)
    broker = SimBroker(SimSettings(price_csv=str(path)), clock)
    assert broker.last_price("ACME") == 10
    assert broker.get_asset("ACME").tradable
    assert [b.close for b in broker.bars("ACME", MONDAY_0935_NY, clock.now() + 120 * _S, _M)] == [
        Decimal("10.5"),
        Decimal("10.2"),
    ]
