"""Clock: BacktestClock timers, time travel rules, async sleepers; RealTimeClock basics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli.clock import BacktestClock, Clock, ClockError, RealTimeClock

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def test_both_clocks_satisfy_the_clock_protocol():
    assert isinstance(RealTimeClock(), Clock)
    assert isinstance(BacktestClock(T0), Clock)


def test_backtest_clock_starts_at_the_given_time_and_moves_only_when_told():
    clock = BacktestClock(T0)
    assert clock.now() == T0 and clock.monotonic() == 0.0
    assert clock.now() == T0
    clock.advance(timedelta(minutes=5))
    assert clock.now() == T0 + timedelta(minutes=5)
    assert clock.monotonic() == 300.0
    clock.advance(1.5)
    assert clock.now() == T0 + timedelta(minutes=5, seconds=1.5)


def test_backtest_clock_converts_aware_start_to_utc_and_refuses_naive_times():
    ny = datetime(2026, 3, 2, 9, 30, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("America/New_York")
    )
    assert BacktestClock(ny).now().tzinfo == UTC
    with pytest.raises(ClockError, match="naive"):
        BacktestClock(datetime(2026, 1, 1))
    clock = BacktestClock(T0)
    with pytest.raises(ClockError, match="naive"):
        clock.call_at(datetime(2026, 3, 2, 15), lambda: None)


def test_backtest_clock_refuses_to_go_backward():
    clock = BacktestClock(T0)
    clock.advance_to(T0 + timedelta(hours=1))
    with pytest.raises(ClockError, match="backward"):
        clock.advance_to(T0)
    with pytest.raises(ClockError, match="negative"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == T0 + timedelta(hours=1)


def test_due_timers_fire_in_time_then_name_order_not_insertion_order():
    clock = BacktestClock(T0)
    fired: list[str] = []
    for delay, name in [(30, "zeta"), (10, "beta"), (30, "alpha"), (10, "alpha"), (20, "m")]:
        clock.call_later(delay, lambda n=name, d=delay: fired.append(f"{d}:{n}"), name=name)
    clock.advance(timedelta(minutes=1))
    assert fired == ["10:alpha", "10:beta", "20:m", "30:alpha", "30:zeta"]


def test_timer_callback_sees_the_clock_at_its_own_due_time():
    clock = BacktestClock(T0)
    seen = []
    clock.call_later(10, lambda: seen.append(clock.now()), name="a")
    clock.call_later(25, lambda: seen.append(clock.now()), name="b")
    clock.advance_to(T0 + timedelta(hours=1))
    assert seen == [T0 + timedelta(seconds=10), T0 + timedelta(seconds=25)]
    assert clock.now() == T0 + timedelta(hours=1)


def test_timer_scheduled_by_a_timer_fires_in_the_same_advance_when_due():
    clock = BacktestClock(T0)
    fired = []

    def first():
        fired.append("first")
        clock.call_later(5, lambda: fired.append("second"), name="second")

    clock.call_later(5, first, name="first")
    clock.advance(20)
    assert fired == ["first", "second"]


def test_cancelled_timer_never_fires_and_future_timers_wait():
    clock = BacktestClock(T0)
    fired = []
    t = clock.call_later(5, lambda: fired.append("cancelled"), name="x")
    clock.call_later(50, lambda: fired.append("later"), name="y")
    t.cancel()
    clock.advance(10)
    assert fired == []
    clock.sleep(40)
    assert fired == ["later"]


def test_fire_due_fires_timers_already_due_without_moving_time():
    clock = BacktestClock(T0)
    fired = []
    clock.call_at(T0, lambda: fired.append(1), name="now")
    assert clock.fire_due() == 1
    assert fired == [1] and clock.now() == T0


@given(
    st.lists(st.tuples(st.integers(0, 500), st.sampled_from("abcde")), max_size=30),
    st.lists(st.integers(0, 120), min_size=1, max_size=10),
)
def test_timers_always_fire_sorted_by_time_and_name_whatever_the_steps(timers, steps):
    clock = BacktestClock(T0)
    fired: list[tuple[int, str, int]] = []
    for i, (delay, name) in enumerate(timers):
        clock.call_later(delay, lambda d=delay, n=name, i=i: fired.append((d, n, i)), name=name)
    for step in steps:
        clock.advance(step)
    clock.advance(600)
    assert fired == sorted(fired)
    assert len(fired) == len(timers)


async def test_async_sleepers_wake_in_deadline_order_at_their_deadlines():
    clock = BacktestClock(T0)
    woke: list[tuple[str, datetime]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep_async(seconds)
        woke.append((name, clock.now()))

    await asyncio.gather(sleeper("slow", 300), sleeper("fast", 60), sleeper("mid", 120))
    assert woke == [
        ("fast", T0 + timedelta(seconds=60)),
        ("mid", T0 + timedelta(seconds=120)),
        ("slow", T0 + timedelta(seconds=300)),
    ]
    assert clock.now() == T0 + timedelta(seconds=300)


async def test_later_sleeper_still_wakes_after_an_earlier_one_finishes():
    clock = BacktestClock(T0)

    async def once(seconds):
        await clock.sleep_async(seconds)
        return clock.now()

    late = asyncio.create_task(once(3600))
    early = asyncio.create_task(once(1))
    assert await asyncio.wait_for(early, 5) == T0 + timedelta(seconds=1)
    assert await asyncio.wait_for(late, 5) == T0 + timedelta(hours=1)


async def test_cancelled_sleeper_does_not_stall_the_others():
    clock = BacktestClock(T0)
    doomed = asyncio.create_task(clock.sleep_async(10))
    survivor = asyncio.create_task(clock.sleep_async(20))
    await asyncio.sleep(0)
    doomed.cancel()
    await asyncio.wait_for(survivor, 5)
    assert clock.now() == T0 + timedelta(seconds=20)


async def test_looping_sleeper_and_timers_interleave_in_time_order():
    clock = BacktestClock(T0)
    events = []
    clock.call_later(90, lambda: events.append(("timer", clock.monotonic())), name="t")

    async def loop():
        for _ in range(3):
            await clock.sleep_async(60)
            events.append(("tick", clock.monotonic()))

    await asyncio.wait_for(loop(), 5)
    assert events == [("tick", 60.0), ("timer", 90.0), ("tick", 120.0), ("tick", 180.0)]


def test_real_time_clock_gives_aware_utc_and_monotonic_time():
    clock = RealTimeClock()
    now = clock.now()
    assert now.tzinfo == UTC
    a = clock.monotonic()
    b = clock.monotonic()
    assert b >= a


def test_real_time_clock_fires_due_timers_on_sleep_and_fire_due():
    clock = RealTimeClock()
    fired = []
    clock.call_later(0, lambda: fired.append("a"), name="a")
    clock.call_at(clock.now() + timedelta(hours=1), lambda: fired.append("late"), name="z")
    clock.sleep(0)
    assert fired == ["a"]
    clock.call_later(0, lambda: fired.append("b"), name="b")
    assert clock.fire_due() == 1
    assert fired == ["a", "b"]


async def test_real_time_clock_async_sleep_returns_and_fires_due_timers():
    clock = RealTimeClock()
    fired = []
    clock.call_later(0, lambda: fired.append(1), name="x")
    await clock.sleep_async(0)
    assert fired == [1]


class _Base:
    """Our clock, moved by hand."""

    def __init__(self):
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self):
        from datetime import UTC, datetime

        return datetime.fromtimestamp(self.t, UTC)


class _Broker:
    """A broker whose clock runs ``speed`` times ours from ``start``."""

    def __init__(self, base: _Base, speed: float, start):
        self.base, self.speed, self.start, self.t0 = base, speed, start, base.t

    def get_clock(self):
        from datetime import timedelta

        from mqd_cli.model import ClockReport

        at = self.start + timedelta(seconds=(self.base.t - self.t0) * self.speed)
        return ClockReport(timestamp=at, is_open=True, next_open=at, next_close=at)


def test_the_broker_time_clock_learns_an_accelerated_brokers_rate_between_syncs():
    from datetime import UTC, datetime, timedelta

    from mqd_cli.clock import BrokerTimeClock

    base = _Base()
    start = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)
    broker = _Broker(base, 600.0, start)
    clock = BrokerTimeClock(base)
    clock.sync(broker)
    assert clock.now() == start
    base.t += 1.0
    clock.sync(broker)  # one second later: ten minutes of the broker's time
    assert clock.rate == 600.0
    base.t += 0.5
    assert clock.now() == start + timedelta(minutes=15)  # keeps running at 600x


def test_a_real_time_broker_keeps_rate_one_despite_latency():
    from datetime import UTC, datetime

    from mqd_cli.clock import BrokerTimeClock

    base = _Base()
    broker = _Broker(base, 1.03, datetime(2026, 1, 5, 14, 35, tzinfo=UTC))
    clock = BrokerTimeClock(base)
    clock.sync(broker)
    base.t += 2.0
    clock.sync(broker)
    assert clock.rate == 1.0
