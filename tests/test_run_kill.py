"""`kill -9` of a running `mqd run` at random moments, then a restart, against the emulator (the
broker's state survives the kills): no order doubled, no fill lost, `mqd reconcile` clean."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from mqd_cli.config.settings import SimSettings

pytestmark = pytest.mark.slow  # mqd run in a subprocess, killed and restarted

ROOT = Path(__file__).resolve().parents[1]

# Buy 1, sell it, buy 1, ...: the next order is sent from on_fill, so orders are in flight
# (journaled, sent, answered, streamed) at every moment a kill can land.
PING_PONG = """
from decimal import Decimal
from mqd_cli.model import OrderIntent, Side
from mqd_cli.strategies.base import BaseStrategy

class PingPong(BaseStrategy):
    name = "pingpong"

    def _next(self, ctx):
        if ctx.open_orders("AAPL"):
            return []
        if ctx.position("AAPL") > 0:
            return [OrderIntent("AAPL", Side.SELL, qty=ctx.position("AAPL"), reason="signal")]
        return [OrderIntent("AAPL", Side.BUY, qty=Decimal(1), reason="entry")]

    def on_start(self, ctx):
        return self._next(ctx)

    def on_fill(self, fill, ctx):
        return self._next(ctx)
"""


def run_env(home: Path) -> dict[str, str]:
    """The environment of an `mqd run` subprocess with ``home`` as its user's home."""
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "PYTHONPATH": str(ROOT),
    }


def run_config(srv, tmp_path: Path, code: str, cls: str, *, run: str = "") -> Path:
    """A config running strategy ``cls`` (source ``code``) on AAPL against the emulator
    ``srv``: a fast loop, a 1 s stream lease, no throttle or protections in the way. ``run``
    adds lines to ``[run]``."""
    strategy = tmp_path / f"{cls.lower()}.py"
    strategy.write_text(code)
    cfg = tmp_path / f"{cls.lower()}.toml"
    cfg.write_text(
        srv.config_toml()
        + textwrap.dedent(f"""
        [store]
        path = "{tmp_path / "mqd.db"}"
        [strategy]
        name = "{strategy}:{cls}"
        symbols = ["AAPL"]
        [run]
        warmup_bars = 0
        poll_interval = "50ms"
        """)
        + textwrap.dedent(run)
        + textwrap.dedent("""
        [stream]
        lease_ttl = "1s"
        [throttle.limits.alpaca_trading]
        limit = 100000
        [protections.stoploss_guard]
        enabled = false
        [protections.cooldown]
        enabled = false
        [protections.max_drawdown]
        enabled = false
        """)
    )
    return cfg


def spawn(cfg: Path, home: Path, *args: str) -> subprocess.Popen:
    env = run_env(home)
    return subprocess.Popen(
        [sys.executable, "-m", "mqd_cli", "run", "--config", str(cfg), "--json", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, kind: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"mqd run ended early: {proc.stderr.read()[-2000:]}")
        if json.loads(line)["event"] == kind:
            return
    raise AssertionError(f"no {kind} event within {timeout}s")


def test_kill_9_at_random_moments_then_restart_doubles_nothing_and_loses_nothing(
    emulator, tmp_path, isolated_env, mqd
):
    srv = emulator(sim=SimSettings(partial_fill_probability=0.0))
    cfg = run_config(srv, tmp_path, PING_PONG, "PingPong")
    mqd("symbols", "sync", "--config", cfg)
    rng = random.Random(20260105)
    for _ in range(3):
        proc = spawn(cfg, isolated_env)
        try:
            wait_for(proc, "fill")
            time.sleep(rng.uniform(0.05, 0.8))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            proc.kill()
        time.sleep(1.05)  # the dead process's stream lease expires (lease_ttl 1s)
    # A clean run after the last kill: start-up reconciles (it would refuse on unexplained
    # drift), trades on, and stops by itself.
    proc = spawn(cfg, isolated_env, "--duration", "2s")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["fills"] > 0
    time.sleep(0.3)  # the emulator's last events settle
    r = mqd("reconcile", "--config", cfg, "--json", "--grace", "0s")
    assert r.json["in_sync"] is True, r.json["findings"]

    import httpx

    orders = httpx.get(
        f"{srv.base_url}/v2/orders",
        params={"status": "all", "limit": 500},
        headers=srv.headers,
        timeout=10,
    ).json()
    filled = sorted((o for o in orders if o["status"] == "filled"), key=lambda o: o["filled_at"])
    assert len(filled) > 10
    # No order doubled: the ping-pong alternates buy and sell of one share, so a doubled buy
    # would show as two buys in a row and a position of 2.
    sides = [o["side"] for o in filled]
    assert all(a != b for a, b in zip(sides, sides[1:], strict=False)), [
        (o["side"], o["client_order_id"], o["submitted_at"], o["filled_at"]) for o in filled
    ]
    assert len({o["client_order_id"] for o in orders}) == len(orders)
    positions = httpx.get(f"{srv.base_url}/v2/positions", headers=srv.headers, timeout=10).json()
    assert sum(Decimal(p["qty"]) for p in positions) in (Decimal(0), Decimal(1))
    # No fill lost: every broker fill is in the journal, quantity for quantity.
    from mqd_cli.clock import RealTimeClock
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.store import Store

    store = Store.open(tmp_path / "mqd.db")
    try:
        tracker = OrderTracker.restore(store, RealTimeClock())
        for o in orders:
            mine = tracker.order(o["client_order_id"])
            assert mine is not None, o["client_order_id"]
            assert mine.filled_qty == Decimal(o["filled_qty"]), o["client_order_id"]
    finally:
        store.close()
