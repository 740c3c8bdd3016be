"""A broker-held protective stop outlives mqd: `kill -9` while a position is open, the stop
fills at the broker while mqd is down, and the restart picks the fill up and closes the trade
with exit reason stop_loss; `mqd reconcile` is clean with the legs present."""

from __future__ import annotations

import json
import signal
import time
from decimal import Decimal

import httpx
import pytest

from mqd_cli.config.settings import SimSettings
from tests.support import run_config, spawn, wait_for

pytestmark = pytest.mark.slow  # mqd run in a subprocess, killed and restarted

BUY_ONCE = """
from decimal import Decimal
from mqd_cli.model import OrderIntent, Side
from mqd_cli.strategies.base import BaseStrategy

class BuyOnce(BaseStrategy):
    name = "buyonce"

    def on_start(self, ctx):
        if ctx.position("AAPL") or ctx.open_orders("AAPL"):
            return []
        return [OrderIntent("AAPL", Side.BUY, qty=Decimal(10), reason="entry")]
"""


def _orders(srv) -> list[dict]:
    return httpx.get(
        f"{srv.base_url}/v2/orders",
        params={"status": "all", "limit": 500, "nested": "true"},
        headers=srv.headers,
        timeout=10,
    ).json()


def test_the_stop_fills_while_mqd_is_down_and_the_restart_closes_the_trade(
    emulator, tmp_path, isolated_env, mqd
):
    srv = emulator(sim=SimSettings(partial_fill_probability=0.0))
    cfg = run_config(srv, tmp_path, BUY_ONCE, "BuyOnce", run='[risk]\nprotective_stop = "0.2%"\n')
    mqd("symbols", "sync", "--config", cfg)
    proc = spawn(cfg, isolated_env)
    try:
        wait_for(proc, "fill")  # the entry filled: its stop leg now works at the broker
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    [entry] = _orders(srv)
    assert entry["order_class"] == "oto" and entry["status"] == "filled"
    [leg] = entry["legs"]
    assert leg["type"] == "stop" and leg["side"] == "sell"
    # mqd is down: the market moves until the broker's stop fills (bounded: 2 simulated days)
    for _ in range(96):
        if _orders(srv)[0]["legs"][0]["status"] == "filled":
            break
        srv.advance(1800)
    assert _orders(srv)[0]["legs"][0]["status"] == "filled"
    positions = httpx.get(f"{srv.base_url}/v2/positions", headers=srv.headers, timeout=10)
    assert positions.json() == []
    time.sleep(1.05)  # the dead process's stream lease expires (lease_ttl 1s)

    proc = spawn(cfg, isolated_env, "--duration", "2s")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # the start-up reconcile applies the stop's fill before the first bar
    assert any("applied 1 missed update" in e.get("message", "") for e in events)

    from mqd_cli.orders.trades import closed_trades
    from mqd_cli.store import Store

    store = Store.open(tmp_path / "mqd.db")
    try:
        first = closed_trades(store)[0]
    finally:
        store.close()
    assert first.exit_reason == "stop_loss" and first.qty == Decimal(10)
    assert first.exit_price <= Decimal(leg["stop_price"])
    time.sleep(0.3)
    r = mqd("reconcile", "--config", cfg, "--json", "--grace", "0s")
    assert r.json["in_sync"] is True, r.json["findings"]
