"""Saturation on an injected clock: the Throttler fills every window exactly and never more, and
dates each send at the moment it was let through, so a waiter that wakes late is counted from
when it really went out, not from the slot it had booked."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqd_cli.clock import BacktestClock
from mqd_cli.store import Store
from mqd_cli.throttle import RateLimit, Throttler

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SEC = timedelta(seconds=1)
MS = timedelta(milliseconds=1)


class LateClock(BacktestClock):
    """A BacktestClock whose sleepers wake later than they asked, by the next of ``late``
    (seconds, cycled): a loaded host, or a busy event loop."""

    def __init__(self, late: list[float]) -> None:
        super().__init__(T0)
        self._late = itertools.cycle(late or [0.0])

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + next(self._late))

    async def sleep_async(self, seconds: float) -> None:
        await super().sleep_async(seconds + next(self._late))


def budget(limit: int, window: timedelta = SEC) -> dict[str, RateLimit]:
    return {"api": RateLimit("api", limit, window)}


def build(clock, defs, store_path=None, **kw) -> Throttler:
    kw.setdefault("safety_margin", 0.0)
    if store_path is None:
        return Throttler(clock, defs, **kw)
    return Throttler(clock, defs, store=Store.open(store_path), shared=True, **kw)


@pytest.fixture(params=["memory", "shared"])
def store_path(request, tmp_path):
    return None if request.param == "memory" else tmp_path / "mqd.db"


def fullest_window(sends: list[tuple[datetime, int]], window: timedelta = SEC) -> int:
    """The largest weight in any half-open window ``[t, t + window)`` starting at a send."""
    sends = sorted(sends)
    return max(
        sum(w for t, w in sends[i:] if t < start + window) for i, (start, _w) in enumerate(sends)
    )


async def saturate(th: Throttler, clock, tasks: int, calls: int, weight=lambda i: 1):
    """``tasks`` coroutines calling ``acquire_async`` back to back, ``calls`` each in all; the
    moment (and weight) each was let through."""
    sends: list[tuple[datetime, int]] = []

    async def worker(n: int) -> None:
        for i in range(calls):
            w = weight(n * calls + i)
            await th.acquire_async("api", w)
            sends.append((clock.now(), w))

    await asyncio.gather(*(worker(n) for n in range(tasks)))
    return sends


def test_saturating_tasks_fill_every_window_with_exactly_the_limit(store_path):
    clock = BacktestClock(T0)
    th = build(clock, budget(5), store_path)
    sends = asyncio.run(saturate(th, clock, tasks=4, calls=15))
    times = sorted(t for t, _w in sends)
    assert fullest_window(sends) == 5  # never over
    # ... and full: each send's slot comes back a window later, or at most the tolerance (5 ms)
    # after that when the tasks woken together book again before the others are let through.
    assert times[:5] == [T0] * 5
    for first, fifth_later in zip(times, times[5:], strict=False):
        assert SEC <= fifth_later - first <= SEC + 5 * MS


def test_one_blocking_caller_saturates_exactly_the_limit_per_window(store_path):
    clock = BacktestClock(T0)
    th = build(clock, budget(4), store_path)
    times = []
    for _ in range(20):
        th.acquire("api")
        times.append(clock.now())
    assert times == [T0 + (i // 4) * SEC for i in range(20)]


def test_a_waiter_that_wakes_late_is_counted_from_when_it_was_let_through(store_path):
    # Each sleeper wakes 3 ms late. Its send is dated then: the next slot is a window after
    # the real send, not after the slot it had booked (which would put two sends 997 ms
    # apart, inside one window). The 5 ms guard also keeps each send counted 1 ms longer.
    clock = LateClock([0.003])
    th = build(clock, budget(1), store_path, send_guard=0.005)
    times = []
    for _ in range(3):
        th.acquire("api")
        times.append(clock.now())
    span = SEC + MS  # the window and the guard (capped at 0.1 % of it)
    assert times == [T0, T0 + span + 3 * MS, T0 + 2 * span + 6 * MS]


def test_a_waiter_later_than_its_tolerance_still_goes_at_once_when_every_window_has_room(
    store_path,
):
    # The guard lets a waiter send up to 5 ms after its slot; this one wakes 34 ms after it
    # (a wait this long is slept in two steps, the first ending 1/64 of it early, and the
    # sleeper wakes 50 ms late). Every window from now on still has room: it goes now.
    clock = LateClock([0.05])
    th = build(clock, budget(2), store_path, send_guard=0.005)
    th.acquire("api")
    th.acquire("api")
    waited = th.acquire("api")
    slot_us = 1_001_000  # a window and the guard after T0
    woke = T0 + timedelta(microseconds=slot_us - slot_us // 64) + 50 * MS
    assert woke > T0 + timedelta(microseconds=slot_us) + 5 * MS
    assert clock.now() == woke
    assert waited == pytest.approx((woke - T0).total_seconds())
    th.acquire("api")  # the second send of T0 has left too: room, at once
    assert clock.now() == woke


def test_a_late_waiter_with_a_full_queue_behind_it_books_again_and_nothing_goes_over(
    store_path,
):
    # 1 per second and eight waiters queued: a waiter waking after its tolerance may not take
    # the place the queue had already counted on; it books again, behind the others.
    clock = LateClock([0.0, 0.0, 0.0, 0.2])
    th = build(clock, budget(1), store_path, send_guard=0.005)
    sends = asyncio.run(saturate(th, clock, tasks=8, calls=2))
    assert len(sends) == 16
    assert fullest_window(sends) == 1


def test_a_shared_send_is_restamped_in_the_store_at_the_next_transaction(tmp_path):
    clock = LateClock([0.003])
    a = build(clock, budget(1), tmp_path / "m.db", send_guard=0.005)
    b = build(clock, budget(1), tmp_path / "m.db", send_guard=0.005)
    a.acquire("api")
    a.acquire("api")  # slot T0 + 1.001 s, sent 3 ms late
    sent = clock.now()
    a.flush()  # writes the real send time back
    b.acquire("api")  # another process: waits a window (and the guard) from the real send
    assert clock.now() == sent + SEC + MS + 3 * MS


@settings(max_examples=40, deadline=None)
@given(
    late=st.lists(st.integers(0, 40_000), min_size=1, max_size=12),  # microseconds
    tasks=st.integers(1, 6),
    limit=st.integers(1, 6),
    weights=st.lists(st.integers(1, 2), min_size=1, max_size=8),
    shared=st.booleans(),
)
def test_late_waking_waiters_never_put_more_than_the_limit_in_any_window(
    tmp_path_factory, late, tasks, limit, weights, shared
):
    clock = LateClock([us / 1e6 for us in late])
    path = tmp_path_factory.mktemp("sat") / "m.db" if shared else None
    th = build(clock, budget(limit), path, send_guard=0.01)
    weight = lambda i: min(limit, weights[i % len(weights)])  # noqa: E731
    sends = asyncio.run(saturate(th, clock, tasks=tasks, calls=4, weight=weight))
    assert len(sends) == 4 * tasks
    assert fullest_window(sends) <= limit
