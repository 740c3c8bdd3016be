"""`mqd run` on the offline simulated exchange: JSON events and the summary, dry run, halt,
SIGTERM shutdown, a failing Discord webhook that never stops trading, the README demo config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

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


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_a_sim_run_prints_json_events_then_a_summary_and_exits_0(mqd, config_file):
    cfg = config_file(FAST)
    r = mqd("run", "--config", cfg, "--json")
    events = events_of(r.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "summary"
    summary = events[-1]
    assert summary["reason"] == "duration 3h reached"
    assert summary["submitted"] > 0 and summary["fills"] >= summary["submitted"]
    assert {"submitted", "fill", "trade"} <= set(kinds)
    assert summary["bars"] > 300  # 2 symbols x 3 h of 1-minute bars
    fills = [e for e in events if e["event"] == "fill"]
    assert all(e["fill"]["symbol"] in ("AAPL", "MSFT") for e in fills)


def test_the_same_sim_run_twice_gives_the_same_orders(mqd, config_file):
    cfg = config_file(FAST.replace("speed = 36000.0", "speed = 3600.0").replace('"3h"', '"20m"'))
    first = events_of(mqd("run", "--config", cfg, "--json").stdout)[-1]
    second = events_of(mqd("run", "--config", cfg, "--json").stdout)[-1]
    # a fresh session journal each time, both kept: the second run is not refused for drift
    assert first["store"] != second["store"]
    assert Path(first["store"]).parent == Path(second["store"]).parent
    assert first["bars"] == second["bars"]


def test_a_loop_that_comes_late_still_trades_every_bar_of_its_duration_and_no_more(
    mqd, config_file
):
    # at a million times real time, 1 h of market time passes before the first pass of the
    # loop: the bars of that hour are still traded, and none after it
    cfg = config_file(FAST.replace("speed = 36000.0", "speed = 1000000.0").replace('"3h"', '"1h"'))
    summary = events_of(mqd("run", "--config", cfg, "--json").stdout)[-1]
    assert summary["reason"] == "duration 1h reached"
    assert summary["bars"] == 120  # 2 symbols x 60 one-minute bars
    assert summary["submitted"] > 0


def test_dry_run_shows_would_be_orders_and_sends_nothing(mqd, config_file):
    cfg = config_file(FAST)
    events = events_of(mqd("run", "--config", cfg, "--json", "--dry-run").stdout)
    summary = events[-1]
    assert summary["dry_run"] is True
    assert summary["submitted"] == 0 and summary["fills"] == 0
    assert summary["would_submit"] > 0
    assert any(e["event"] == "would_submit" for e in events)


def test_halt_refuses_every_order_at_the_risk_gate(mqd, config_file):
    cfg = config_file(FAST)
    summary = events_of(mqd("run", "--config", cfg, "--json", "--halt").stdout)[-1]
    assert summary["submitted"] == 0
    assert summary["refused"]["risk"] == summary["intents"] > 0
    assert summary["refused_by_rule"] == {"risk:halted": summary["intents"]}


def test_cancel_on_exit_cancels_resting_orders(mqd, config_file, tmp_path):
    strategy = tmp_path / "resting.py"
    strategy.write_text(
        "from decimal import Decimal\n"
        "from mqd_cli.model import OrderIntent, OrderType, Side\n"
        "from mqd_cli.strategies.base import BaseStrategy\n"
        "class Resting(BaseStrategy):\n"
        "    name = 'resting'\n"
        "    def warm_up(self, bar):\n"
        "        pass\n"
        "    def on_bar(self, bar, ctx):\n"
        "        if ctx.open_orders(bar.symbol):\n"
        "            return []\n"
        "        low = (bar.close * Decimal('0.5')).quantize(Decimal('0.01'))\n"
        "        return [OrderIntent(bar.symbol, Side.BUY, qty=Decimal(1),\n"
        "                            type=OrderType.LIMIT, limit_price=low, reason='entry')]\n"
    )
    plain = FAST[: FAST.index("[strategy.params]")]
    cfg = config_file(plain + f'\n[strategy]\nname = "{strategy}:Resting"\n')
    summary = events_of(mqd("run", "--config", cfg, "--json", "--cancel-on-exit").stdout)[-1]
    assert summary["submitted"] == 2
    assert summary["canceled_at_exit"] == 2 and summary["open_orders"] == 0


def test_the_readme_demo_config_shows_orders_fills_a_protection_and_a_summary(
    mqd, tmp_path, monkeypatch
):
    """`mqd run --config config.example.toml`, sped up (the real one takes ~25 s)."""
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace("speed = 600.0", "speed = 12000.0")
    assert 'sim_start = "2026-01-05T14:30:00Z"' in text
    cfg = tmp_path / "example.toml"
    cfg.write_text(text)
    r = mqd("run", "--config", cfg)
    assert "mqd run summary" in r.stdout
    assert "submitted" in r.stdout and "fill" in r.stdout
    assert "protection" in r.stdout and "stoploss_guard" in r.stdout
    assert "refused by protections" in r.stdout


# -- subprocesses: signals -------------------------------------------------------------------


def spawn(config: Path, *args: str, home: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "mqd_cli", "run", "--config", str(config), "--json", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_event(proc: subprocess.Popen, kind: str, timeout: float = 30) -> list[dict]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(json.loads(line))
        if seen[-1]["event"] == kind:
            return seen
    raise AssertionError(f"no {kind} event: {seen[-3:]}")


def test_sigterm_stops_cleanly_with_a_summary_and_exit_0(config_file, isolated_env):
    cfg = config_file(
        FAST.replace('duration = "3h"', 'duration = "0s"').replace(
            "speed = 36000.0", "speed = 600.0"
        )
    )
    proc = spawn(cfg, home=isolated_env)
    try:
        wait_for_event(proc, "fill")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["reason"] == "SIGTERM"


def test_ctrl_c_stops_cleanly_and_exits_130(config_file, isolated_env):
    cfg = config_file(
        FAST.replace('duration = "3h"', 'duration = "0s"').replace(
            "speed = 36000.0", "speed = 600.0"
        )
    )
    proc = spawn(cfg, home=isolated_env)
    try:
        wait_for_event(proc, "fill")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reason"] == "interrupted (Ctrl-C)"


# -- a failing Discord webhook ------------------------------------------------------------------


class _Failing(BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"message": "boom"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_webhook():
    _Failing.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/1/token", _Failing
    server.shutdown()
    server.server_close()


def test_a_failing_discord_webhook_never_stops_trading(mqd, config_file, failing_webhook):
    url, handler = failing_webhook
    cfg = config_file(
        FAST.replace("speed = 36000.0", "speed = 3600.0")
        + f'\n[notify.discord]\nwebhook_url = "{url}"\n'
        'events = ["fill", "order", "protection", "start", "stop"]\n'
    )
    r = mqd("run", "--config", cfg, "--json")
    summary = events_of(r.stdout)[-1]
    assert summary["reason"] == "duration 3h reached"
    assert summary["fills"] > 5 and summary["trades"] > 0
    assert handler.hits > 0
    assert summary["notify"]["failed"] > 0 and summary["notify"]["sent"] == 0
    assert "token" not in r.stdout + r.stderr  # the webhook URL is a secret
