"""Four real processes share one budget through the store: no window ever over the limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

from mqd_cli.clock import RealTimeClock
from mqd_cli.store import Store
from mqd_cli.throttle import RateLimit, read_stats

LIMIT = 10
WINDOW = timedelta(milliseconds=500)
MARGIN = 0.2  # admits 8 per window; the spare slots absorb the jitter of logging a send
PER_PROCESS = 8  # 4 x 8 = 32 sends = 4 full windows

WORKER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta
    from mqd_cli.clock import RealTimeClock
    from mqd_cli.store import Store
    from mqd_cli.throttle import RateLimit, Throttler

    db, start, n, log = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    clock = RealTimeClock()
    limits = {"api": RateLimit("api", %(limit)d, timedelta(milliseconds=%(window_ms)d))}
    th = Throttler(clock, limits, store=Store.open(db), shared=True,
                   safety_margin=%(margin)r, send_guard=0.01, label="worker")
    th.flush()
    clock.sleep(start - clock.now().timestamp())  # all four start together
    with open(log, "w") as out:
        for _ in range(n):
            th.acquire("api")
            out.write(clock.now().isoformat() + "\\n")  # the moment the request would go out
    th.flush()
    """
) % {"limit": LIMIT, "window_ms": WINDOW // timedelta(milliseconds=1), "margin": MARGIN}


def test_four_processes_sharing_a_budget_never_put_more_than_the_limit_in_any_window(tmp_path):
    db = tmp_path / "mqd.db"
    Store.open(db).close()  # migrate once, before the race
    clock = RealTimeClock()
    start = clock.now().timestamp() + 1.0
    logs = [tmp_path / f"sends-{i}.log" for i in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), str(start), str(PER_PROCESS), str(log)]
        )
        for log in logs
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0
    sends = sorted(datetime.fromisoformat(line) for log in logs for line in log.read_text().split())
    assert len(sends) == 4 * PER_PROCESS
    worst = max(sum(1 for t in sends[i:] if t < s + WINDOW) for i, s in enumerate(sends))
    assert worst <= LIMIT

    limits = {"api": RateLimit("api", LIMIT, WINDOW)}
    (stats,) = read_stats(Store.open(db), limits, MARGIN, clock.now())
    assert stats.requests == 4 * PER_PROCESS
    assert len(stats.processes) == 4
    assert stats.waits > 0
