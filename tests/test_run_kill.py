"""`kill -9` of a running `mqd run` at random moments, then a restart, against the emulator (the
broker's state survives the kills): no order doubled, no fill lost, `mqd reconcile` clean."""

from __future__ import annotations

import json
import random
import signal
import time
from decimal import Decimal

import pytest

from mqd_cli.config.settings import SimSettings
from tests.support import PING_PONG, run_config, spawn, wait_for

pytestmark = pytest.mark.slow  # mqd run in a subprocess, killed and restarted


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
