"""Throttler benchmark against aiolimiter and pyrate-limiter on the same workloads.

    .venv/bin/python -m pip install aiolimiter pyrate-limiter   # benchmark only
    .venv/bin/python bench/throttle.py

1. uncontended acquire overhead (median of 5 runs, microseconds per acquire; one row draws on
   a budget and its pool at once);
2. one process saturating a 20/1s budget for 5 windows: violations (1 s windows holding more
   than 20 sends, measured on the time each caller was let through) and utilisation (the
   sustained send rate after the first burst over 20/s);
3. four processes saturating one 20/1s budget together for 5 windows: the same figures over the
   merged send log. A per-process limiter cannot hold a shared budget; pyrate-limiter's SQLite
   bucket with a file lock can, and is measured too;
4. four mqd processes saturating a 640/1s budget, where each store transaction leases a batch
   of up to 20 slots (1/32 of the budget): violations, utilisation, transactions per request.

Utilisation is against what a limiter admits per window: the limit, or for mqd the limit less
its safety margin (the effective budget); violations are windows over the limit itself.
mqd runs with safety_margin = 0 here so every limiter admits the same 20 per window (its
send guard stays on: 50 ms capped at 1 % of the window, so 10 ms here, which costs 1 % of
utilisation on a 1 s window and 0.08 % on Alpaca's minute); one row shows its default 3 %
margin (19 admitted per window).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

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


def mqd_throttler(limit: int, shared_db: str | None = None, margin: float = 0.0) -> Throttler:
    limits = {"api": RateLimit("api", limit, timedelta(seconds=WINDOW))}
    if shared_db is None:
        return Throttler(CLOCK, limits, safety_margin=margin, send_guard=0.05)
    return Throttler(
        CLOCK,
        limits,
        store=Store.open(shared_db),
        shared=True,
        safety_margin=margin,
        send_guard=0.05,
    )


def pyrate(limit: int, sqlite_db: str | None = None):
    from pyrate_limiter import Duration, limiter_factory

    if sqlite_db is None:
        return limiter_factory.create_inmemory_limiter(limit, Duration.SECOND * int(WINDOW))
    return limiter_factory.create_sqlite_limiter(
        limit, Duration.SECOND * int(WINDOW), db_path=sqlite_db, use_file_lock=True
    )


# -- 1. overhead --------------------------------------------------------------------------------


def _median_us(run, n: int) -> float:
    samples = []
    for _ in range(5):
        t0 = CLOCK.monotonic()
        run(n)
        samples.append((CLOCK.monotonic() - t0) / n * 1e6)
    return statistics.median(samples)


def overhead(tmp: Path) -> dict[str, float]:
    from aiolimiter import AsyncLimiter

    big = 10**9
    out = {}

    th = mqd_throttler(big)
    out["mqd in-memory acquire (sync)"] = _median_us(
        lambda n: [th.acquire("api") for _ in range(n)], 20_000
    )

    pooled = Throttler(
        CLOCK,
        {
            "api": RateLimit("api", big, timedelta(seconds=WINDOW), ("burst",)),
            "burst": RateLimit("burst", big, timedelta(seconds=WINDOW)),
        },
        safety_margin=0.0,
        send_guard=0.05,
    )
    out["mqd in-memory acquire, pooled (2 budgets)"] = _median_us(
        lambda n: [pooled.acquire("api") for _ in range(n)], 20_000
    )

    th_async = mqd_throttler(big)

    async def mqd_async(n):
        for _ in range(n):
            await th_async.acquire_async("api")

    out["mqd in-memory acquire_async"] = _median_us(lambda n: asyncio.run(mqd_async(n)), 20_000)

    async def aio(n):
        lim = AsyncLimiter(big, WINDOW)  # one limiter per event loop, as aiolimiter requires
        for _ in range(n):
            async with lim:
                pass

    out["aiolimiter (async with)"] = _median_us(lambda n: asyncio.run(aio(n)), 20_000)

    pr = pyrate(big)
    out["pyrate-limiter in-memory"] = _median_us(
        lambda n: [pr.try_acquire("api") for _ in range(n)], 20_000
    )

    shared = mqd_throttler(big, str(tmp / "overhead-mqd.db"))
    out["mqd shared (SQLite store)"] = _median_us(
        lambda n: [shared.acquire("api") for _ in range(n)], 20_000
    )
    prs = pyrate(big, str(tmp / "overhead-pyrate.db"))
    out["pyrate-limiter SQLite + file lock"] = _median_us(
        lambda n: [prs.try_acquire("api") for _ in range(n)], 2_000
    )
    return out


# -- 2 and 3. saturation ------------------------------------------------------------------------


def judge(
    sends: list[float], start: float, limit: int = LIMIT, admitted: int = LIMIT
) -> tuple[int, float]:
    """(violations, utilisation) of a send log over WINDOWS windows from ``start``.

    Violations: sends that open a 1 s window holding more than ``limit`` sends. Utilisation:
    the sustained rate after the first burst, ``(n - admitted) / (t_last - t_first)``, over
    ``admitted`` per window (the effective budget).
    """
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


def admitted(kind: str, limit: int = LIMIT) -> int:
    """What ``kind`` lets through per window: mqd's default-margin row admits 3 % less."""
    if "3%" in kind:
        return RateLimit("api", limit, timedelta(seconds=WINDOW)).budget(0.03)
    return limit


def saturate(kind: str, db: str | None, start: float, limit: int = LIMIT) -> list[float]:
    """Acquire as fast as allowed from ``start`` for WINDOWS windows; the send times."""
    end = start + WINDOWS * WINDOW
    sends: list[float] = []
    if kind == "aiolimiter":
        from aiolimiter import AsyncLimiter

        lim = AsyncLimiter(limit, WINDOW)

        async def run():
            await asyncio.sleep(max(0.0, start - CLOCK.now().timestamp()))

            async def worker():
                while True:
                    async with lim:
                        t = CLOCK.now().timestamp()
                        if t >= end:
                            return
                        sends.append(t)

            await asyncio.gather(*(worker() for _ in range(4)))

        asyncio.run(run())
        return sends
    if kind.startswith("mqd"):
        th = mqd_throttler(limit, db, 0.03 if "3%" in kind else 0.0)
        acquire = lambda: th.acquire("api")  # noqa: E731
    else:
        pr = pyrate(limit, db)
        acquire = lambda: pr.try_acquire("api")  # noqa: E731
    CLOCK.sleep(start - CLOCK.now().timestamp())
    while True:
        acquire()
        t = CLOCK.now().timestamp()
        if t >= end:
            return sends
        sends.append(t)


KINDS = {
    "mqd in-memory": False,
    "mqd shared (store)": True,
    "mqd shared (store), margin 3% (default)": True,
    "aiolimiter": False,
    "pyrate-limiter in-memory": False,
    "pyrate-limiter SQLite + file lock": True,
}


def one_process(tmp: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for kind, needs_db in KINDS.items():
        db = str(tmp / f"sat-{abs(hash(kind))}.db") if needs_db else None
        if db and kind.startswith("mqd"):
            Store.open(db).close()
        start = CLOCK.now().timestamp() + 0.2
        out[kind] = judge(saturate(kind, db, start), start, LIMIT, admitted(kind))
    return out


def race(tmp: Path, kind: str, needs_db: bool, limit: int) -> tuple[list[float], float, int]:
    """PROCESSES workers saturating one budget from one start: (sends, start, store writes)."""
    tag = f"mp-{abs(hash(kind))}-{limit}"
    db = str(tmp / f"{tag}.db") if needs_db else "-"
    if needs_db and kind.startswith("mqd"):
        Store.open(db).close()
    if needs_db and kind.startswith("pyrate"):
        pyrate(limit, db)  # create the table before the race
    start = CLOCK.now().timestamp() + 1.5
    logs = [tmp / f"{tag}-{i}.log" for i in range(PROCESSES)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, db, repr(start), str(log), str(limit)]
        )
        for log in logs
    ]
    for p in procs:
        p.wait()
    sends = [float(x) for log in logs for x in log.read_text().split()]
    writes = sum(int(Path(f"{log}.writes").read_text() or 0) for log in logs)
    return sends, start, writes


def four_processes(tmp: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for kind, needs_db in KINDS.items():
        if kind != "mqd in-memory":
            sends, start, _writes = race(tmp, kind, needs_db, LIMIT)
            out[kind] = judge(sends, start, LIMIT, admitted(kind))
    return out


def four_processes_batched(tmp: Path) -> dict[str, tuple[int, float, float]]:
    out = {}
    for kind in ("mqd shared (store)", "mqd shared (store), margin 3% (default)"):
        sends, start, writes = race(tmp, kind, True, BIG_LIMIT)
        viol, util = judge(sends, start, BIG_LIMIT, admitted(kind, BIG_LIMIT))
        out[kind] = (viol, util, writes / max(1, len(sends)))
    return out


def worker(kind: str, db: str, start: float, log: str, limit: int) -> None:
    writes = [0]
    if kind.startswith("mqd") and db != "-":
        store_write = Store.write

        def counted(self):
            writes[0] += 1
            return store_write(self)

        Store.write = counted  # count the store transactions of this worker
    sends = saturate(kind, None if db == "-" else db, start, limit)
    Path(log).write_text("\n".join(repr(t) for t in sends))
    Path(f"{log}.writes").write_text(str(writes[0]))


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("1. uncontended acquire overhead (median of 5 runs)")
        ov = overhead(tmp)
        best = min(ov["aiolimiter (async with)"], ov["pyrate-limiter in-memory"])
        for name, us in ov.items():
            print(f"   {name:<42} {us:8.2f} us   ({us / best:4.2f}x best in-process competitor)")
        print(f"\n2. one process, saturating {LIMIT}/{WINDOW:g}s for {WINDOWS} windows")
        for name, (viol, util) in one_process(tmp).items():
            print(f"   {name:<40} violations {viol:4d}   utilisation {util:7.1%}")
        print(f"\n3. {PROCESSES} processes sharing {LIMIT}/{WINDOW:g}s for {WINDOWS} windows")
        for name, (viol, util) in four_processes(tmp).items():
            print(f"   {name:<40} violations {viol:4d}   utilisation {util:7.1%}")
        print(f"\n4. {PROCESSES} processes sharing {BIG_LIMIT}/{WINDOW:g}s (leased batches)")
        for name, (viol, util, per) in four_processes_batched(tmp).items():
            print(
                f"   {name:<40} violations {viol:4d}   utilisation {util:7.1%}"
                f"   {per:.2f} store transactions per request"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
    else:
        main()
