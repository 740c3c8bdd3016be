"""Benchmark the user stream against `mqd sim serve` on loopback.

    .venv/bin/python bench/stream.py [--rate 1000] [--seconds 10] [--fills 10000]

The emulator runs in its own process (with an order driver thread placing 1-share market
orders through its REST API at a steady pace: pending_new, new, fill = 3 events per order) so
the client's event loop does not share a GIL with the exchange. Three figures:

1. latency from the emulator emitting an event (its SimBroker subscriber) to the client's
   OrderTracker having applied and journaled it (a real SQLite store), p50 / p99, at the target
   event rate; both sides stamp with CLOCK_MONOTONIC, which is system-wide on Linux;
2. resume time: from the server dropping the connection to reconnected and gap-filled;
3. lost or doubled fills over N fills with a drop every 500 events (must be 0 and 0).

Targets: p99 < 5 ms, resume < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MARKET_OPEN = "2026-01-05T14:35:00+00:00"


# -- the exchange process -------------------------------------------------------------------------


def exchange_main(rate: float, orders: int, drop_every: int) -> None:
    """Child process: emulator + order driver; talks JSON lines over stdin/stdout."""
    from datetime import datetime

    import httpx

    from mqd_cli.simserver import EmulatorConfig, EmulatorServer, Faults

    config = EmulatorConfig(
        start=datetime.fromisoformat(MARKET_OPEN),
        rate_limit=10**9,
        data_rate_limit=10**9,
        faults=Faults(stream_drop_every=drop_every),
    )
    server = EmulatorServer(config).start()
    emitted: dict[str, int] = {}

    def record(update) -> None:
        emitted[_key(update.order.client_order_id, update.event_raw, update.execution_id)] = (
            time.monotonic_ns()
        )

    server.emulator.broker.subscribe(record)
    print(json.dumps({"stream_url": server.stream_url, "base_url": server.base_url}), flush=True)
    headers = {"APCA-API-KEY-ID": config.key_id, "APCA-API-SECRET-KEY": config.secret_key}

    def drive(tag: str) -> None:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as http:
            start = time.perf_counter()
            for i in range(orders):
                due = start + i / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                body = {
                    "symbol": "AAPL",
                    "qty": "1",
                    "side": "buy" if i % 2 == 0 else "sell",
                    "type": "market",
                    "time_in_force": "day",
                    "client_order_id": f"bench-{tag}-{i}",
                }
                http.post("/v2/orders", json=body).raise_for_status()
        print(json.dumps({"done": orders, "seconds": time.perf_counter() - start}), flush=True)

    for line in sys.stdin:
        command = line.split()
        if command[0] == "go":
            threading.Thread(target=drive, args=(command[1],), daemon=True).start()
        elif command[0] == "drop":
            httpx.post(server.base_url + "/_sim/drop_streams").raise_for_status()
            print(json.dumps({"dropped_at": time.monotonic_ns()}), flush=True)
        elif command[0] == "dump":
            print(json.dumps({"emitted": emitted}), flush=True)
        elif command[0] == "quit":
            break
    server.stop()


def _key(cid: str, event: str, execution_id: str | None) -> str:
    return f"{cid}|{event}|{execution_id or ''}"


# -- the client side ------------------------------------------------------------------------------


class Exchange:
    def __init__(self, rate: float, orders: int, drop_every: int = 0):
        self.args = [str(rate), str(orders), str(drop_every)]

    async def __aenter__(self) -> Exchange:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--exchange",
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**28,
        )
        self.urls = await self.read()
        return self

    async def send(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def read(self) -> dict:
        return json.loads(await self.proc.stdout.readline())

    async def __aexit__(self, *exc) -> None:
        await self.send("quit")
        await self.proc.wait()


def client(urls: dict, db: Path):
    from mqd_cli.brokers.alpaca import AlpacaBroker
    from mqd_cli.clock import RealTimeClock
    from mqd_cli.config import AlpacaSettings, Secret
    from mqd_cli.orders import OrderTracker
    from mqd_cli.store import Store
    from mqd_cli.stream import StreamOptions, UserStreamTracker

    settings = AlpacaSettings(
        base_url=urls["base_url"],
        stream_url=urls["stream_url"],
        key_id=Secret("mqd-sim-key"),
        secret_key=Secret("mqd-sim-secret"),
    )
    broker = AlpacaBroker(settings)
    store = Store.open(db)
    clock = RealTimeClock()
    tracker = OrderTracker(store, clock)
    stream = UserStreamTracker(
        urls["stream_url"],
        "mqd-sim-key",
        "mqd-sim-secret",
        clock=clock,
        tracker=tracker,
        broker=broker,
        options=StreamOptions(),
    )
    return stream, tracker, broker, store


async def wait_connected(stream, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not stream.health.connected:
            await asyncio.sleep(0.005)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def latency(rate: float, seconds: float, tmp: Path) -> dict:
    orders = int(rate * seconds / 3)
    async with Exchange(rate / 3, orders) as ex:
        stream, tracker, broker, store = client(ex.urls, tmp / "latency.db")
        applied: dict[str, int] = {}
        stream.subscribe(
            lambda u: applied.__setitem__(
                _key(u.order.client_order_id, u.event_raw, u.execution_id), time.monotonic_ns()
            )
        )
        handle, in_client = stream._handle_frame, []

        def timed(frame):  # the client's share: frame from websockets -> applied, journaled
            t = time.perf_counter_ns()
            try:
                return handle(frame)
            finally:
                in_client.append((time.perf_counter_ns() - t) / 1e6)

        stream._handle_frame = timed
        task = asyncio.create_task(stream.run())
        await wait_connected(stream)
        await ex.send("go lat")
        done = await ex.read()
        async with asyncio.timeout(30):
            while len(applied) < orders * 3:
                await asyncio.sleep(0.01)
        await ex.send("dump")
        emitted = (await ex.read())["emitted"]
        stream.stop()
        await task
        broker.close()
        store.close()
    lat = [(applied[k] - t) / 1e6 for k, t in emitted.items() if k in applied]
    return {
        "events": len(lat),
        "achieved_rate": len(lat) / done["seconds"],
        "p50_ms": statistics.median(lat),
        "p99_ms": pct(lat, 99),
        "max_ms": max(lat),
        "client_p50_ms": statistics.median(in_client),
        "client_p99_ms": pct(in_client, 99),
    }


async def resume(tmp: Path, drops: int = 10, rate: float = 50) -> dict:
    async with Exchange(rate, int(rate * 20)) as ex:
        stream, tracker, broker, store = client(ex.urls, tmp / "resume.db")
        task = asyncio.create_task(stream.run())
        await wait_connected(stream)
        await ex.send("go res")
        times = []
        for _ in range(drops):
            await asyncio.sleep(0.5)
            stream.health.last_resume_ms = None
            await ex.send("drop")
            await ex.read()
            try:
                async with asyncio.timeout(10):
                    while stream.health.last_resume_ms is None:
                        await asyncio.sleep(0.001)
            except TimeoutError:
                print(stream.health.as_dict(), file=sys.stderr)
                raise
            times.append(stream.health.last_resume_ms)
        await ex.read()  # the driver finished
        stream.stop()
        await task
        broker.close()
        store.close()
    return {"drops": drops, "median_ms": statistics.median(times), "max_ms": max(times)}


async def exactly_once(fills: int, rate: float, tmp: Path) -> dict:
    async with Exchange(rate / 3, fills, drop_every=500) as ex:
        stream, tracker, broker, store = client(ex.urls, tmp / "exact.db")
        task = asyncio.create_task(stream.run())
        await wait_connected(stream)
        started = time.perf_counter()
        await ex.send("go x")
        await ex.read()
        reports = []
        async with asyncio.timeout(60):
            while True:  # until the last gap fill has caught up
                reports = await asyncio.to_thread(broker.list_orders, "all")
                ok = sum(
                    1
                    for r in reports
                    if tracker.order(r.client_order_id) is not None
                    and tracker.order(r.client_order_id).filled_qty >= r.filled_qty
                )
                if len(reports) == fills and ok == fills:
                    break
                await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        stream.stop()
        await task
        lost = doubled = 0
        broker_fills = 0
        for r in reports:
            o = tracker.order(r.client_order_id)
            mine = sum(f.qty for f in o.fills) if o else 0
            ids = [f.fill_id for f in o.fills] if o else []
            broker_fills += int(r.filled_qty)
            lost += max(0, int(r.filled_qty - mine))
            doubled += max(0, int(mine - r.filled_qty)) + len(ids) - len(set(ids))
        h = stream.health
        broker.close()
        store.close()
    return {
        "fills": broker_fills,
        "seconds": elapsed,
        "reconnects": h.reconnects,
        "gap_fill_fills": h.gap_fill_fills,
        "lost": lost,
        "doubled": doubled,
    }


async def main(args) -> None:
    import logging

    logging.getLogger("mqd.stream").setLevel(logging.ERROR)  # drops are the point here
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lat = await latency(args.rate, args.seconds, tmp)
        print(
            f"latency emit->applied at {lat['achieved_rate']:.0f} events/s over"
            f" {lat['events']} events: p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms,"
            f" max {lat['max_ms']:.2f} ms (target p99 < 5 ms: {lat['p99_ms'] / 5:.2f}x)"
        )
        print(
            f"  of which in the client (frame -> parsed, applied, journaled): p50"
            f" {lat['client_p50_ms']:.2f} ms, p99 {lat['client_p99_ms']:.2f} ms"
        )
        res = await resume(tmp)
        print(
            f"resume after a drop (server back at once), {res['drops']} drops: median"
            f" {res['median_ms']:.1f} ms, max {res['max_ms']:.1f} ms (target < 1000 ms)"
        )
        ex = await exactly_once(args.fills, args.rate, tmp)
        print(
            f"exactly once: {ex['fills']} fills in {ex['seconds']:.1f}s, drop every 500 events"
            f" -> {ex['reconnects']} reconnects, {ex['gap_fill_fills']} fills recovered by gap"
            f" fill; lost {ex['lost']}, doubled {ex['doubled']}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--exchange":
        exchange_main(float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--rate", type=float, default=1000, help="events per second")
        parser.add_argument("--seconds", type=float, default=10, help="latency run length")
        parser.add_argument("--fills", type=int, default=10_000, help="fills for exactly-once")
        asyncio.run(main(parser.parse_args()))
