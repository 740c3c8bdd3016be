"""Four real processes share one budget through the store: no window ever over the limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

import pytest

from mqd_cli.clock import RealTimeClock
from mqd_cli.store import Store
from mqd_cli.throttle import RateLimit, read_stats

WINDOW = timedelta(milliseconds=500)

WORKER = textwrap.dedent(
    """
    import random, sys
    from datetime import datetime, timedelta
    from mqd_cli.clock import RealTimeClock
    from mqd_cli.store import Store
    from mqd_cli.throttle import RateLimit, Throttler

    db, start, n, log, limit, margin, pause = sys.argv[1:8]
    clock = RealTimeClock()
    limits = {"api": RateLimit("api", int(limit), timedelta(milliseconds=%(window_ms)d))}
    store = Store.open(db)
    th = Throttler(clock, limits, store=store, shared=True,
                   safety_margin=float(margin), send_guard=0.01, label="worker")
    th.flush()
    writes = [0]
    write = store.write
    def counted():
        writes[0] += 1
        return write()
    store.write = counted
    rng = random.Random()
    clock.sleep(float(start) - clock.now().timestamp())  # all four start together
    with open(log, "w") as out:
        for _ in range(int(n)):
            th.acquire("api")
            out.write(clock.now().isoformat() + "\\n")  # the moment the request would go out
            if float(pause):  # spend leased slots at any moment of their validity
                clock.sleep(rng.random() * float(pause))
    th.flush()
    with open(log + ".writes", "w") as out:
        out.write(str(writes[0]))
    """
) % {"window_ms": WINDOW // timedelta(milliseconds=1)}


def run_four(tmp_path, limit: int, margin: float, per_process: int, pause: float):
    """Four workers saturating one budget from one start; (sorted sends, store writes)."""
    db = tmp_path / "mqd.db"
    Store.open(db).close()  # migrate once, before the race
    start = RealTimeClock().now().timestamp() + 1.0
    logs = [tmp_path / f"sends-{i}.log" for i in range(4)]
    args = [str(per_process), "", str(limit), str(margin), str(pause)]
    procs = []
    for log in logs:
        args[1] = str(log)
        argv = [sys.executable, "-c", WORKER, str(db), str(start), *args]
        procs.append(subprocess.Popen(argv))
    for p in procs:
        assert p.wait(timeout=60) == 0
    sends = sorted(datetime.fromisoformat(line) for log in logs for line in log.read_text().split())
    writes = sum(int((tmp_path / f"sends-{i}.log.writes").read_text()) for i in range(4))
    return db, sends, writes


def worst_window(sends: list[datetime]) -> int:
    return max(sum(1 for t in sends[i:] if t < s + WINDOW) for i, s in enumerate(sends))


def test_four_processes_sharing_a_budget_never_put_more_than_the_limit_in_any_window(tmp_path):
    limit, margin, per_process = 10, 0.2, 8  # admits 8 per window; 4 x 8 = 4 full windows
    db, sends, _writes = run_four(tmp_path, limit, margin, per_process, pause=0.0)
    assert len(sends) == 4 * per_process
    assert worst_window(sends) <= limit

    limits = {"api": RateLimit("api", limit, WINDOW)}
    (stats,) = read_stats(Store.open(db), limits, margin, RealTimeClock().now())
    assert stats.requests == 4 * per_process
    assert len(stats.processes) == 4
    assert stats.waits > 0


@pytest.mark.parametrize("pause", [0.0, 0.004])
def test_four_processes_spending_leased_batches_never_exceed_the_limit(tmp_path, pause):
    # Budget 256 per 500 ms: batches of up to 8 slots, each good for 5 ms (1 % of the window);
    # with pauses, slots are spent at any moment of that validity or expire unspent.
    limit, margin, per_process = 320, 0.2, 256
    _db, sends, writes = run_four(tmp_path, limit, margin, per_process, pause)
    assert len(sends) == 4 * per_process
    assert worst_window(sends) <= limit
    assert writes < 4 * per_process  # batches were leased: fewer transactions than requests
