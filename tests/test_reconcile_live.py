"""`mqd reconcile` from another process while a real `mqd run` trades against the emulator.

The run (broker = alpaca, pointing at `mqd sim serve` on loopback) buys and sells one share of
AAPL from every fill, so orders are always in flight: being journaled, sent, answered and
streamed while reconcile reads the broker and the store. Every reconcile must exit 0 with no
finding; real drift made outside mqd while the run trades must still be reported (exit 1).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from mqd_cli.config.settings import SimSettings
from tests.support import PING_PONG, run_config, run_env

pytestmark = pytest.mark.slow  # mqd run in a subprocess beside reconciles

ROOT = Path(__file__).resolve().parents[1]
LOOKBACK = "400d"  # the emulator's simulated time lies in the past of the wall clock


@dataclass
class Trading:
    cfg: Path
    env: dict[str, str]
    proc: subprocess.Popen
    log: Path

    def reconcile(self, *args: str, timeout: float = 60) -> tuple[int, dict | None, str]:
        """``mqd reconcile --json`` in a fresh process: (exit code, JSON document, stderr)."""
        r = subprocess.run(
            [sys.executable, "-m", "mqd_cli", "reconcile", "--config", str(self.cfg), "--json"]
            + ["--lookback", LOOKBACK, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        doc = json.loads(r.stdout) if r.stdout.strip() else None
        return r.returncode, doc, r.stderr

    def fills(self) -> int:
        return sum(
            1
            for line in self.log.read_text().splitlines()
            if line.startswith("{") and json.loads(line).get("event") == "fill"
        )


@contextlib.contextmanager
def trading(srv, tmp_path: Path, home: Path, mqd) -> Iterator[Trading]:
    """A real `mqd run` ping-ponging AAPL against ``srv`` until the block ends."""
    cfg = run_config(srv, tmp_path, PING_PONG, "PingPong")
    mqd("symbols", "sync", "--config", cfg)
    env = run_env(home)
    log = tmp_path / "run.jsonl"
    with log.open("w") as out, (tmp_path / "run.err").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mqd_cli", "run", "--config", str(cfg), "--json"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
    t = Trading(cfg, env, proc, log)
    try:
        deadline = time.monotonic() + 60
        while t.fills() < 3:
            assert proc.poll() is None, (tmp_path / "run.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run made no fills within 60 s"
            time.sleep(0.05)
        yield t
        assert proc.poll() is None, (tmp_path / "run.err").read_text()[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def transfer_in(srv, symbol: str, qty: Decimal) -> None:
    """Shares arriving at the broker outside mqd (an ACATS transfer): a position with no order
    and no trade update, changed on the emulator's own event loop thread."""
    import asyncio

    from mqd_cli.brokers.sim.account import SimPosition

    emu = srv.emulator

    async def move() -> None:
        account = emu.broker.account
        asset = emu.broker.get_asset(symbol)
        price = emu.broker.last_price(symbol)
        pos = account.positions.get(asset.symbol) or SimPosition(asset)
        pos.qty += qty
        pos.cost += qty * price
        account.positions[asset.symbol] = pos

    asyncio.run_coroutine_threadsafe(move(), emu.loop).result(timeout=10)


def record_shadow(db: Path, symbol: str) -> str:
    """An order in our store that the broker never received (recorded long ago by another
    process that died before sending it): a shadow, once a lookup answers 404."""
    from mqd_cli.clock import BacktestClock
    from mqd_cli.model import OrderIntent, Side
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.store import Store

    store = Store.open(db)
    try:
        clock = BacktestClock(datetime(2020, 3, 2, 15, 0, tzinfo=UTC))
        t = OrderTracker(store, clock, strategy="manual")
        return t.start(OrderIntent(symbol, Side.BUY, qty=Decimal(1))).client_order_id
    finally:
        store.close()


RUNS = 8


def test_reconcile_during_a_running_loop_finds_nothing_yet_reports_real_drift(
    emulator, tmp_path, isolated_env, mqd
):
    from mqd_cli.brokers.alpaca import AlpacaBroker
    from mqd_cli.model import OrderIntent, OrderType, Side

    srv = emulator(sim=SimSettings(partial_fill_probability=0.0))
    with trading(srv, tmp_path, isolated_env, mqd) as t:
        outcomes = []
        for n in range(RUNS):
            apply = ("--apply",) if n % 2 else ()  # --apply must find nothing to act on
            code, doc, err = t.reconcile(*apply)
            assert doc is not None, err[-2000:]
            outcomes.append((code, doc["findings"], doc["actions"], doc["in_flight"]))
        fills = t.fills()
        assert all(o[:3] == (0, [], []) for o in outcomes), outcomes
        assert fills > 20  # the loop really traded all along
        assert any(o[3] for o in outcomes)  # and orders were in flight while we looked

        # An order placed on the emulator by another client (its own client_order_id): the
        # running loop's stream adopts it as external, so it is explained, not drift.
        other = AlpacaBroker(srv.alpaca_settings())
        try:
            other.submit_order(
                OrderIntent(
                    "MSFT",
                    Side.BUY,
                    qty=Decimal(3),
                    type=OrderType.LIMIT,
                    limit_price=Decimal("1.00"),
                    client_order_id="by-hand",
                )
            )
        finally:
            other.close()
        # Real drift while the loop trades: shares moved in at the broker outside mqd, and an
        # order in our store that the broker never received.
        transfer_in(srv, "SPY", Decimal(7))
        shadow = record_shadow(tmp_path / "mqd.db", "NVDA")
        code, doc, err = t.reconcile()
        assert code == 1, err[-2000:]
        found = sorted((f["kind"], f["subject"], f["broker"]) for f in doc["findings"])
        assert found == [
            ("position_drift", "SPY", "7"),
            ("shadow", shadow, "not found"),
        ], doc
        assert doc["looks"] == 2
        # --apply acts on the confirmed findings only: the shadow is resolved, the position
        # is for review, and nothing of the trading loop is touched.
        code, doc, err = t.reconcile("--apply")
        assert code == 1, err[-2000:]
        assert [(a["kind"], a["subject"]) for a in doc["actions"]] == [
            ("mark_not_found", shadow)
        ], doc
        code, doc, err = t.reconcile()
        assert code == 1, err[-2000:]
        assert [(f["kind"], f["subject"]) for f in doc["findings"]] == [
            ("position_drift", "SPY")
        ], doc

    from mqd_cli.clock import RealTimeClock
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.store import Store

    store = Store.open(tmp_path / "mqd.db")
    try:
        adopted = OrderTracker.restore(store, RealTimeClock()).order("by-hand")
        assert adopted is not None and adopted.external
    finally:
        store.close()
