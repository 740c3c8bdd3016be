"""Assets of classes mqd does not trade (``crypto_perp``, a class the model does not know):
synced and kept under their own class, counted, shown, and refused by validation by name."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mqd_cli.brokers.sim.assets import default_assets
from mqd_cli.clock import BacktestClock
from mqd_cli.model import AssetClass, AssetInfo
from mqd_cli.store import Store
from mqd_cli.store import symbols as db
from mqd_cli.symbols.book import SymbolBook
from mqd_cli.symbols.sync import sync
from mqd_cli.wire import parse as wire_parse

T0 = datetime(2026, 9, 16, 14, 0, tzinfo=UTC)
CORPUS = Path(__file__).parent / "corpus"


def _crypto_payload() -> dict:
    doc = json.loads((CORPUS / "asset/docs-crypto-btc-usd-ftxu.json").read_text())
    return doc["payload"]


def perp() -> AssetInfo:
    """A crypto_perp asset as the wire delivers one (alpaca-py#624 met one at index 32187)."""
    return wire_parse.parse_asset(
        {
            **_crypto_payload(),
            "id": "0f7a6d4e-1c2b-4f55-9a3e-6a1f0e2b7c10",
            "class": "crypto_perp",
            "exchange": "ASCX",
            "symbol": "BTC-PERP",
            "name": "BTC perpetual",
        }
    )


def index_asset() -> AssetInfo:
    """An asset of a class the enum does not know (``us_index`` is in Alpaca's OpenAPI)."""
    return wire_parse.parse_asset(
        {
            **_crypto_payload(),
            "id": "3d1b8c55-77aa-4e0e-b5a4-0a9d2c1e6f31",
            "class": "us_index",
            "exchange": "",
            "symbol": "SPX",
            "name": "S&P 500 Index",
        }
    )


class Served:
    """Serves ``assets``: everything without a class (Alpaca's live answer) unless
    ``default_class`` is set (the documented default)."""

    name = "served"

    def __init__(self, assets, default_class=None):
        self.assets, self.default_class, self.calls = list(assets), default_class, []

    def list_assets(self, asset_class=None, status=None):
        self.calls.append(asset_class)
        wanted = asset_class or self.default_class
        return [a for a in self.assets if wanted in (None, a.class_text)]


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "mqd.db")
    yield s
    s.close()


def universe():
    return [*default_assets(), perp(), index_asset()]


def test_a_sync_keeps_assets_of_unsupported_classes_and_counts_them(store):
    clock = BacktestClock(T0)
    served = Served(universe())
    report = sync(store, served, clock)
    assert served.calls == [None]  # one request: the answer had equities and crypto
    assert report.fetched == len(default_assets()) + 2 == db.asset_count(store)
    assert report.unsupported == {"crypto_perp": 1, "us_index": 1}
    assert report.by_class == {"us_equity": 10, "crypto": 3, "crypto_perp": 1, "us_index": 1}
    row = db.asset_row(store, "SPX")
    assert row["asset_class"] == "us_index"  # the class as the broker wrote it, not "unknown"
    book = SymbolBook(store, clock)
    spx = book.get("SPX")
    assert spx.asset_class is AssetClass.UNKNOWN and spx.class_text == "us_index"
    assert book.get("BTC-PERP").class_text == "crypto_perp"
    again = sync(store, Served(universe()), clock)
    assert again.counts()["unchanged"] == again.fetched and not again.changed


def test_a_server_applying_the_documented_default_is_asked_for_crypto_by_name(store):
    served = Served(universe(), default_class="us_equity")
    report = sync(store, served, BacktestClock(T0))
    assert served.calls == [None, "crypto"]
    assert report.by_class == {"us_equity": 10, "crypto": 3}


def test_an_unsupported_asset_no_longer_served_is_removed_by_a_full_sync(store):
    clock = BacktestClock(T0)
    sync(store, Served(universe()), clock)
    report = sync(store, Served([*default_assets(), perp()]), clock)
    assert report.removed == ["SPX"] and SymbolBook(store, clock).get("SPX") is None


def test_a_one_class_sync_leaves_the_other_classes_alone(store):
    clock = BacktestClock(T0)
    sync(store, Served(universe()), clock)
    report = sync(store, Served(default_assets()), clock, asset_class="crypto")
    assert report.asset_classes == ("crypto",) and not report.removed
    book = SymbolBook(store, clock)
    assert book.get("SPX") is not None and book.get("BTC-PERP") is not None


def test_two_assets_under_one_symbol_keep_the_first_and_are_reported(store):
    twin = dataclasses.replace(perp(), id="99999999-9999-4999-8999-999999999999")
    report = sync(store, Served([*default_assets(), perp(), twin]), BacktestClock(T0))
    assert report.duplicates == ["BTC-PERP"]
    assert db.asset_row(store, "BTC-PERP")["asset_id"] == perp().id


def test_validation_refuses_orders_for_an_unsupported_class_naming_it(store):
    from decimal import Decimal

    from mqd_cli.model import OrderIntent, Side

    clock = BacktestClock(T0)
    sync(store, Served(universe()), clock)
    book = SymbolBook(store, clock)
    intent = OrderIntent("BTC-PERP", Side.BUY, qty=Decimal("0.5"))
    (problem,) = book.validate(intent)
    assert problem.code == "UNSUPPORTED_ASSET_CLASS" and "crypto_perp" in problem.message
    prepared, adjustments, problems = book.prepare(intent)
    assert (
        prepared is None
        and adjustments == []
        and [p.code for p in problems] == ["UNSUPPORTED_ASSET_CLASS"]
    )
    assert book.correct(intent)[0] is None


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def sim_with_unsupported(monkeypatch):
    """The sim broker's built-in universe plus a crypto_perp and a us_index asset."""
    import mqd_cli.brokers.sim.broker as sim_broker

    monkeypatch.setattr(sim_broker, "default_assets", universe)


def test_sync_reports_the_kept_unsupported_assets_in_text_and_json(mqd, sim_with_unsupported):
    r = mqd("symbols", "sync")
    assert "synced 15 assets (us_equity 10, crypto 3, crypto_perp 1, us_index 1)" in r.stdout
    assert (
        "kept 2 assets of classes mqd does not trade (crypto_perp 1, us_index 1): stored and"
        " shown, orders for them are refused" in r.stdout
    )
    doc = mqd("symbols", "sync", "--json").json
    assert doc["unsupported_classes"] == {"crypto_perp": 1, "us_index": 1}
    assert doc["counts"]["fetched"] == 15 and doc["duplicates"] == []


def test_show_prints_the_raw_class_and_that_orders_are_refused(mqd, sim_with_unsupported):
    mqd("symbols", "sync")
    doc = mqd("symbols", "show", "SPX", "--json").json
    (spx,) = doc["symbols"]
    assert spx["asset_class"] == "us_index"
    assert spx["orders"] == "refused: mqd does not trade us_index assets"
    assert "tick_rule" not in spx and "qty_increment" not in spx
    text = mqd("symbols", "show", "BTC-PERP").stdout
    assert "crypto_perp" in text and "unknown" not in text


def test_validate_exits_1_with_unsupported_asset_class(mqd, tmp_path, sim_with_unsupported):
    mqd("symbols", "sync")
    path = tmp_path / "o.csv"
    path.write_text("symbol,side,qty\nSPX,buy,1\nAAPL,buy,1\n", encoding="utf-8")
    doc = mqd("symbols", "validate", path, "--json", expect=1).json
    by_line = {res["line"]: res["problems"] for res in doc["results"]}
    assert by_line[3] == []
    (problem,) = by_line[2]
    assert problem["code"] == "UNSUPPORTED_ASSET_CLASS"
    assert problem["message"] == "SPX is a us_index asset; mqd trades us_equity and crypto only"
