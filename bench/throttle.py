"""Throttler benchmark against aiolimiter and pyrate-limiter, like for like, peer in the same run.

    .venv/bin/python -m pip install aiolimiter pyrate-limiter filelock   # benchmark only
    .venv/bin/python bench/throttle.py [--runs N] [--json]

Each figure is the median of N runs (default 3); in every run mqd and its peer are measured one
right after the other (alternating which goes first), so both see the same machine load:

1. uncontended overhead, microseconds per call: ``await acquire_async`` against aiolimiter's
   ``async with``, the blocking ``acquire`` against pyrate-limiter's blocking ``try_acquire``,
   the shared (store) ``acquire`` against pyrate-limiter's SQLite bucket with a file lock;
2. one process saturating a 20/1s budget for 5 windows: 4 asyncio tasks on ``acquire_async``
   against 4 on aiolimiter; one caller on ``acquire`` (in memory, and shared through the store)
   against one on pyrate-limiter (in memory, SQLite);
3. four processes saturating one 20/1s budget together: the merged send log. A per-process
   limiter cannot hold a shared budget (aiolimiter, pyrate in memory); pyrate-limiter's SQLite
   bucket with a file lock can;
4. four processes saturating a 640/1s budget, where leases batch the store's transactions:
   also store transactions per request.

A send is stamped right after the limiter lets it through (the moment it would go out).
Violations: sends that open a 1 s window holding more than the limit (the worst of the N runs).
Utilisation: the sustained rate after the first burst, ``(n - admitted) / (t_last - t_first)``,
over what the limiter admits per window (the limit; for mqd's default 3 % margin, 19 or 620).
mqd runs with safety_margin = 0 (every limiter admits the same per window) and its default send
guard (50 ms, capped at 1 % of the window: a woken waiter may send that late after its slot).
Every loop is bounded: a fixed count of calls, or WINDOWS windows of time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqd_cli.clock import RealTimeClock  # noqa: E402
from mqd_cli.store import Store  # noqa: E402
from mqd_cli.throttle import RateLimit, Throttler  # noqa: E402

CLOCK = RealTimeClock()
LIMIT = 20
BIG_LIMIT = 640  # section 4: large enough for leased batches (up to 1/32 of the budget)
WINDOW = 1.0
WINDOWS = 5
PROCESSES = 4
TASKS = 4  # asyncio tasks per process in the async saturation rows
CALLS = 20_000  # per overhead sample
SLOW_CALLS = 1_000  # per overhead sample of pyrate-limiter's SQLite bucket (~1 ms a call)
GUARD = 0.05  # mqd's default send guard


def mqd_throttler(limit: int, shared_db: str | None = None, margin: float = 0.0) -> Throttler:
    limits = {"api": RateLimit("api", limit, timedelta(seconds=WINDOW))}
    if shared_db is None:
        return Throttler(CLOCK, limits, safety_margin=margin, send_guard=GUARD)
    store = Store.open(shared_db)
    return Throttler(
        CLOCK, limits, store=store, shared=True, safety_margin=margin, send_guard=GUARD
    )


def pyrate(limit: int, sqlite_db: str | None = None) -> Any:
    from pyrate_limiter import Duration, limiter_factory

    if sqlite_db is None:
        return limiter_factory.create_inmemory_limiter(limit, Duration.SECOND * int(WINDOW))
    return limiter_factory.create_sqlite_limiter(
        limit, Duration.SECOND * int(WINDOW), db_path=sqlite_db, use_file_lock=True
    )


def per_call_us(run: Callable[[int], object], n: int) -> float:
    t0 = CLOCK.monotonic()
    run(n)
    return (CLOCK.monotonic() - t0) / n * 1e6


# -- 1. overhead ----------------------------------------------------------------------------------


def overhead_pairs(tmp: Path, run_no: int) -> list[tuple[str, float, str, float]]:
    """One run: (mqd row, us, peer row, us) for each like-for-like pair."""
    from aiolimiter import AsyncLimiter

    big = 10**9
    th_async = mqd_throttler(big)

    async def mqd_async(n: int) -> None:
        for _ in range(n):
            await th_async.acquire_async("api")

    async def aio(n: int) -> None:
        lim = AsyncLimiter(big, WINDOW)  # one limiter per event loop, as aiolimiter requires
        for _ in range(n):
            async with lim:
                pass

    th = mqd_throttler(big)
    pr = pyrate(big)
    pooled = Throttler(
        CLOCK,
        {
            "api": RateLimit("api", big, timedelta(seconds=WINDOW), ("burst",)),
            "burst": RateLimit("burst", big, timedelta(seconds=WINDOW)),
        },
        safety_margin=0.0,
        send_guard=GUARD,
    )
    shared = mqd_throttler(big, str(tmp / f"overhead-mqd-{run_no}.db"))
    prs = pyrate(big, str(tmp / f"overhead-pyrate-{run_no}.db"))

    pairs: list[tuple[str, Callable[[], float], str, Callable[[], float]]] = [
        (
            "mqd acquire_async (in memory)",
            lambda: per_call_us(lambda n: asyncio.run(mqd_async(n)), CALLS),
            "aiolimiter async with",
            lambda: per_call_us(lambda n: asyncio.run(aio(n)), CALLS),
        ),
        (
            "mqd acquire (in memory)",
            lambda: per_call_us(lambda n: [th.acquire("api") for _ in range(n)], CALLS),
            "pyrate-limiter try_acquire (in memory)",
            lambda: per_call_us(lambda n: [pr.try_acquire("api") for _ in range(n)], CALLS),
        ),
        (
            "mqd acquire, pooled (2 budgets)",
            lambda: per_call_us(lambda n: [pooled.acquire("api") for _ in range(n)], CALLS),
            "pyrate-limiter try_acquire (in memory)",
            lambda: per_call_us(lambda n: [pr.try_acquire("api") for _ in range(n)], CALLS),
        ),
        (
            "mqd acquire (shared, store)",
            lambda: per_call_us(lambda n: [shared.acquire("api") for _ in range(n)], CALLS),
            "pyrate-limiter SQLite + file lock",
            lambda: per_call_us(lambda n: [prs.try_acquire("api") for _ in range(n)], SLOW_CALLS),
        ),
    ]
    out = []
    for name, mine, peer, theirs in pairs:
        if run_no % 2:
            p = theirs()
            m = mine()
        else:
            m = mine()
            p = theirs()
        out.append((name, m, peer, p))
    return out


# -- 2, 3, 4. saturation --------------------------------------------------------------------------


def judge(sends: list[float], start: float, limit: int, admitted: int) -> tuple[int, float]:
    """(violations, utilisation) of a send log over WINDOWS windows from ``start``."""
    sends = sorted(t for t in sends if start <= t < start + WINDOWS * WINDOW)
    violations = 0
    j = 0
    for i, t in enumerate(sends):
        j = max(j, i)
        while j < len(sends) and sends[j] < t + WINDOW:
            j += 1
        violations += (j - i) > limit
    if len(sends) <= admitted or sends[-1] == sends[0]:
        return violations, 0.0
    rate = (len(sends) - admitted) / (sends[-1] - sends[0])
    return violations, rate / (admitted / WINDOW)


def admitted(kind: str, limit: int) -> int:
    """What ``kind`` lets through per window: mqd's default-margin row admits 3 % less."""
    if "3%" in kind:
        return RateLimit("api", limit, timedelta(seconds=WINDOW)).budget(0.03)
    return limit


def saturate(kind: str, db: str | None, start: float, limit: int) -> list[float]:
    """Acquire as fast as allowed from ``start`` for WINDOWS windows; the send times."""
    end = start + WINDOWS * WINDOW
    sends: list[float] = []
    if kind in ("aiolimiter", "mqd acquire_async"):
        if kind == "aiolimiter":
            from aiolimiter import AsyncLimiter

            lim = AsyncLimiter(limit, WINDOW)
        else:
            th = mqd_throttler(limit, db)

        async def run() -> None:
            await asyncio.sleep(max(0.0, start - CLOCK.now().timestamp()))

            async def worker() -> None:
                while True:
                    if kind == "aiolimiter":
                        async with lim:
                            t = CLOCK.now().timestamp()
                    else:
                        await th.acquire_async("api")
                        t = CLOCK.now().timestamp()
                    if t >= end:
                        return
                    sends.append(t)

            await asyncio.gather(*(worker() for _ in range(TASKS)))

        asyncio.run(run())
        return sends
    if kind.startswith("mqd"):
        th = mqd_throttler(limit, db, 0.03 if "3%" in kind else 0.0)
        acquire: Callable[[], object] = lambda: th.acquire("api")  # noqa: E731
    else:
        pr = pyrate(limit, db)
        acquire = lambda: pr.try_acquire("api")  # noqa: E731
    CLOCK.sleep(start - CLOCK.now().timestamp())
    while True:
        acquire()
        t = CLOCK.now().timestamp()
        if t >= end:
            if kind.startswith("mqd"):
                th.flush()
            return sends
        sends.append(t)


def race(tmp: Path, kind: str, needs_db: bool, limit: int, procs: int) -> dict[str, float]:
    """``procs`` worker processes saturating one budget from one start."""
    tag = f"mp-{len(list(tmp.iterdir()))}"
    db = str(tmp / f"{tag}.db") if needs_db else "-"
    if needs_db and kind.startswith("mqd"):
        Store.open(db).close()  # migrate once, before the race
    if needs_db and kind.startswith("pyrate"):
        pyrate(limit, db)  # create the table before the race
    start = CLOCK.now().timestamp() + 1.5
    logs = [tmp / f"{tag}-{i}.log" for i in range(procs)]
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, db, repr(start), str(log), str(limit)]
        )
        for log in logs
    ]
    for w in workers:
        w.wait(timeout=120)
    sends = [float(x) for log in logs for x in log.read_text().split()]
    writes = sum(int(Path(f"{log}.writes").read_text() or 0) for log in logs)
    viol, util = judge(sends, start, limit, admitted(kind, limit))
    inside = sum(1 for t in sends if start <= t < start + WINDOWS * WINDOW)
    return {"violations": viol, "utilisation": util, "txn_per_request": writes / max(1, inside)}


def worker(kind: str, db: str, start: float, log: str, limit: int) -> None:
    writes = [0]
    if kind.startswith("mqd") and db != "-":
        store_write = Store.write

        def counted(self: Store) -> Any:
            writes[0] += 1
            return store_write(self)

        Store.write = counted  # type: ignore[method-assign]  # count this worker's transactions
    sends = saturate(kind, None if db == "-" else db, start, limit)
    Path(log).write_text("\n".join(repr(t) for t in sends))
    Path(f"{log}.writes").write_text(str(writes[0]))


SQLITE = "pyrate-limiter SQLite + file lock"
MARGIN3 = "mqd acquire (shared), margin 3% (default)"
# (section, mqd row, it needs a store, peers (row, needs a store), limit, processes)
SATURATION: list[tuple[str, str, bool, tuple[tuple[str, bool], ...], int, int]] = [
    ("1 process", "mqd acquire_async", False, (("aiolimiter", False),), LIMIT, 1),
    ("1 process", "mqd acquire", False, (("pyrate-limiter in memory", False),), LIMIT, 1),
    ("1 process", "mqd acquire (shared)", True, ((SQLITE, True),), LIMIT, 1),
    (
        f"{PROCESSES} processes",
        "mqd acquire (shared)",
        True,
        ((SQLITE, True), ("aiolimiter", False), ("pyrate-limiter in memory", False)),
        LIMIT,
        PROCESSES,
    ),
    (f"{PROCESSES} processes", MARGIN3, True, (), LIMIT, PROCESSES),
    (f"{PROCESSES} processes, leased", "mqd acquire (shared)", True, (), BIG_LIMIT, PROCESSES),
    (f"{PROCESSES} processes, leased", MARGIN3, True, (), BIG_LIMIT, PROCESSES),
]


def one_saturation(tmp: Path, kind: str, needs_db: bool, limit: int, procs: int) -> dict:
    if procs == 1:
        db = str(tmp / f"sat-{len(list(tmp.iterdir()))}.db") if needs_db else None
        if db and kind.startswith("mqd"):
            Store.open(db).close()
        writes = [0]
        store_write = Store.write
        if db and kind.startswith("mqd"):

            def counted(self: Store) -> Any:
                writes[0] += 1
                return store_write(self)

            Store.write = counted  # type: ignore[method-assign]
        try:
            start = CLOCK.now().timestamp() + 0.2
            sends = saturate(kind, db, start, limit)
        finally:
            Store.write = store_write  # type: ignore[method-assign]
        viol, util = judge(sends, start, limit, admitted(kind, limit))
        inside = sum(1 for t in sends if start <= t < start + WINDOWS * WINDOW)
        return {"violations": viol, "utilisation": util, "txn_per_request": writes[0] / inside}
    return race(tmp, kind, needs_db, limit, procs)


# -- report ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median); default 3")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--skip-saturation", action="store_true", help="overhead only")
    args = ap.parse_args()
    runs = max(1, args.runs)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in range(runs):
            for name, m, peer, p in overhead_pairs(tmp, r):
                samples.setdefault((name, peer), []).append((m, p))
        for (name, peer), got in samples.items():
            rows.append(
                {
                    "section": "overhead",
                    "name": name,
                    "unit": "us/call",
                    "value": statistics.median(m for m, _p in got),
                    "peer": peer,
                    "peer_value": statistics.median(p for _m, p in got),
                    "ratio": statistics.median(m / p for m, p in got),
                    "runs": runs,
                }
            )
        if not args.skip_saturation:
            for section, kind, kdb, peers, limit, procs in SATURATION:
                res: dict[str, list[dict]] = {k: [] for k, _db in ((kind, kdb), *peers)}
                for r in range(runs):
                    order = [(kind, kdb), *peers]
                    for k, needs_db in order if r % 2 == 0 else order[::-1]:
                        res[k].append(one_saturation(tmp, k, needs_db, limit, procs))
                row: dict[str, Any] = {
                    "section": f"saturation, {section}",
                    "name": kind,
                    "limit": f"{limit}/{WINDOW:g}s",
                    **summary(res[kind]),
                    "runs": runs,
                    "peers": [{"peer": k, **summary(res[k])} for k, _db in peers],
                }
                rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_rows(rows)
    if not args.skip_saturation:
        save_results(rows)


def save_results(rows: list[dict[str, Any]]) -> None:
    """The README's rows (``bench/results/throttle.json``), peers from the same runs."""
    from _results import Row, save

    over = {r["name"]: r for r in rows if r["section"] == "overhead"}
    sat = {(r["section"], r["name"]): r for r in rows if r["section"] != "overhead"}

    def us(name: str) -> tuple[str, str]:
        r = over[name]
        return f"{r['value']:.1f} µs ({r['ratio']:.2f}x)", f"{r['peer_value']:.1f} µs"

    def util(key: tuple[str, str]) -> tuple[float, int]:
        return sat[key]["utilisation"], sat[key]["violations"]

    one = "saturation, 1 process"
    four = f"saturation, {PROCESSES} processes"
    leased = f"saturation, {PROCESSES} processes, leased"
    cases = [
        ("1 process, `acquire_async`", (one, "mqd acquire_async")),
        ("1 process, `acquire`", (one, "mqd acquire")),
        ("1 process, `acquire` shared", (one, "mqd acquire (shared)")),
        (f"{PROCESSES} processes shared", (four, "mqd acquire (shared)")),
        (f"{PROCESSES} processes shared, {BIG_LIMIT}/s", (leased, "mqd acquire (shared)")),
    ]
    out = [
        Row(
            "uncontended `acquire_async` (peer: aiolimiter `async with`)",
            *us("mqd acquire_async (in memory)"),
            target="<= 1x",
        ),
        Row(
            "uncontended `acquire` (peer: pyrate-limiter `try_acquire`)",
            *us("mqd acquire (in memory)"),
            target="<= 1x",
        ),
        Row(
            "uncontended shared `acquire` (peer: pyrate-limiter SQLite + file lock)",
            *us("mqd acquire (shared, store)"),
        ),
    ]
    for label, key in cases:
        u, v = util(key)
        peers = "; ".join(
            f"{p['peer']}: {p['violations']} violations, {p['utilisation']:.1%}"
            for p in sat[key]["peers"]
        )
        out.append(
            Row(
                f"saturation {sat[key]['limit']}, {label}: violations, utilisation",
                f"{v}, {u:.1%}",
                peer=peers,
                target="0, >= 99 %",
                met=v == 0 and u >= 0.99,
            )
        )
    txn = sat[(leased, "mqd acquire (shared)")]["txn_per_request"]
    out.append(
        Row(f"store transactions per request, {PROCESSES} processes at {BIG_LIMIT}/s", f"{txn:.2f}")
    )
    save("throttle", out, {"rows": rows, "runs": rows[0]["runs"] if rows else 0})


def summary(results: list[dict]) -> dict[str, Any]:
    return {
        "violations": max(x["violations"] for x in results),  # the worst run
        "utilisation": statistics.median(x["utilisation"] for x in results),
        "utilisation_min": min(x["utilisation"] for x in results),
        "txn_per_request": statistics.median(x["txn_per_request"] for x in results),
    }


def print_rows(rows: list[dict[str, Any]]) -> None:
    section = None
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            print(f"\n{section} (median of {row['runs']} runs; peer measured in the same run)")
        if section == "overhead":
            print(
                f"   {row['name']:<34} {row['value']:7.2f} us   {row['peer']:<40}"
                f" {row['peer_value']:7.2f} us   ratio {row['ratio']:5.2f}x"
            )
            continue
        line = (
            f"   {row['name']:<42} {row['limit']:>7}  violations {row['violations']:3d}"
            f"  utilisation {row['utilisation']:6.1%} (min {row['utilisation_min']:6.1%})"
        )
        if row["txn_per_request"]:
            line += f"  {row['txn_per_request']:.2f} txn/request"
        print(line)
        for peer in row["peers"]:
            print(
                f"     vs {peer['peer']:<39} {'':>7}  violations {peer['violations']:3d}"
                f"  utilisation {peer['utilisation']:6.1%}"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
    else:
        main()
