"""Exact restarts: after ``kill -9`` while an order is partly filled, the order completes at the
broker while mqd is down; the restart applies every update of its own orders before it checks
positions, also when the broker's clock is far from ours (a time-shifted, accelerated
emulator)."""

from __future__ import annotations

import json
import signal
import time
from decimal import Decimal

import pytest

from mqd_cli.config.settings import SimSettings
from tests.support import run_config, spawn, wait_for

pytestmark = pytest.mark.slow  # mqd run in a subprocess, stopped and restarted

BUY_ONCE = """
from decimal import Decimal

import pytest
from mqd_cli.model import OrderIntent, Side
from mqd_cli.strategies.base import BaseStrategy

class BuyOnce(BaseStrategy):
    name = "buyonce"

    def on_start(self, ctx):
        if ctx.open_orders("AAPL") or ctx.position("AAPL"):
            return []
        return [OrderIntent("AAPL", Side.BUY, qty=Decimal(3), reason="entry")]
"""


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_restart_after_an_order_completed_while_down_applies_it_with_a_time_shifted_broker(
    emulator, tmp_path, isolated_env, mqd, stop
):
    # One share per simulated minute; the broker's clock runs 60x from 2026-01-05 09:35 ET.
    srv = emulator(speed=60.0, sim=SimSettings(partial_fill_probability=0.0, liquidity=Decimal(1)))
    cfg = run_config(srv, tmp_path, BUY_ONCE, "BuyOnce", run="cancel_on_exit = false\n")
    mqd("symbols", "sync", "--config", cfg)
    proc = spawn(cfg, isolated_env)
    try:
        wait_for(proc, "fill", timeout=60)  # 1 of 3 filled
        proc.send_signal(stop)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    time.sleep(4.0)  # > 3 simulated minutes: the order completes at the broker meanwhile
    proc = spawn(cfg, isolated_env, "--duration", "2s")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    lines = [json.loads(x) for x in out.strip().splitlines()]
    summary = lines[-1]
    assert summary["event"] == "summary"
    assert summary["positions"] == {"AAPL": "3"} or summary["positions"] == {"AAPL": 3}, summary
    r = mqd("reconcile", "--config", cfg, "--json", "--grace", "0s")
    assert r.json["in_sync"] is True, r.json["findings"]
    # The lookback is in the broker's time (January), not ours: the filled order is listed.
    assert r.json["broker_orders"] >= 1
