"""Symbol properties: sync of 35,000 assets, cache load time, validations per second.

1. ``mqd symbols sync --json`` as a subprocess against the emulator (`mqd sim serve` in this
   process on loopback, serving a 35,000-asset universe): first sync into an empty store, then
   a second sync with nothing changed. End to end: process start, HTTP, parsing, diff, write.
2. The same ``symbols.sync`` in-process: through the Alpaca adapter + throttler against the
   emulator, and against the in-process SimBroker (no HTTP).
3. ``SymbolBook`` cache load of 35,000 assets (fresh book each run).
4. ``validate`` and ``prepare`` calls per second over a mix of order intents.

Targets: sync < 5 s, cache load < 100 ms, >= 100,000 validations/s.

Usage: .venv/bin/python bench/symbols.py [--runs N] [--assets N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mqd_cli.brokers.sim.assets import generate_universe  # noqa: E402
from mqd_cli.brokers.sim.broker import SimBroker  # noqa: E402
from mqd_cli.clock import BacktestClock  # noqa: E402
from mqd_cli.config.loading import loads
from mqd_cli.config.settings import SimSettings  # noqa: E402
from mqd_cli.emulator.server import EmulatorServer
from mqd_cli.emulator.settings import EmulatorConfig  # noqa: E402
from mqd_cli.factory import Services  # noqa: E402
from mqd_cli.model import OrderIntent, OrderType, Side, TimeInForce  # noqa: E402
from mqd_cli.store import Store  # noqa: E402
from mqd_cli.symbols.book import SymbolBook  # noqa: E402
from mqd_cli.symbols.sync import sync

T0 = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


def config_text(srv, db: Path) -> str:
    return (
        'broker = "alpaca"\n[alpaca]\n'
        f'base_url = "{srv.base_url}"\nstream_url = "{srv.stream_url}"\n'
        f'data_url = "{srv.data_url}"\nkey_id = "{srv.config.key_id}"\n'
        f'secret_key = "{srv.config.secret_key}"\ntimeout = "30s"\n'
        f'[store]\npath = "{db}"\n'
    )


def bench_cli(srv, runs: int, tmp: Path) -> tuple[list[float], list[float], int]:
    first, second, fetched = [], [], 0
    env = {**os.environ, "MQD_CONFIG": ""}
    for i in range(runs):
        db = tmp / f"cli{i}.db"
        cfg = tmp / f"cli{i}.toml"
        cfg.write_text(config_text(srv, db))
        for bucket in (first, second):
            t = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "mqd_cli", "symbols", "sync", "--json", "-c", str(cfg)],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            bucket.append(time.perf_counter() - t)
            if out.returncode != 0:
                raise SystemExit(f"mqd symbols sync failed: {out.stderr}")
            fetched = json.loads(out.stdout)["counts"]["fetched"]
    return first, second, fetched


def bench_in_process(srv, universe, runs: int, tmp: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"adapter": [], "sim": []}
    for i in range(runs):
        db = tmp / f"ad{i}.db"
        services = Services(loads(config_text(srv, db)).settings)
        try:
            t = time.perf_counter()
            sync(services.store, services.broker, services.clock)
            out["adapter"].append(time.perf_counter() - t)
        finally:
            services.broker.close()
            services.close()
        clock = BacktestClock(T0)
        store = Store.open(tmp / f"sim{i}.db")
        broker = SimBroker(SimSettings(), clock, assets=universe)
        t = time.perf_counter()
        sync(store, broker, clock)
        out["sim"].append(time.perf_counter() - t)
        store.close()
    return out


def intents(symbols: list[str], n: int) -> list[OrderIntent]:
    rng = random.Random(7)
    out = []
    for _ in range(n):
        sym = rng.choice(symbols)
        kind = rng.random()
        if kind < 0.5:
            price = Decimal(rng.randint(100, 50_000)) / 100
            out.append(
                OrderIntent(
                    sym,
                    Side.BUY,
                    qty=Decimal(rng.randint(1, 100)),
                    type=OrderType.LIMIT,
                    limit_price=price,
                )
            )
        elif kind < 0.8:
            out.append(OrderIntent(sym, Side.SELL, qty=Decimal(rng.randint(1, 50))))
        elif kind < 0.9:
            out.append(OrderIntent(sym, Side.BUY, notional=Decimal(rng.randint(5, 500))))
        else:  # sub-penny: invalid, the slow path with a Problem and a fix
            out.append(
                OrderIntent(
                    sym,
                    Side.BUY,
                    qty=Decimal(3),
                    type=OrderType.LIMIT,
                    limit_price=Decimal("11.055"),
                    time_in_force=TimeInForce.DAY,
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--assets", type=int, default=35_000)
    args = ap.parse_args()
    universe = generate_universe(args.assets, seed=7)
    tmp = Path(tempfile.mkdtemp(prefix="mqd-bench-symbols-"))
    t = time.perf_counter()
    srv = EmulatorServer(
        EmulatorConfig(universe=args.assets, start=T0, rate_limit=100_000, data_rate_limit=100_000)
    ).start()
    started = time.perf_counter() - t
    try:
        print(f"symbols bench: {args.assets} assets, {args.runs} runs, medians")
        # Not part of the sync: the emulator serializes its asset lists as it builds the market.
        print(f"  emulator start (market built, asset lists encoded) {started * 1000:8.1f} ms")
        first, second, fetched = bench_cli(srv, args.runs, tmp)
        print(
            f"  mqd symbols sync (subprocess, emulator), first    {median_ms(first)}"
            f"   ({fetched} assets; target < 5000 ms)"
        )
        print(f"  mqd symbols sync (subprocess, emulator), repeat   {median_ms(second)}")
        inproc = bench_in_process(srv, universe, args.runs, tmp)
        print(f"  sync() in-process, Alpaca adapter + emulator      {median_ms(inproc['adapter'])}")
        print(f"  sync() in-process, SimBroker (no HTTP)            {median_ms(inproc['sim'])}")
    finally:
        srv.stop()

    store = Store.open(tmp / "sim0.db")
    clock = BacktestClock(T0)
    loads_s = []
    for _ in range(max(5, args.runs * 3)):
        book = SymbolBook(store, clock, stale_after=timedelta(days=1))
        t = time.perf_counter()
        book.load()
        loads_s.append(time.perf_counter() - t)
    print(
        f"  cache load ({len(book)} assets)                    {median_ms(loads_s)}"
        "   (target < 100 ms)"
    )

    symbols = [a.symbol for a in universe if a.asset_class.value == "us_equity"]
    work = intents(symbols, 100_000)
    for intent in work:  # warm the per-symbol cache (the run loop sees the same few symbols)
        book.get(intent.symbol)
    rates: dict[str, list[float]] = {"validate": [], "prepare": []}
    for _ in range(args.runs):
        t = time.perf_counter()
        for intent in work:
            book.validate(intent, price=Decimal("100"))
        rates["validate"].append(len(work) / (time.perf_counter() - t))
        t = time.perf_counter()
        for intent in work:
            book.prepare(intent, price=Decimal("100"), position_qty=Decimal(50))
        rates["prepare"].append(len(work) / (time.perf_counter() - t))
    v, p = statistics.median(rates["validate"]), statistics.median(rates["prepare"])
    print(
        f"  validate() per second                         {v:12,.0f}   (target >= 100,000;"
        f" {v / 100_000:.1f}x)"
    )
    print(f"  prepare() (round + validate) per second       {p:12,.0f}")
    store.close()
    from _results import Row, save

    sync_s = statistics.median(first)
    load_ms = statistics.median(loads_s) * 1000
    save(
        "symbols",
        [
            Row(
                f"`mqd symbols sync` of {fetched:,} assets through the emulator, end to end",
                f"{sync_s:.1f} s",
                target="< 5 s",
                met=sync_s < 5,
            ),
            Row(
                "symbol cache load / `validate()` per second",
                f"{load_ms:.0f} ms / {v:,.0f}",
                target="< 100 ms / >= 100,000",
                met=load_ms < 100 and v >= 100_000,
            ),
        ],
        {
            "assets": fetched,
            "runs": args.runs,
            "sync_first_s": first,
            "sync_repeat_s": second,
            "cache_load_s": loads_s,
            "validate_per_s": v,
            "prepare_per_s": p,
        },
    )


if __name__ == "__main__":
    main()
