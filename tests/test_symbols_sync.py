"""`symbols.sync`: 35,000 assets, the diff against the previous sync, one transaction."""

from __future__ import annotations

import dataclasses
import gc
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from mqd_cli.brokers.errors import BrokerUnavailable
from mqd_cli.brokers.sim.assets import default_assets, generate_universe
from mqd_cli.clock import BacktestClock
from mqd_cli.model import AssetInfo, AssetStatus
from mqd_cli.store import Store
from mqd_cli.store import symbols as db
from mqd_cli.symbols.book import SymbolBook
from mqd_cli.symbols.sync import sync
from mqd_cli.wire import format as wire_format
from mqd_cli.wire import parse as wire_parse
from mqd_cli.wire.parse import PayloadError, _parse_asset_checked

T0 = datetime(2026, 9, 16, 14, 0, tzinfo=UTC)


_NEVER = "never"


class ListBroker:
    """Serves ``assets``; without a class every one of them (what Alpaca does), or only
    ``default_class`` (what its reference documents). ``fail_on``: the class whose request
    fails (None: the request without a class)."""

    name = "list"

    def __init__(
        self,
        assets: list[AssetInfo],
        fail_on: str | None = _NEVER,
        default_class: str | None = None,
    ):
        self.assets = assets
        self.fail_on = fail_on
        self.default_class = default_class
        self.calls: list[str | None] = []

    def list_assets(self, asset_class: str | None = None, status: str | None = None):
        self.calls.append(asset_class)
        if asset_class == self.fail_on:
            raise BrokerUnavailable("connection reset")
        wanted = asset_class or self.default_class
        return [a for a in self.assets if wanted in (None, a.class_text)]


def universe_broker(assets: list[AssetInfo]):
    """The simulated broker built with this universe."""
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.config.settings import SimSettings

    return SimBroker(SimSettings(), BacktestClock(T0), assets=assets)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "mqd.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def universe():
    return generate_universe(35_000, seed=7)


def test_sync_of_35000_assets_stores_every_one_and_the_cache_serves_them(store, universe):
    clock = BacktestClock(T0)
    report = sync(store, universe_broker(universe), clock)
    assert report.fetched == 35_000 and report.first_sync
    assert len(report.added) == 35_000 and not report.removed and not report.changed
    assert report.by_class["crypto"] == 3
    assert db.asset_count(store) == 35_000
    book = SymbolBook(store, clock)
    assert len(book) == 35_000
    last = universe[-1]
    assert book.get(last.symbol).fractionable == last.fractionable
    assert book.get("BTC/USD").min_order_size == D("0.0001")


def test_a_second_sync_reports_added_removed_and_changed_fields(store, universe):
    clock = BacktestClock(T0)
    sync(store, ListBroker(universe), clock)
    changed = list(universe)
    by_symbol = {a.symbol: i for i, a in enumerate(changed)}
    i = by_symbol["AAPL"]
    changed[i] = dataclasses.replace(changed[i], fractionable=False, tradable=False)
    i = by_symbol["GME"]
    changed[i] = dataclasses.replace(
        changed[i], easy_to_borrow=True, margin_requirement_short=D("50.0")
    )
    i = by_symbol["BTC/USD"]
    changed[i] = dataclasses.replace(changed[i], min_order_size=D("0.00010"))  # same value
    removed = [changed.pop(by_symbol["MSFT"]) for _ in range(1)]
    new = dataclasses.replace(default_assets()[0], symbol="NEWCO", id="new-id", name="NewCo")
    changed.append(new)
    clock.advance(timedelta(hours=6))

    report = sync(store, ListBroker(changed), clock)

    assert report.added == ["NEWCO"]
    assert report.removed == [a.symbol for a in removed] == ["MSFT"]
    assert report.changed == {
        "AAPL": {"tradable": [True, False], "fractionable": [True, False]},
        "GME": {"easy_to_borrow": [False, True], "margin_requirement_short": ["30", "50"]},
    }
    assert report.counts() == {
        "fetched": 35_000,
        "added": 1,
        "removed": 1,
        "changed": 2,
        "unchanged": 34_997,
    }
    assert not report.first_sync
    book = SymbolBook(store, clock)
    assert book.get("MSFT") is None and book.get("NEWCO") is not None
    assert book.get("AAPL").fractionable is False
    assert book.get("AAPL").changed_at == T0 + timedelta(hours=6)
    assert book.get("SPY").changed_at == T0 and book.get("SPY").synced_at == clock.now()
    assert db.sync_diff(store, report.sync_id)["removed"] == ["MSFT"]


def test_an_asset_going_inactive_shows_as_a_status_change(store):
    clock = BacktestClock(T0)
    assets = default_assets()
    sync(store, ListBroker(assets), clock)
    assets[0] = dataclasses.replace(assets[0], status=AssetStatus.INACTIVE)
    report = sync(store, ListBroker(assets), clock)
    assert report.changed == {"AAPL": {"status": ["active", "inactive"]}}


def test_a_broker_failure_mid_sync_writes_nothing(store):
    clock = BacktestClock(T0)
    sync(store, ListBroker(default_assets()), clock)
    before = db.last_sync(store)
    smaller = default_assets()[:3]
    with pytest.raises(BrokerUnavailable):
        sync(store, ListBroker(smaller, fail_on="crypto", default_class="us_equity"), clock)
    assert db.last_sync(store) == before
    assert db.asset_count(store) == len(default_assets())


def test_a_crypto_only_sync_neither_fetches_nor_removes_equities(store):
    clock = BacktestClock(T0)
    sync(store, ListBroker(default_assets()), clock)
    broker = ListBroker([a for a in default_assets() if a.symbol != "SOL/USD"])
    report = sync(store, broker, clock, asset_class="crypto")
    assert broker.calls == ["crypto"]
    assert report.removed == ["SOL/USD"] and report.fetched == 2
    assert SymbolBook(store, clock).get("AAPL") is not None


def test_progress_is_reported_from_unknown_to_complete(store, universe):
    seen = []
    sync(
        store,
        ListBroker(universe[:5000]),
        BacktestClock(T0),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[0] == (0, 0) and seen[-1] == (5000, 5000)
    assert all(b == 5000 for _, b in seen[1:])


def test_sync_of_35000_assets_through_the_emulator_and_the_alpaca_adapter(store, emulator):
    from mqd_cli.brokers.alpaca import AlpacaBroker

    srv = emulator(universe=35_000)
    broker = AlpacaBroker(srv.alpaca_settings())
    try:
        report = sync(store, broker, BacktestClock(T0))
    finally:
        broker.close()
    assert report.fetched == 35_000
    assert report.by_class["crypto"] == 3
    book = SymbolBook(store, BacktestClock(T0))
    assert book.get("ZOM").fractionable is False
    assert book.get("ETH/USD").price_increment == D("0.1")


def test_sync_pauses_cycle_collection_and_restores_it_even_after_a_failure(store):
    seen = []

    class Watching(ListBroker):
        def list_assets(self, asset_class=None, status=None):
            seen.append(gc.isenabled())
            return super().list_assets(asset_class, status)

    assert gc.isenabled()
    sync(store, Watching(default_assets()), BacktestClock(T0))
    with pytest.raises(BrokerUnavailable):
        sync(store, Watching(default_assets(), fail_on=None), BacktestClock(T0))
    assert seen and not any(seen)
    assert gc.isenabled()


def test_the_emulator_serves_its_first_asset_list_from_bytes_built_with_the_market(
    emulator, monkeypatch
):
    import httpx

    srv = emulator(universe=2_000)

    def no_building(asset):
        raise AssertionError("the asset list was serialized per request")

    monkeypatch.setattr(wire_format, "asset_to_wire", no_building)
    for asset_class, n in (("us_equity", 1_997), ("crypto", 3)):
        response = httpx.get(
            srv.base_url + "/v2/assets",
            params={"asset_class": asset_class},
            headers=srv.headers,
            timeout=10,
        )
        assert response.status_code == 200 and len(response.json()) == n


# parse_asset's fast path (plain JSON types) must give exactly what the checked path gives.
def _asset_payloads() -> list[dict]:
    base = wire_format.asset_to_wire(default_assets()[0])
    crypto = wire_format.asset_to_wire(next(a for a in default_assets() if a.symbol == "BTC/USD"))
    variants = [base, crypto, {k: v for k, v in base.items() if k != "cusip"}]
    changes = [
        {"maintenance_margin_requirement": 30.0},
        {"maintenance_margin_requirement": "30.0"},
        {"maintenance_margin_requirement": " 30 "},
        {"maintenance_margin_requirement": "   "},
        {"maintenance_margin_requirement": True},
        {"maintenance_margin_requirement": "abc"},
        {"maintenance_margin_requirement": "1e99"},
        {"margin_requirement_long": -0.0},
        {"min_order_size": D("0.0010")},
        {"tradable": "true"},
        {"tradable": 1},
        {"shortable": None},
        {"class": "US_EQUITY"},
        {"class": "", "asset_class": "crypto"},
        {"class": "", "asset_class": ""},
        {"class": ["us_equity"]},
        {"class": "options_thing"},
        {"status": None},
        {"status": "Active"},
        {"status": {}},
        {"id": 12345},
        {"id": ""},
        {"symbol": None},
        {"exchange": None},
        {"name": ""},
        {"name": 7},
        {"cusip": ""},
        {"cusip": 37833100},
        {"attributes": ("has_options",)},
        {"attributes": ["", "has_options"]},
        {"attributes": [None]},
        {"attributes": "has_options"},
        {"attributes": 5, "maintenance_margin_requirement": "abc"},
    ]
    return variants + [{**base, **change} for change in changes]


def _outcome(parse, payload):
    try:
        asset = parse(payload)
    except PayloadError as exc:
        return ("error", str(exc))
    return ("asset", repr(vars(asset)))  # repr tells Decimal("30") from Decimal("30.0")


@pytest.mark.parametrize("payload", _asset_payloads())
def test_parse_asset_fast_path_matches_the_checked_path(payload):
    assert _outcome(wire_parse.parse_asset, payload) == _outcome(_parse_asset_checked, payload)


def test_parse_asset_decimal_cache_keeps_30_and_30_point_0_apart():
    base = wire_format.asset_to_wire(default_assets()[0])
    for value, text in ((30, "30"), (30.0, "30.0"), ("30.0", "30.0"), (30, "30"), ("30", "30")):
        asset = wire_parse.parse_asset({**base, "maintenance_margin_requirement": value})
        assert str(asset.maintenance_margin_requirement) == text
