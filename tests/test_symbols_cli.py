"""`mqd symbols sync/validate/show`: exit codes, output, malformed files, --fix."""

from __future__ import annotations

import csv
import io
import json
import string
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqd_cli.brokers.sim.assets import default_assets
from mqd_cli.clock import BacktestClock, RealTimeClock
from mqd_cli.factory import Services
from mqd_cli.orders.files import MalformedFile, parse_csv, parse_json
from mqd_cli.store import Store
from mqd_cli.symbols.sync import sync


class ListBroker:
    name = "list"

    def __init__(self, assets):
        self.assets = assets

    def list_assets(self, asset_class=None, status=None):
        return [a for a in self.assets if asset_class in (None, a.asset_class.value)]


@pytest.fixture
def synced(tmp_path):
    """The CLI's store (tmp_path/mqd.db) after a sync of the sim universe, just now."""
    store = Store.open(tmp_path / "mqd.db")
    sync(store, ListBroker(default_assets()), RealTimeClock())
    store.close()
    return tmp_path / "mqd.db"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


ORDERS_CSV = """symbol,side,qty,notional,type,limit_price,stop_price,time_in_force,extended_hours
AAPL,buy,10,,limit,178.50,,day,false
AAPL,buy,10,,limit,11.055,,day,false
BRK.A,buy,1.5,,market,,,day,
BTC/USD,buy,0.00005,,limit,97250.5,,day,
"""


# -- validate -------------------------------------------------------------------------------------


def test_validate_before_any_sync_exits_4_with_the_hint(mqd, tmp_path):
    path = write(tmp_path, "o.csv", ORDERS_CSV)
    r = mqd("symbols", "validate", path, expect=4)
    assert "no symbol sync has run yet" in r.stderr
    assert "mqd symbols sync" in r.stderr


def test_validate_all_valid_exits_0(mqd, tmp_path, synced):
    path = write(tmp_path, "o.csv", "symbol,side,qty,type,limit_price\nAAPL,buy,3,limit,178.5\n")
    r = mqd("symbols", "validate", path)
    assert "1 orders, 1 valid, 0 invalid" in r.stdout


def test_validate_reports_each_problem_with_its_line_and_exits_1(mqd, tmp_path, synced):
    path = write(tmp_path, "o.csv", ORDERS_CSV)
    r = mqd("symbols", "validate", path, "--json", expect=1)
    doc = r.json
    assert (doc["orders"], doc["valid"], doc["invalid"]) == (4, 1, 3)
    codes = {res["line"]: [p["code"] for p in res["problems"]] for res in doc["results"]}
    assert codes == {
        2: [],
        3: ["PRICE_INCREMENT"],
        4: ["NOT_FRACTIONABLE"],
        5: ["PRICE_INCREMENT", "CRYPTO_TIF", "BELOW_MIN_QTY"],
    }
    fix = doc["results"][1]["problems"][0]
    assert fix["corrected"]["limit_price"] == "11.05"
    text = mqd("symbols", "validate", path, expect=1).stdout
    assert "PRICE_INCREMENT" in text and "4 orders, 1 valid, 3 invalid" in text


def test_validate_fix_writes_corrected_orders_that_validate(mqd, tmp_path, synced):
    path = write(tmp_path, "o.csv", ORDERS_CSV + "TWTR,buy,1,,market,,,day,\n")
    out = tmp_path / "fixed.csv"
    r = mqd("symbols", "validate", path, "--fix", out, expect=1)
    assert "line 6 (TWTR) cannot be fixed" in r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [
        (row["symbol"], row["qty"], row["limit_price"], row["time_in_force"]) for row in rows
    ] == [
        ("AAPL", "10", "178.50", "day"),
        ("AAPL", "10", "11.05", "day"),
        ("BRK.A", "1", "", "day"),
        ("BTC/USD", "0.0001", "97250", "gtc"),
    ]
    mqd("symbols", "validate", out)


def test_validate_fix_keeps_the_json_format(mqd, tmp_path, synced):
    orders = [
        {
            "symbol": "AAPL",
            "side": "sell",
            "qty": 0.5,
            "type": "market",
            "time_in_force": "gtc",
            "position_qty": "0.5",
        }
    ]
    path = write(tmp_path, "o.json", json.dumps(orders))
    out = tmp_path / "fixed.json"
    mqd("symbols", "validate", path, "--fix", out, expect=1)
    fixed = json.loads(out.read_text())
    assert fixed == [
        {
            "symbol": "AAPL",
            "side": "sell",
            "qty": "0.5",
            "type": "market",
            "time_in_force": "day",
            "position_qty": "0.5",
        }
    ]
    mqd("symbols", "validate", out)


def test_validate_without_file_checks_the_strategy_universe(mqd, config_file, tmp_path, synced):
    mqd("symbols", "validate")
    cfg = config_file('[strategy]\nsymbols = ["AAPL", "TWTR", "BTC/USD", "NOPE"]\n', "u.toml")
    r = mqd("symbols", "validate", "--config", cfg, "--json", expect=1)
    codes = {res["symbol"]: [p["code"] for p in res["problems"]] for res in r.json["results"]}
    assert codes == {
        "AAPL": [],
        "TWTR": ["INACTIVE", "NOT_TRADABLE"],
        "BTC/USD": [],
        "NOPE": ["UNKNOWN_SYMBOL"],
    }


def test_validate_warns_when_the_sync_is_stale(mqd, config_file, tmp_path):
    store = Store.open(tmp_path / "mqd.db")
    old = BacktestClock(RealTimeClock().now() - timedelta(days=3))
    sync(store, ListBroker(default_assets()), old)
    store.close()
    r = mqd("symbols", "validate")
    assert "symbol properties are stale" in r.stderr


@pytest.mark.parametrize(
    ("name", "text", "line", "what"),
    [
        ("a.csv", "symbol,side,qtty\nAAPL,buy,1\n", 1, "did you mean 'qty'"),
        ("b.csv", "symbol,side,qty\nAAPL,buy,1\nAAPL,buy,ten\n", 3, "'ten' is not a number"),
        ("c.csv", "symbol,side,qty\n\nAAPL,buy,1,\n", 3, "fields"),
        ("d.csv", "symbol,qty\nAAPL,1\n", 1, "missing column 'side'"),
        ("e.csv", "symbol,side,qty\nAAPL,buy,1,2\n", 2, "fields"),
        ("f.csv", "", 1, "empty file"),
        (
            "g.json",
            '[\n {"symbol": "AAPL", "side": "buy", "qty": 1},\n {"symbol": "AAPL",\n',
            4,
            "JSON syntax",
        ),
        (
            "h.json",
            '[\n {"symbol": "AAPL", "side": "buy"},\n {"symbol": "MSFT", "side": "buy",'
            ' "type": "moo"}\n]',
            3,
            "type",
        ),
        ("i.json", '{"symbol": "AAPL"}', 1, "JSON list"),
        ("j.json", "[\n  1\n]", 2, "JSON object"),
        ("k.csv", "symbol,side,qty,time_in_force\nAAPL,buy,1,week\n", 2, "time_in_force"),
        ("l.csv", "symbol,side,qty\nAAPL,buy,NaN\n", 2, "out of range"),
    ],
)
def test_malformed_files_exit_2_naming_the_line(mqd, tmp_path, name, text, line, what):
    path = write(tmp_path, name, text)
    r = mqd("symbols", "validate", path, expect=2)
    assert f"{path}:{line}:" in r.stderr and what in r.stderr


def test_a_missing_file_is_a_usage_error(mqd, tmp_path):
    assert "cannot read" in mqd("symbols", "validate", tmp_path / "nope.csv", expect=2).stderr


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=300))
def test_garbage_never_crashes_the_parsers(text):
    for parse in (parse_csv, parse_json):
        try:
            parse(text)
        except MalformedFile as exc:
            assert exc.line >= 1 and f":{exc.line}:" in exc.message


_cell = st.text(alphabet=string.printable, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(st.lists(_cell, min_size=1, max_size=6), min_size=1, max_size=6),
    junk=st.sampled_from(["x", "1e999", "-", "nan", "buy!"]),
    as_json=st.booleans(),
)
def test_garbage_files_exit_2_with_a_line_through_the_cli(tmp_path_factory, rows, junk, as_json):
    from typer.testing import CliRunner

    from mqd_cli.app import app

    tmp = tmp_path_factory.mktemp("garbage")
    if as_json:
        body = json.dumps([{"symbol": "AAPL", "side": "buy", "qty": junk}] + rows)
        path = write(tmp, "g.json", body)
    else:
        buf = io.StringIO()
        csv.writer(buf).writerows([["symbol", "side", "qty"], ["AAPL", "buy", junk], *rows])
        path = write(tmp, "g.csv", buf.getvalue())
    result = CliRunner().invoke(app, ["symbols", "validate", str(path)])
    assert result.exit_code == 2, result.stderr
    assert f"{path}:" in result.stderr


# -- show -----------------------------------------------------------------------------------------


def test_show_prints_the_stored_properties_and_the_sync_age(mqd, synced):
    r = mqd("symbols", "show", "AAPL", "BTC/USD", "--json")
    aapl, btc = r.json["symbols"]
    assert aapl["fractionable"] is True and aapl["margin_requirement_long"] == "30"
    assert aapl["tick_rule"] == [["1", "0.01"], ["0", "0.0001"]]
    assert btc["price_increment"] == "1" and btc["min_order_size"] == "0.0001"
    assert r.json["sync"]["age_seconds"] >= 0 and r.json["sync"]["stale"] is False
    text = mqd("symbols", "show", "ZOM").stdout
    assert "last sync" in text and "fractionable" in text


def test_show_an_unknown_symbol_exits_1(mqd, synced):
    r = mqd("symbols", "show", "AAPL", "NOPE", expect=1)
    assert "unknown symbol: NOPE" in r.stderr


def test_show_before_any_sync_exits_4(mqd):
    assert "mqd symbols sync" in mqd("symbols", "show", "AAPL", expect=4).stderr


# -- sync -----------------------------------------------------------------------------------------

HAVE_BROKER = hasattr(Services, "broker")


def test_sync_rejects_an_unknown_asset_class(mqd):
    err = mqd("symbols", "sync", "--asset-class", "fx", expect=2).stderr
    assert "us_equity, us_option, crypto, crypto_perp" in err


@pytest.mark.skipif(not HAVE_BROKER, reason="services.broker has not landed")
def test_sync_with_the_sim_broker_prints_counts_then_a_diff(mqd):
    first = mqd("symbols", "sync", "--json").json
    counts = first["counts"]
    assert first["first_sync"] and counts["fetched"] == counts["added"] > 0
    assert "AAPL" in first["diff"]["added"]
    r = mqd("symbols", "sync")
    assert "added 0, removed 0, changed 0" in r.stdout
    mqd("symbols", "show", "AAPL")


def test_a_bad_side_is_that_orders_problem_and_the_rest_of_the_file_is_checked(
    mqd, tmp_path, synced
):
    path = write(tmp_path, "o.csv", "symbol,side,qty\nAAPL,buy,1\nAAPL,hold,1\nMSFT,sell,1\n")
    doc = mqd("symbols", "validate", path, "--json", expect=1).json
    codes = {res["line"]: [p["code"] for p in res["problems"]] for res in doc["results"]}
    assert codes == {2: [], 3: ["BAD_SIDE"], 4: []}
    assert (doc["orders"], doc["valid"], doc["invalid"]) == (3, 2, 1)
