"""Order tracker and reconcile benchmark.

* trade-update events applied per second in memory (``OrderTracker(None, ...)``);
* journaled durably to a real SQLite file (WAL, ``synchronous=NORMAL`` as the store sets it):
  in batches (``apply_many`` of 100 events: the same journal-first guarantee, every event in the
  journal before its effects, one commit per batch) -- the figure held against the target --
  and one transaction per event (``apply``), reported beside it;
* ``reconcile.diff`` of 10,000 local orders against 10,000 broker orders, and its cost per order
  at 10,000, 100,000 and 300,000 orders (issue 17: <= 4 us per order at 300,000).

Targets (issue 5): >= 100,000 events/s in memory, >= 20,000 events/s journaled, reconcile of
10,000 orders < 0.5 s. Prints medians of several repeats. The machine may be shared and noisy,
so each repeat also times bare SQLite commits (one short insert per transaction) right before
it, and every figure is printed as a ratio to that too: ``x commits`` means the rate is x times
the bare commit rate measured at the same moment.

Run: .venv/bin/python bench/orders.py [--json]   (--json: one JSON document, the rows, at the end)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqd_cli.clock import BacktestClock  # noqa: E402
from mqd_cli.model import (  # noqa: E402
    OrderReport,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradeEvent,
    TradeUpdate,
)
from mqd_cli.orders.tracker import OrderTracker  # noqa: E402
from mqd_cli.reconcile import diff as rc_diff
from mqd_cli.reconcile import model as rc_model
from mqd_cli.store import Store  # noqa: E402

T0 = datetime(2026, 9, 16, 14, 0, tzinfo=UTC)
REPEATS = 5


def order(i: int, status: str, filled: int, avg: str | None, at: datetime) -> OrderReport:
    return OrderReport(
        id=f"id-{i}",
        client_order_id=f"c-{i}",
        symbol=f"S{i % 50}",
        side=Side.BUY if i % 2 else Side.SELL,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        status=OrderStatus(status),
        qty=Decimal(100),
        notional=None,
        filled_qty=Decimal(filled),
        filled_avg_price=None if avg is None else Decimal(avg),
        created_at=T0,
        updated_at=at,
    )


def events(n_orders: int) -> list[TradeUpdate]:
    """A realistic mix per order: new, partial_fill, fill (4 events with a duplicate fill)."""
    out = []
    for i in range(n_orders):
        at = T0 + timedelta(milliseconds=i)
        out.append(TradeUpdate(TradeEvent.NEW, at, order(i, "new", 0, None, at)))
        p1 = TradeUpdate(
            TradeEvent.PARTIAL_FILL,
            at,
            order(i, "partially_filled", 40, "10", at),
            execution_id=f"e{i}a",
            price=Decimal("10"),
            qty=Decimal(40),
        )
        out.append(p1)
        out.append(p1)  # the stream redelivers
        out.append(
            TradeUpdate(
                TradeEvent.FILL,
                at,
                order(i, "filled", 100, "10.6", at),
                execution_id=f"e{i}b",
                price=Decimal("11"),
                qty=Decimal(60),
            )
        )
    return out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_commits(n: int = 1_000) -> float:
    """Bare SQLite commits/s on this disk right now (the yardstick of every repeat)."""
    import sqlite3

    with tempfile.TemporaryDirectory() as d:
        conn = sqlite3.connect(str(Path(d) / "raw.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
        start = time.perf_counter()
        for _ in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (b) VALUES (?)", ("x" * 300,))
            conn.execute("COMMIT")
        rate = n / (time.perf_counter() - start)
        conn.close()
    return rate


def repeated(run) -> tuple[float, float, float]:
    """(median events/s, median ratio to bare commits, median bare commits/s) of REPEATS runs,
    each preceded by its own bare-commit measurement."""
    rates, ratios, raws = [], [], []
    for _ in range(REPEATS):
        raw = bare_commits()
        rate = run()
        rates.append(rate)
        ratios.append(rate / raw)
        raws.append(raw)
    return statistics.median(rates), statistics.median(ratios), statistics.median(raws)


def bench_memory(n_orders: int) -> tuple[float, float, float]:
    evs = events(n_orders)

    def run() -> float:
        t = OrderTracker(None, BacktestClock(T0))
        apply = t.apply
        return len(evs) / timed(lambda: [apply(e) for e in evs])

    return repeated(run)


def bench_durable(n_orders: int, batch: int) -> tuple[float, float, float]:
    evs = events(n_orders)
    chunks = [evs[i : i + batch] for i in range(0, len(evs), batch)]

    def run() -> float:
        with tempfile.TemporaryDirectory() as d:
            store = Store.open(Path(d) / "bench.db")
            t = OrderTracker(store, BacktestClock(T0))
            if batch == 1:
                secs = timed(lambda: [t.apply(e) for e in evs])
            else:
                secs = timed(lambda: [t.apply_many(c) for c in chunks])
            store.close()
        return len(evs) / secs

    return repeated(run)


def bench_reconcile(n: int) -> tuple[float, int]:
    now = T0 + timedelta(hours=1)
    old = now - timedelta(hours=1)
    local = []
    broker = []
    for i in range(n):
        status = OrderStatus.NEW if i % 3 else OrderStatus.FILLED
        filled = Decimal(0) if i % 3 else Decimal(100)
        local.append(
            rc_model.LocalOrder(
                client_order_id=f"c-{i}",
                broker_id=f"id-{i}",
                symbol=f"S{i % 50}",
                side=Side.BUY,
                status=status,
                filled_qty=filled,
                avg_price=Decimal(10) if filled else None,
                created_at=old,
                updated_at=old,
                is_open=status.is_open,
            )
        )
        # 1 % drift in fills, 1 % orphans, the rest equal
        b_status = "filled" if i % 100 == 0 else status.value
        b_filled = 100 if i % 100 == 0 else int(filled)
        cid = f"orphan-{i}" if i % 100 == 1 else f"c-{i}"
        r = order(i, b_status, b_filled, "10" if b_filled else None, old)
        broker.append(
            OrderReport(
                **{
                    **r.__dict__,
                    "client_order_id": cid,
                    "side": Side.BUY,
                    "id": f"id-{i}" if i % 100 != 1 else f"x-{i}",
                }
            )
        )
    lookups = {
        f"c-{i}": rc_model.Lookup(f"c-{i}", "found", broker[i - 1])
        for i in range(n)
        if i % 100 == 1
    }
    state = rc_model.LocalState(orders=tuple(local), positions={})
    snap = rc_model.BrokerSnapshot(orders=tuple(broker), positions=(), account=None, taken_at=now)
    times = []
    findings = 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        report = rc_diff.diff(state, snap, lookups, now=now)
        times.append(time.perf_counter() - start)
        findings = len(report.findings)
    return statistics.median(times), findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document (the rows) at the end"
    )
    args = parser.parse_args()
    out = sys.stderr if args.json else sys.stdout
    load = os.getloadavg()[0]
    n_orders = 5_000  # 20,000 events
    mem, mem_x, raw1 = bench_memory(n_orders)
    batched, batched_x, raw2 = bench_durable(n_orders, 100)
    single, single_x, raw3 = bench_durable(1_000, 1)
    secs, findings = bench_reconcile(10_000)
    sizes = {n: bench_reconcile(n)[0] / n * 1e6 for n in (10_000, 100_000, 300_000)}
    raw = statistics.median((raw1, raw2, raw3))
    print(
        f"bare SQLite commits (yardstick)     : {raw:>9,.0f} /s (median over all repeats)", file=out
    )
    print(
        f"events applied in memory            : {mem:>9,.0f} /s = {mem_x:5.2f} commits"
        f"  (target 100,000/s: ratio {mem / 100_000:.2f})",
        file=out,
    )
    print(
        f"journaled, apply_many batches of 100: {batched:>9,.0f} /s = {batched_x:5.2f} commits"
        f"  (target 20,000/s: ratio {batched / 20_000:.2f})",
        file=out,
    )
    print(
        f"journaled, 1 event per transaction  : {single:>9,.0f} /s = {single_x:5.2f} commits"
        f"  (reported; ratio to 20,000/s {single / 20_000:.2f})",
        file=out,
    )
    print(
        f"reconcile 10,000 vs 10,000          : {secs * 1000:>9.1f} ms"
        f"  (target 500 ms: ratio {secs / 0.5:.2f}; {findings} findings)",
        file=out,
    )
    print(
        "reconcile per order                 : "
        + ", ".join(f"{us:.2f} us at {n:,}" for n, us in sizes.items())
        + f"  (target <= 4 us at 300,000: ratio {sizes[300_000] / 4:.2f})",
        file=out,
    )
    if not args.json:
        return
    rows = [
        {
            "measure": "trade updates applied in memory",
            "result": f"{mem / 1000:.0f}k/s",
            "peer": "",
            "target": ">= 100k/s",
            "met": mem >= 100_000,
        },
        {
            "measure": "journaled durably (batches of 100 / one per transaction)",
            "result": f"{batched / 1000:.0f}k/s / {single / 1000:.0f}k/s",
            "peer": "",
            "target": ">= 20k/s",
            "met": batched >= 20_000,
        },
        {
            "measure": "reconcile 10,000 local vs 10,000 broker orders",
            "result": f"{secs * 1000:.0f} ms",
            "peer": "",
            "target": "< 0.5 s",
            "met": secs < 0.5,
        },
        {
            "measure": "reconcile per order at 300,000 orders",
            "result": f"{sizes[300_000]:.2f} µs",
            "peer": "",
            "target": "<= 4 µs",
            "met": sizes[300_000] <= 4,
        },
    ]
    doc = {
        "bench": "orders",
        "machine": {"cpus": os.cpu_count(), "load_1m_at_start": round(load, 2)},
        "rows": rows,
        "raw": {
            "bare_commits_per_s": raw,
            "memory_per_s": mem,
            "memory_x_commits": mem_x,
            "batched_per_s": batched,
            "batched_x_commits": batched_x,
            "single_per_s": single,
            "single_x_commits": single_x,
            "reconcile_10k_s": secs,
            "reconcile_findings": findings,
            "reconcile_us_per_order": {str(n): us for n, us in sizes.items()},
        },
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
