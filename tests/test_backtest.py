"""`mqd backtest`: the engine on a simulated clock; deterministic; CSV data; user strategies."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mqd_cli.brokers.sim.prices import DEFAULT_ORIGIN
from mqd_cli.config.loading import loads
from mqd_cli.config.settings import Settings
from mqd_cli.factory import Services
from mqd_cli.trading.backtest import _lock_seconds

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
DEMO = """
[strategy.params]
fast = 5
slow = 20
stop_loss_pct = 0.1
take_profit_pct = 0.5
"""


def test_the_same_seed_gives_the_same_report_and_another_seed_another():
    s = loads(DEMO).settings
    a = Services(s).backtest(start=START, end=START + timedelta(hours=6)).as_dict()
    b = Services(s).backtest(start=START, end=START + timedelta(hours=6)).as_dict()
    for doc in (a, b):
        doc.pop("seconds")
    assert a == b
    assert a["trades_count"] > 5
    other = dataclasses.replace(s, sim=dataclasses.replace(s.sim, seed=7))
    c = Services(other).backtest(start=START, end=START + timedelta(hours=6)).as_dict()
    assert c["trades"] != a["trades"]


def test_stop_losses_trip_stoploss_guard_and_entries_wait_for_the_lock_to_end():
    s = loads(DEMO).settings
    r = Services(s).backtest(start=START, end=START + timedelta(hours=4))
    assert r.locks_by_protection().get("stoploss_guard", 0) >= 1
    lock = r.locks[0]
    assert r.refusals.get("protections", 0) > 0
    # no trade opened while the lock held
    assert not any(lock.start < t.opened_at < lock.end for t in r.trades)
    assert r.lock_seconds == pytest.approx((lock.end - lock.start).total_seconds())


def test_the_report_adds_up():
    end = DEFAULT_ORIGIN + timedelta(hours=8)
    r = Services(Settings()).backtest(start=DEFAULT_ORIGIN, end=end)
    d = r.as_dict()
    assert d["bars"] == 2 * 8 * 60
    assert d["trades_count"] == len(d["trades"])
    assert Decimal(d["realized_pnl"]) == sum(t.pnl for t in r.trades)
    wins = sum(1 for t in r.trades if t.pnl > 0)
    assert d["win_rate"] == round(wins / len(r.trades), 4)
    assert 0 <= d["max_drawdown"] < 1 and 0 <= d["exposure"] <= 1
    assert r.final_equity == r.starting_cash + r.net_pnl


def test_max_drawdown_is_the_decimal_ratio_of_the_deepest_fall_below_the_peak():
    r = Services(loads(DEMO).settings).backtest(start=START, end=START + timedelta(hours=6))
    assert isinstance(r.max_drawdown, Decimal) and r.max_drawdown_amount > 0
    assert all(isinstance(p.drawdown, Decimal) for p in r.equity_curve)
    assert max(p.drawdown for p in r.equity_curve) <= r.max_drawdown < 1
    assert r.as_dict()["max_drawdown"] == r.max_drawdown.quantize(Decimal("0.000001"))


def test_letting_go_of_finished_orders_leaves_the_report_unchanged(monkeypatch):
    import mqd_cli.trading.backtest as backtest

    s = loads(DEMO).settings
    end = START + timedelta(hours=8)
    monkeypatch.setattr(backtest, "FORGET_EVERY", 2)
    often = Services(s).backtest(start=START, end=end).as_dict()
    monkeypatch.setattr(backtest, "FORGET_EVERY", 10**9)
    never = Services(s).backtest(start=START, end=end).as_dict()
    for doc in (often, never):
        doc.pop("seconds")
    assert often == never and often["orders"]["submitted"] > 4


def test_fees_and_slippage_from_sim_settings_cost_money():
    base = loads(DEMO).settings
    costly = loads(DEMO + '[sim]\nfee_per_share = "0.01"\nslippage_bps = "5"\n').settings
    end = START + timedelta(hours=6)
    cheap_run = Services(base).backtest(start=START, end=end, symbols=["AAPL"])
    costly_run = Services(costly).backtest(start=START, end=end, symbols=["AAPL"])
    assert costly_run.fees > 0
    assert costly_run.net_pnl < cheap_run.net_pnl


def test_lock_time_counts_overlapping_locks_once():
    class L:
        def __init__(self, a, b):
            self.start, self.end = START + timedelta(minutes=a), START + timedelta(minutes=b)

    locks = [L(0, 60), L(30, 90), L(200, 230)]
    assert _lock_seconds(locks, START + timedelta(minutes=220)) == (90 + 20) * 60


def write_csv(path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "open", "high", "low", "close", "volume", "symbol"])
        w.writerows(rows)


def trending_rows(symbol: str, n: int = 120):
    rows = []
    for i in range(n):
        # down for 40 bars, up for 40, down again: two crossovers
        leg = i // 40
        price = 100 + (i % 40) * (0.5 if leg == 1 else -0.5) + (20 if leg == 2 else 0)
        t = (START + timedelta(minutes=i)).isoformat()
        rows.append([t, price, price + 0.2, price - 0.2, price, 1000, symbol])
    return rows


def test_a_csv_backtest_fills_at_the_files_prices(mqd, tmp_path):
    data = tmp_path / "bars.csv"
    write_csv(data, trending_rows("TEST"))
    r = mqd("backtest", "--data", data, "--json")
    doc = r.json
    assert doc["symbols"] == ["TEST"] and doc["bars"] == 120
    assert doc["orders"]["fills"] >= 1
    prices = {Decimal(str(row[1])) for row in trending_rows("TEST")}
    for t in doc["trades"]:
        assert Decimal(t["entry_price"]) in prices


def test_a_symbol_missing_from_the_csv_is_refused_at_once_naming_what_the_file_has(mqd, tmp_path):
    # before: the span fell back to a synthetic walk from 1970 to 9999 and ran out of memory
    data = tmp_path / "bars.csv"
    write_csv(data, trending_rows("TEST"))
    r = mqd("backtest", "--data", data, "--symbols", "MSFT", expect=2)
    assert "MSFT not in" in r.stderr and "it has TEST" in r.stderr and "hint:" in r.stderr
    # a file without a symbol column holds the symbol of its name
    plain = tmp_path / "aapl.csv"
    plain.write_text("timestamp,open,high,low,close,volume\n2026-01-05T14:30:00Z,1,2,0.5,1.5,10\n")
    r = mqd("backtest", "--data", plain, "--symbols", "MSFT,AAPL", expect=2)
    assert "MSFT not in" in r.stderr and "it has AAPL" in r.stderr


def test_a_range_of_more_bars_than_a_backtest_runs_is_refused_before_any_bar(mqd):
    r = mqd("backtest", "--synthetic", "--from", "1970-01-01", "--to", "9999-01-01", expect=2)
    assert "bars of 2 symbol(s) at 1m: more than 100,000,000" in r.stderr
    assert "shorten the range" in r.stderr


def test_a_malformed_csv_is_a_usage_error_naming_the_line(mqd, tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("timestamp,open,high,low,close,volume\n2026-01-05T14:30:00Z,1,2,0.5,x,10\n")
    r = mqd("backtest", "--data", data, expect=2)
    assert "bad.csv:2" in r.stderr


def test_a_user_strategy_is_loaded_from_a_file(mqd, config_file, tmp_path):
    (tmp_path / "mine.py").write_text(
        "from decimal import Decimal\n"
        "from mqd_cli.model import OrderIntent, Side\n"
        "from mqd_cli.strategies.base import BaseStrategy, Param\n"
        "class EveryTen(BaseStrategy):\n"
        "    name = 'every_ten'\n"
        "    PARAMS = {'every': Param(int, 10, 'bars between trades', min=1)}\n"
        "    def on_bar(self, bar, ctx):\n"
        "        self.n = getattr(self, 'n', 0) + 1\n"
        "        if self.n % self.params['every']:\n"
        "            return []\n"
        "        pos = ctx.position(bar.symbol)\n"
        "        side = Side.SELL if pos else Side.BUY\n"
        "        return [OrderIntent(bar.symbol, side, qty=Decimal(1), reason='signal')]\n"
    )
    cfg = config_file(
        '[strategy]\nname = "mine.py:EveryTen"\nsymbols = ["AAPL"]\n[strategy.params]\nevery = 30\n'
    )
    doc = mqd(
        "backtest",
        "--config",
        cfg,
        "--from",
        "2026-01-05",
        "--to",
        "2026-01-05T10:00:00Z",
        "--json",
    ).json
    assert doc["strategy"] == "every_ten"
    assert doc["bars"] == 600 and doc["orders"]["submitted"] == 20
    assert doc["trades_count"] == 10


def test_an_unknown_symbol_is_a_usage_error(mqd):
    r = mqd("backtest", "--symbols", "NOPE", expect=2)
    assert "NOPE" in r.stderr


def test_the_table_report_lists_the_metrics(mqd):
    r = mqd("backtest", "--synthetic", "--from", "2026-01-05", "--to", "2026-01-05T06:00:00Z")
    for word in ("win rate", "max drawdown", "exposure", "protection triggers", "lock time"):
        assert word in r.stdout


def test_plot_writes_a_png_or_explains_the_missing_extra(mqd, tmp_path):
    out = tmp_path / "equity.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        r = mqd("backtest", "--to", "2026-01-02T18:30:00Z", "--plot", out, expect=2)
        assert "mqd[plot]" in r.stderr
        return
    mqd("backtest", "--to", "2026-01-02T18:30:00Z", "--plot", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("name", "says"),
    [("out.txt", "cannot write a txt file"), ("missing/dir/x.png", "no directory")],
)
def test_a_plot_target_that_cannot_be_written_is_refused_before_the_run(mqd, tmp_path, name, says):
    r = mqd("backtest", "--synthetic", "--plot", tmp_path / name, "--json", expect=2)
    assert says in r.stderr and "hint:" in r.stderr
    assert r.stdout == ""  # refused before any bar: no report


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_backtest_with_a_partial_report_and_exit_130(tmp_path, sig):
    (tmp_path / "mqd.toml").write_text(f'[store]\npath = "{tmp_path / "mqd.db"}"\n')
    env = {**os.environ, "MQD_CONFIG": str(tmp_path / "mqd.toml")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqd_cli", "backtest", "--synthetic", "--json"]
        + ["--symbols", "AAPL", "--from", "2026-01-05", "--to", "2027-12-31"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # into the bars (a two-year run takes far longer)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    stopped = datetime.fromisoformat(doc["interrupted_at"])
    assert doc["end"] == doc["interrupted_at"] and stopped < datetime(2027, 12, 31, tzinfo=UTC)
    assert doc["bars"] > 0
    assert "interrupted at" in err and "covers the bars up to then" in err


def test_the_report_has_risk_adjusted_metrics_and_a_per_symbol_table(mqd):
    doc = mqd(
        "backtest", "--synthetic", "--from", "2026-01-05", "--to", "2026-01-09", "--json"
    ).json
    metrics = doc["metrics"]
    assert set(metrics) == {
        "sharpe",
        "sortino",
        "daily_returns",
        "profit_factor",
        "expectancy",
        "longest_drawdown",
    }
    assert metrics["daily_returns"] == 4  # 01-05 .. 01-08 and the final point at 01-09 00:00
    assert isinstance(metrics["sharpe"], float)
    per_symbol = doc["by_symbol"]
    assert set(per_symbol) == set(doc["symbols"])
    assert sum(Decimal(s["pnl"]) for s in per_symbol.values()) == Decimal(doc["realized_pnl"])
    assert sum(s["trades"] for s in per_symbol.values()) == doc["trades_count"]
    text = mqd("backtest", "--synthetic", "--from", "2026-01-05", "--to", "2026-01-09").stdout
    for words in ("Sharpe / Sortino", "profit factor", "longest drawdown", "By symbol"):
        assert words in text


def test_the_chart_has_a_legend_and_marks_entries_and_exits(mqd, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")  # the 'plot' extra; the test extra has it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mqd_cli.trading.backtest import plot_figure

    settings = loads("[sim]\nseed = 7\n").settings
    result = Services(settings).backtest(
        start=DEFAULT_ORIGIN, end=DEFAULT_ORIGIN + timedelta(hours=6)
    )
    assert result.trades
    fig = plot_figure(result, plt)
    try:
        top = fig.axes[0]
        labels = [t.get_text() for t in top.get_legend().get_texts()]
        assert labels[:3] == ["equity", "starting cash", "entry"]
        assert any(label.startswith("exit") for label in labels)
        marks = {c.get_label(): len(c.get_offsets()) for c in top.collections}
        assert marks["entry"] == len(result.trades)
        assert sum(n for k, n in marks.items() if k.startswith("exit")) == len(result.trades)
    finally:
        plt.close(fig)
    out = tmp_path / "equity.png"
    mqd("backtest", "--synthetic", "--to", "2026-01-02T18:30:00Z", "--plot", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
