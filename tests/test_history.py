"""History over the store: `mqd orders`, `fills`, `trades`, `positions`, `pnl` and `runs` on the
sessions real `mqd run` sim runs keep (issue 16), with their filters, paging, `--session` and
`--run`; `mqd stream tail --journal` and `mqd protections status --history` after a sim run; a
backtest's result in `mqd runs`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# 3 simulated hours of sma_cross on AAPL and MSFT in well under a second.
FAST = """
[sim]
speed = 36000.0
partial_fill_probability = 0.0
[run]
duration = "3h"
poll_interval = "10ms"
sim_start = "2026-01-05T14:30:00Z"
[strategy.params]
fast = 5
slow = 20
stop_loss_pct = 0.1
take_profit_pct = 0.5
"""


def sim_run(mqd, cfg, *args: str) -> dict:
    """`mqd run --json` to the end; its summary line."""
    lines = mqd("run", "--config", cfg, "--json", *args).stdout.splitlines()
    summary = json.loads(lines[-1])
    assert summary["event"] == "summary"
    return summary


def doc(mqd, *args: str) -> dict:
    return mqd(*args, "--json").json


def test_a_sim_run_is_kept_and_every_history_command_agrees_with_its_summary(
    mqd, config_file, tmp_path
):
    cfg = config_file(FAST)
    summary = sim_run(mqd, cfg)
    journal = Path(summary["store"])
    assert journal.parent == tmp_path / "sim-sessions" and journal.is_file()

    runs = doc(mqd, "runs", "-c", cfg)
    assert runs["total"] == 1
    run = runs["runs"][0]
    assert run["kind"] == "run" and run["state"] == "stopped" and run["broker"] == "sim"
    assert run["session"] == journal.stem and run["journal_kept"] is True
    assert run["reason"] == "duration 3h reached"
    assert Decimal(run["trades"]) == summary["trades"] > 0
    assert Decimal(run["realized_pnl"]) == Decimal(summary["realized_pnl"])
    assert Decimal(run["equity_end"]) == Decimal(summary["equity_end"])
    assert _t(run["started_at"]) == _t(summary["started_at"])

    orders = doc(mqd, "orders", "-c", cfg, "--limit", "1000")
    assert orders["session"] == journal.stem and orders["store"] == str(journal)
    assert orders["total"] == summary["submitted"] == len(orders["orders"])
    assert {o["status"] for o in orders["orders"]} == {"filled"}

    fills = doc(mqd, "fills", "-c", cfg, "--limit", "1000")
    assert fills["total"] == summary["fills"]
    by_order: dict[str, Decimal] = {}
    for x in fills["fills"]:
        by_order[x["client_order_id"]] = by_order.get(x["client_order_id"], 0) + Decimal(x["qty"])
    assert by_order == {o["client_order_id"]: Decimal(o["filled_qty"]) for o in orders["orders"]}

    trades = doc(mqd, "trades", "-c", cfg, "--limit", "1000")
    assert trades["totals"]["trades"] == trades["total"] == summary["trades"]
    assert Decimal(trades["totals"]["realized_pnl"]) == Decimal(summary["realized_pnl"])
    assert sum(Decimal(t["pnl"]) for t in trades["trades"]) == Decimal(summary["realized_pnl"])
    assert trades["totals"]["wins"] == summary["wins"]

    pnl = doc(mqd, "pnl", "-c", cfg)
    assert [p["period"] for p in pnl["periods"]] == ["2026-01-05"]
    day = pnl["periods"][0]
    assert day["trades"] == summary["trades"]
    assert Decimal(day["realized_pnl"]) == Decimal(summary["realized_pnl"])
    assert Decimal(day["equity"]) == Decimal(summary["equity_end"])
    assert len(pnl["equity_curve"]) >= 3  # the start, every 5 minutes, the stop


def test_filters_narrow_and_pages_cover_every_row_exactly_once(mqd, config_file):
    cfg = config_file(FAST)
    summary = sim_run(mqd, cfg)
    every = doc(mqd, "trades", "-c", cfg, "--limit", "1000")["trades"]
    assert len(every) >= 6

    msft = doc(mqd, "trades", "-c", cfg, "--symbol", "msft", "--limit", "1000")
    assert msft["total"] == sum(1 for t in every if t["symbol"] == "MSFT") > 0
    assert {t["symbol"] for t in msft["trades"]} == {"MSFT"}

    lo, hi = "2026-01-05T15:00:00Z", "2026-01-05T16:00:00Z"
    window = doc(mqd, "trades", "-c", cfg, "--since", lo, "--until", hi, "--limit", "1000")
    expected = [t for t in every if lo <= _z(t["closed_at"]) < hi]
    assert [t["trade_id"] for t in window["trades"]] == [t["trade_id"] for t in expected]

    # a span counts back from the session's own time (its stop), not the machine's
    # (under load a fast sim run may stop well after its last bar, so the hour may be empty)
    orders = doc(mqd, "orders", "-c", cfg, "--limit", "1000")["orders"]
    stop = datetime.fromisoformat(summary["stopped_at"])
    in_last_hour = [
        o for o in orders if datetime.fromisoformat(o["created_at"]) >= stop - timedelta(hours=1)
    ]
    last_hour = doc(mqd, "orders", "-c", cfg, "--since", "1h", "--limit", "1000")
    assert last_hour["total"] == len(in_last_hour) < len(orders)

    assert doc(mqd, "trades", "-c", cfg, "--strategy", "no_such")["total"] == 0
    assert doc(mqd, "trades", "-c", cfg, "--strategy", "sma_cross")["total"] == len(every)

    seen, offset = [], 0
    while offset is not None:
        page = doc(mqd, "trades", "-c", cfg, "--limit", "4", "--offset", str(offset))
        assert page["total"] == len(every) and len(page["trades"]) <= 4
        seen = [t["trade_id"] for t in page["trades"]] + seen
        offset = page["next_offset"]
    assert seen == [t["trade_id"] for t in every]

    text = mqd("trades", "-c", cfg, "--limit", "3").stdout
    assert f"Trades (last 3 of {len(every)};" in text.splitlines()[0]
    assert len(text.splitlines()) == 1 + 1 + 3 + 1  # title, header, rows, totals
    assert f"{len(every)} trades" in text.splitlines()[-1]


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _z(text: str) -> str:
    return datetime.fromisoformat(text).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_each_sim_run_is_its_own_session_and_session_picks_one(mqd, config_file):
    cfg = config_file(FAST)
    first = sim_run(mqd, cfg)
    second = sim_run(mqd, cfg.parent / _variant(cfg, 'duration = "1h"'), "--session", "short-one")
    assert Path(second["store"]).name == "short-one.db"
    assert Path(first["store"]).is_file()

    latest = doc(mqd, "orders", "-c", cfg, "--limit", "1000")
    assert latest["session"] == "short-one" and latest["total"] == second["submitted"]
    older = doc(mqd, "orders", "-c", cfg, "--session", Path(first["store"]).stem, "--limit", "1000")
    assert older["total"] == first["submitted"] != second["submitted"]

    runs = doc(mqd, "runs", "-c", cfg)["runs"]
    assert [r["session"] for r in runs] == [Path(first["store"]).stem, "short-one"]
    only = doc(mqd, "runs", "-c", cfg, "--session", "short-one")
    assert [r["session"] for r in only["runs"]] == ["short-one"]

    again = mqd("run", "-c", cfg, "--session", "short-one", expect=2)
    assert "error: sim session 'short-one' exists" in again.stderr and "hint:" in again.stderr


def _variant(cfg: Path, duration: str) -> str:
    text = cfg.read_text().replace('duration = "3h"', duration)
    other = cfg.parent / "other.toml"
    other.write_text(text)
    return other.name


def test_run_reads_the_journal_and_window_of_one_run(mqd, config_file):
    cfg = config_file(FAST)
    first = sim_run(mqd, cfg)
    sim_run(mqd, cfg)
    ids = [r["id"] for r in doc(mqd, "runs", "-c", cfg)["runs"]]
    by_run = doc(mqd, "trades", "-c", cfg, "--run", str(ids[0]), "--limit", "1000")
    assert by_run["run"] == ids[0] and by_run["store"] == first["store"]
    assert by_run["total"] == first["trades"]
    wrong = mqd("trades", "-c", cfg, "--run", str(ids[0]), "--session", "nope", expect=2)
    assert "error: run 1 traded on sim session" in wrong.stderr


@pytest.mark.parametrize(
    "args, error",
    [
        (("orders", "--since", "yesterday"), "--since 'yesterday' is neither a time nor a span"),
        (("fills", "--until", "2026-13-01"), "--until '2026-13-01' is neither a time nor a span"),
        (
            ("trades", "--since", "2026-01-06", "--until", "2026-01-05"),
            "--since 2026-01-06 is not before --until 2026-01-05",
        ),
        (("trades", "--strategy", " "), "--strategy is empty"),
        (("orders", "--run", "99"), "no run 99 in"),
        (("positions", "--session", "nosuch"), "no sim session 'nosuch'"),
        (("pnl", "--session", "../etc"), "--session '../etc' is not a session name"),
        (("pnl", "--by", "month"), "--by 'month': not a period"),
        (("pnl", "--plot", "chart.txt"), "--plot chart.txt: cannot write a txt file"),
        (("runs", "--run", "5"), "no run 5 in"),
        (("stream", "tail", "--session", "nosuch", "--count", "1"), "no sim session 'nosuch'"),
        (("protections", "status", "--session", "nosuch"), "no sim session 'nosuch'"),
    ],
)
def test_bad_filters_exit_2_with_error_and_hint(mqd, config_file, args, error):
    cfg = config_file(FAST)
    r = mqd(*args, "-c", cfg, expect=2)
    lines = r.stderr.splitlines()
    assert any(line.startswith("error: ") and error in line for line in lines), r.stderr
    assert any(line.startswith("hint: ") for line in lines), r.stderr
    assert r.stdout == ""


def test_a_backtest_is_recorded_with_its_summary_and_only_its_summary(mqd, config_file):
    cfg = config_file(FAST)
    result = doc(
        mqd,
        "backtest",
        "-c",
        cfg,
        "--synthetic",
        "--from",
        "2026-01-05",
        "--to",
        "2026-01-05T08:00:00Z",
    )
    run_id = result["run_id"]
    runs = doc(mqd, "runs", "-c", cfg)
    (row,) = runs["runs"]
    assert row["id"] == run_id and row["kind"] == "backtest" and row["state"] == "done"
    assert _t(row["started_at"]) == _t(result["start"])
    assert _t(row["stopped_at"]) == _t(result["end"])
    assert Decimal(row["trades"]) == result["trades_count"]
    assert Decimal(row["pnl"]) == Decimal(result["net_pnl"])
    assert row["summary"]["metrics"] == json.loads(json.dumps(result["metrics"]))
    detail = doc(mqd, "runs", "-c", cfg, "--run", str(run_id))
    assert detail["summary"]["seed"] == result["seed"]
    refused = mqd("trades", "-c", cfg, "--run", str(run_id), expect=2)
    assert f"error: run {run_id} is a backtest: only its summary is kept" in refused.stderr
    text = mqd("runs", "-c", cfg).stdout
    assert "backtest (synthetic)" in text and "done" in text


def test_stream_tail_journal_and_protections_history_read_the_latest_sim_session(mqd, tmp_path):
    """The README demo config trips StoplossGuard: after the run, the lock is in the history
    and the journal replays, where both showed nothing before sessions were kept."""
    text = (ROOT / "config.example.toml").read_text().replace("speed = 600.0", "speed = 12000.0")
    cfg = tmp_path / "example.toml"
    cfg.write_text(text.replace('path = ""', f'path = "{tmp_path / "mqd.db"}"', 1))
    summary = sim_run(mqd, cfg)
    assert summary["protection_locks"] >= 1

    status = doc(mqd, "protections", "status", "-c", cfg, "--history")
    # whether the lock has ended by the run's stop depends on how the fast clock meets the
    # bars (a loaded machine changes it): ended, it is in the history; else it is still on
    past = [lk for lk in status["history"] if lk["protection"] == "stoploss_guard"]
    on = [lk for lk in status["active_locks"] if lk["protection"] == "stoploss_guard"]
    assert len(past) + len(on) >= 1
    assert len(status["active_locks"]) == len(summary["active_locks"])
    # as of the session's end, not the machine's time
    assert abs((_t(status["now"]) - _t(summary["stopped_at"])).total_seconds()) < 30

    r = mqd("stream", "tail", "-c", cfg, "--journal", "--since", "1d", "--count", "5", "--json")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(events) == 5 and all(e["symbol"] in ("AAPL", "MSFT") for e in events)
    assert "sim session" in r.stderr
    named = mqd(
        "stream",
        "tail",
        "-c",
        cfg,
        "--session",
        Path(summary["store"]).stem,
        "--since",
        "1d",
        "--count",
        "2",
        "--json",
    )
    assert len(named.stdout.splitlines()) == 2


HOLDER = """
from decimal import Decimal
from mqd_cli.model import OrderIntent, Side
from mqd_cli.strategies.base import BaseStrategy

class Holder(BaseStrategy):
    name = "holder"

    def warm_up(self, bar):
        pass

    def on_bar(self, bar, ctx):
        if ctx.position(bar.symbol) or ctx.open_orders(bar.symbol):
            return []
        return [OrderIntent(bar.symbol, Side.BUY, qty=Decimal(10), reason="entry")]
"""


def test_positions_of_a_sim_session_are_marked_at_the_runs_last_prices(mqd, config_file, tmp_path):
    (tmp_path / "holder.py").write_text(HOLDER)
    plain = FAST[: FAST.index("[strategy.params]")]
    cfg = config_file(plain + f'[strategy]\nname = "{tmp_path / "holder.py"}:Holder"\n')
    summary = sim_run(mqd, cfg)
    assert summary["positions"] == {"AAPL": "10", "MSFT": "10"}
    got = doc(mqd, "positions", "-c", cfg)
    assert got["online"] is False
    rows = {p["symbol"]: p for p in got["positions"]}
    assert set(rows) == {"AAPL", "MSFT"}
    run = doc(mqd, "runs", "-c", cfg)["runs"][0]
    marks = run["summary"]["marks"]
    for symbol, p in rows.items():
        assert Decimal(p["qty"]) == 10 and p["price_source"] == "run"
        assert Decimal(p["price"]) == Decimal(marks[symbol]["price"])
        expected = Decimal(p["qty"]) * (Decimal(p["price"]) - Decimal(p["avg_price"]))
        assert Decimal(p["unrealized_pnl"]) == expected
    assert Decimal(got["unrealized_pnl"]) == Decimal(run["summary"]["unrealized_pnl"])
    offline = doc(mqd, "positions", "-c", cfg, "--offline", "--symbol", "AAPL")
    assert [p["symbol"] for p in offline["positions"]] == ["AAPL"]
    text = mqd("positions", "-c", cfg).stdout
    name = Path(summary["store"]).stem
    assert text.splitlines()[0] == f"Positions from the journal (sim session {name})"
    assert "at the run's last prices" in text.splitlines()[-1]


def test_only_the_last_sessions_are_kept_and_their_runs_stay_listed(mqd, config_file, monkeypatch):
    from mqd_cli.history import sessions

    monkeypatch.setattr(sessions, "KEEP_SESSIONS", 2)
    cfg = config_file(FAST.replace('"3h"', '"30m"'))
    stores = [Path(sim_run(mqd, cfg)["store"]) for _ in range(3)]
    assert [p.is_file() for p in stores] == [False, True, True]
    assert sorted(p.stem for p in (cfg.parent / "sim-sessions").glob("*.db")) == sorted(
        p.stem for p in stores[1:]
    )
    runs = doc(mqd, "runs", "-c", cfg)["runs"]
    assert [r["journal_kept"] for r in runs] == [False, True, True]
    assert "(removed)" in mqd("runs", "-c", cfg).stdout
    gone = mqd("orders", "-c", cfg, "--run", str(runs[0]["id"]), expect=2)
    assert "is no longer kept" in gone.stderr


def test_a_killed_run_is_listed_as_ended_without_a_summary(config_file, isolated_env, mqd):
    cfg = config_file(
        FAST.replace('duration = "3h"', 'duration = "0s"').replace("36000.0", "600.0")
    )
    env = {
        **os.environ,
        "HOME": str(isolated_env),
        "XDG_DATA_HOME": str(isolated_env / ".local" / "share"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqd_cli", "run", "--config", str(cfg), "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or json.loads(line)["event"] == "fill":
                break
        running = doc(mqd, "runs", "-c", cfg)["runs"][0]
        assert running["state"] == "running" and running["stopped_at"] is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    (run,) = doc(mqd, "runs", "-c", cfg)["runs"]
    assert run["state"] == "ended without a summary" and run["summary"] == {}
    # its journal is still read: up to the last thing it recorded
    assert doc(mqd, "fills", "-c", cfg)["total"] >= 1
