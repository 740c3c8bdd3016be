"""`mqd throttle stats`: JSON and table output from the store, --watch, help, bad config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mqd_cli.clock import BacktestClock, RealTimeClock
from mqd_cli.config.loading import loads
from mqd_cli.store import Store
from mqd_cli.throttle import Throttler, resolve_limits


def _spend(tmp_path, clock=None):
    """Another 'process' spends budgets in the store the CLI reads."""
    clock = clock or BacktestClock(datetime(2026, 1, 5, 14, 30, tzinfo=UTC))
    settings = loads("").settings
    th = Throttler(
        clock,
        resolve_limits(settings.throttle),
        store=Store.open(tmp_path / "mqd.db"),
        shared=True,
        label="mqd run",
    )
    for _ in range(3):
        th.acquire("alpaca_trading")
    th.acquire("finnhub", weight=2)
    th.observe("alpaca_trading", 429, {"Retry-After": "20"})
    th.flush()
    return th


def test_stats_json_lists_every_preset_with_zero_counters_on_a_fresh_store(mqd):
    doc = mqd("throttle", "stats", "--json").json
    names = [lim["name"] for lim in doc["limits"]]
    assert names == [
        "alpaca_trading",
        "alpaca_data",
        "polygon",
        "finnhub",
        "finnhub_burst",
        "discord",
        "discord_global",
        "heartbeat",
    ]
    first = doc["limits"][0]
    assert (first["limit"], first["window_seconds"], first["budget"]) == (200, 60.0, 194)
    assert first["requests"] == 0 and first["remaining"] == 194 and doc["shared"] is True


def test_stats_json_shows_what_another_process_spent(mqd, tmp_path):
    _spend(tmp_path, RealTimeClock())
    doc = mqd("throttle", "stats", "--json").json
    by = {lim["name"]: lim for lim in doc["limits"]}
    trading = by["alpaca_trading"]
    assert trading["requests"] == 3 and trading["used"] == 3
    assert trading["rate_limited"] == 1 and trading["hold_until"] is not None
    assert trading["remaining"] == 0  # held after the 429
    assert [p["label"] for p in trading["processes"]] == ["mqd run"]
    assert by["finnhub"]["weight"] == 2 and by["finnhub_burst"]["used"] == 2


def test_stats_table_shows_each_budget_and_its_429s(mqd, tmp_path):
    _spend(tmp_path, RealTimeClock())
    out = mqd("throttle", "stats").stdout
    assert "limit/window" in out and "429s" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("alpaca_trading"))
    assert "200/1m (194)" in line and "held to" in line
    assert "polygon" in out and "5/1m (4)" in out


def test_stats_watch_stops_cleanly_on_ctrl_c(mqd, monkeypatch):
    def interrupted(self, seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(RealTimeClock, "sleep", interrupted)
    result = mqd("throttle", "stats", "--watch")
    assert "alpaca_trading" in result.stdout
    lines = mqd("throttle", "stats", "--watch", "--json").stdout.splitlines()
    assert len(lines) == 1 and '"limits"' in lines[0]


def test_stats_rejects_an_incomplete_limit_definition(mqd, config_file):
    path = config_file("[throttle.limits.vendor]\nlimit = 5\n", name="bad.toml")
    result = mqd("throttle", "stats", "--config", path, expect=2)
    assert "needs both limit and window" in result.stderr


def test_throttle_help_documents_the_command(mqd):
    out = mqd("throttle", "stats", "--help").stdout
    assert "Example: mqd throttle stats" in out and "--watch" in out and "--json" in out
    assert "throttle" in mqd("--help").stdout


def test_stats_reads_a_custom_limit_from_config(mqd, config_file, tmp_path):
    path = config_file('[throttle.limits.vendor]\nlimit = 7\nwindow = "10s"\n', name="custom.toml")
    clock = BacktestClock(datetime(2026, 1, 5, 14, 30, tzinfo=UTC))
    th = Throttler(
        clock,
        {
            "vendor": resolve_limits(
                loads('[throttle.limits.vendor]\nlimit = 7\nwindow = "10s"\n').settings.throttle
            )["vendor"]
        },
        store=Store.open(tmp_path / "mqd.db"),
        shared=True,
    )
    th.acquire("vendor")
    th.flush()
    doc = mqd("throttle", "stats", "--json", "--config", path).json
    vendor = next(lim for lim in doc["limits"] if lim["name"] == "vendor")
    assert vendor["window"] == "10s" and vendor["requests"] == 1
    assert timedelta(seconds=vendor["window_seconds"]) == timedelta(seconds=10)
