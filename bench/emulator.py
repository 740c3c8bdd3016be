"""Benchmark: the emulator (`mqd sim serve`) driven through the Alpaca adapter over loopback.

* orders/s: market orders submitted through ``AlpacaBroker.submit_order`` (alpaca-py + HTTP),
  then until every one is filled (seen as ``filled`` via ``list_orders``);
* /v2/assets: a 35,000-asset universe served, sent and parsed into ``AssetInfo``.

The emulator runs as a real `mqd sim serve` process, as operators run it (in one process with
the client, the GIL hand-off between the two threads would dominate the figures).

Medians of several runs. Run: .venv/bin/python bench/emulator.py
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqd_cli.brokers.alpaca import AlpacaBroker  # noqa: E402
from mqd_cli.config.fields import Secret
from mqd_cli.config.settings import AlpacaSettings  # noqa: E402
from mqd_cli.model import OrderIntent, OrderStatus, Side  # noqa: E402

ORDERS = 300
RUNS = 5
START = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)


class Served:
    """`mqd sim serve` in a subprocess on a free port."""

    def __init__(self, *args: str):
        import json
        import subprocess

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mqd_cli",
                "sim",
                "serve",
                "--port",
                "0",
                "--json",
                "--start",
                START.isoformat(),
                "--rate-limit",
                "1000000000",
                *args,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.urls = json.loads(self.proc.stdout.readline())
        self.base_url = self.urls["base_url"]

    def settings(self) -> AlpacaSettings:
        return AlpacaSettings(
            base_url=self.base_url,
            stream_url=self.urls["stream_url"],
            data_url=self.urls["data_url"],
            key_id=Secret("mqd-sim-key"),
            secret_key=Secret("mqd-sim-secret"),
            timeout=timedelta(seconds=60),
        )

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def bench_orders() -> tuple[float, float]:
    import httpx

    submit_rates, filled_rates = [], []
    with Served() as srv:
        broker = AlpacaBroker(srv.settings())
        symbols = ["AAPL", "MSFT", "SPY"]
        for _ in range(RUNS):
            httpx.post(srv.base_url + "/_sim/reset", timeout=30)
            t0 = time.perf_counter()
            for i in range(ORDERS):
                broker.submit_order(
                    OrderIntent(
                        symbol=symbols[i % 3],
                        side=Side.BUY,
                        qty=Decimal("1"),
                        client_order_id=f"bench-{uuid.uuid4().hex}",
                    )
                )
            t1 = time.perf_counter()
            while True:
                done = broker.list_orders("closed")
                if sum(o.status is OrderStatus.FILLED for o in done) >= ORDERS:
                    break
                httpx.post(srv.base_url + "/_sim/advance", json={"seconds": 60}, timeout=30)
            t2 = time.perf_counter()
            submit_rates.append(ORDERS / (t1 - t0))
            filled_rates.append(ORDERS / (t2 - t0))
        broker.close()
    return statistics.median(submit_rates), statistics.median(filled_rates)


def bench_assets() -> tuple[int, float, float]:
    times = []
    with Served("--universe", "35000") as srv:
        broker = AlpacaBroker(srv.settings())
        t0 = time.perf_counter()
        assets = broker.list_assets("us_equity")
        first = time.perf_counter() - t0
        for _ in range(RUNS):
            t0 = time.perf_counter()
            assets = broker.list_assets("us_equity")
            times.append(time.perf_counter() - t0)
        broker.close()
    return len(assets), first, statistics.median(times)


def main() -> None:
    submit, filled = bench_orders()
    print(f"orders: {ORDERS} market orders x {RUNS} runs through AlpacaBroker -> emulator")
    print(f"  submitted:            median {submit:8.0f} orders/s ({1000 / submit:.2f} ms each)")
    print(f"  submitted and filled: median {filled:8.0f} orders/s")
    n, first, median = bench_assets()
    print(f"/v2/assets: {n} us_equity assets served and parsed into AssetInfo")
    print(f"  first call (engine list + JSON build): {first * 1000:7.0f} ms")
    print(
        f"  median of {RUNS} (cached JSON):          {median * 1000:7.0f} ms "
        f"({n / median:,.0f} assets/s)"
    )
    print(f"  ratio first/cached: {first / median:.2f}")
    from _results import Row, save

    save(
        "emulator",
        [
            Row(
                "market orders through the Alpaca adapter and `mqd sim serve`: submitted / "
                "submitted and filled",
                f"{submit:,.0f} / {filled:,.0f} orders/s",
            ),
            Row(
                f"`/v2/assets` with {n:,} assets served and parsed, cached / first call",
                f"{median:.2f} s / {first:.2f} s",
            ),
        ],
        {
            "orders": ORDERS,
            "runs": RUNS,
            "submitted_per_s": submit,
            "filled_per_s": filled,
            "assets": n,
            "assets_first_s": first,
            "assets_median_s": median,
        },
    )


if __name__ == "__main__":
    main()
