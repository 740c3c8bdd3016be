"""Shared test helpers (one module; fixtures live in conftest.py and tests/emulator.py).

* the simulated exchange on a ``BacktestClock`` over scripted bars (``make_sim``, ``scripted``);
* ``mqd run`` in a subprocess against ``mqd sim serve`` (``run_config``, ``run_env``, ``spawn``,
  ``wait_for``, the ``PING_PONG`` strategy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.brokers.sim.prices import CsvPrices, SyntheticPrices
from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import SimSettings
from mqd_cli.model import Bar, OrderIntent, OrderType, Side, TimeInForce, TradeUpdate

T0 = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)  # Monday 09:35 New York
MINUTE = timedelta(minutes=1)


def scripted(symbol: str, ohlc: list[tuple[str, str, str, str]], start: datetime = T0):
    """Minute bars of ``symbol`` from ``start``: (open, high, low, close) as strings."""
    return {
        symbol: [
            Bar(
                symbol=symbol,
                timestamp=start + i * MINUTE,
                open=Decimal(o),
                high=Decimal(h),
                low=Decimal(lo),
                close=Decimal(c),
                volume=Decimal(1000),
            )
            for i, (o, h, lo, c) in enumerate(ohlc)
        ]
    }


@dataclass
class Sim:
    broker: SimBroker
    clock: BacktestClock
    events: list[TradeUpdate] = field(default_factory=list)

    def minutes(self, n: int = 1) -> list[TradeUpdate]:
        out = []
        for _ in range(n):
            self.clock.advance(MINUTE)
            out.extend(self.broker.step())
        return out

    def kinds(self, order_id: str | None = None) -> list[str]:
        return [e.event.value for e in self.events if order_id is None or e.order.id == order_id]

    def submit(self, symbol: str = "AAPL", side: Side = Side.BUY, qty: str | None = "10", **kw):
        kw.setdefault("client_order_id", f"t-{len(self.broker.list_orders('all'))}")
        for key in ("limit_price", "stop_price", "trail_price", "trail_percent", "notional"):
            if isinstance(kw.get(key), str):
                kw[key] = Decimal(kw[key])
        if isinstance(kw.get("type"), str):
            kw["type"] = OrderType(kw["type"])
        if isinstance(kw.get("time_in_force"), str):
            kw["time_in_force"] = TimeInForce(kw["time_in_force"])
        return self.broker.submit_order(
            OrderIntent(
                symbol=symbol, side=side, qty=Decimal(qty) if qty is not None else None, **kw
            )
        )


def make_sim(bars: dict | None = None, start: datetime = T0, **settings) -> Sim:
    settings.setdefault("partial_fill_probability", 0.0)
    settings.setdefault("liquidity", Decimal(0))
    sim_settings = SimSettings(**settings)
    clock = BacktestClock(start)
    prices = None
    if bars is not None:
        prices = CsvPrices(bars, SyntheticPrices(sim_settings.seed))
    broker = SimBroker(sim_settings, clock, prices=prices)
    sim = Sim(broker, clock)
    broker.subscribe(sim.events.append)
    return sim


# -- mqd run in a subprocess ---------------------------------------------------------------

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
