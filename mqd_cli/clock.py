"""The one place that reads the system time.

Every other module receives a ``Clock``: ``RealTimeClock`` for live commands, ``BacktestClock``
for backtests and tests. Both keep timers in one heap and fire due timers in ``(time, name)``
order whenever time passes through ``sleep``/``advance``/``fire_due``, so a loop behaves the same
live and in a backtest.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import asyncio

# asyncio is imported inside the async methods: commands that never wait (config, status)
# should not pay for it at start-up.


class ClockError(ValueError):
    """A clock was asked to do something impossible (go backward, use a naive datetime)."""


@dataclass(order=True)
class Timer:
    """A callback due at ``when``; ``cancel()`` stops it from firing."""

    when: datetime
    name: str
    seq: int
    callback: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    async def sleep_async(self, seconds: float) -> None: ...
    def call_at(self, when: datetime, callback: Callable[[], object], name: str = "") -> Timer: ...
    def call_later(self, delay: float, callback: Callable[[], object], name: str = "") -> Timer: ...
    def fire_due(self) -> int: ...


def _require_aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ClockError(f"naive datetime {when.isoformat()}: pass an aware datetime (UTC)")
    return when.astimezone(UTC)


class _TimerHeap:
    """Timers shared by both clocks: ordered by (time, name, insertion)."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = itertools.count()

    def add(self, when: datetime, callback: Callable[[], object], name: str) -> Timer:
        timer = Timer(_require_aware(when), name, next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        return timer

    def next_due(self) -> datetime | None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].when if self._heap else None

    def pop_due(self, now: datetime) -> Timer | None:
        due = self.next_due()
        if due is None or due > now:
            return None
        return heapq.heappop(self._heap)

    def __len__(self) -> int:
        return sum(1 for t in self._heap if not t.cancelled)


class RealTimeClock:
    """Wall-clock time. ``sleep`` fires timers that fall due while sleeping."""

    def __init__(self) -> None:
        self._timers = _TimerHeap()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_at(self, when: datetime, callback: Callable[[], object], name: str = "") -> Timer:
        return self._timers.add(when, callback, name)

    def call_later(self, delay: float, callback: Callable[[], object], name: str = "") -> Timer:
        return self.call_at(self.now() + timedelta(seconds=delay), callback, name)

    def fire_due(self) -> int:
        fired = 0
        while (timer := self._timers.pop_due(self.now())) is not None:
            timer.callback()
            fired += 1
        return fired

    def sleep(self, seconds: float) -> None:
        end = self.monotonic() + max(0.0, seconds)
        while True:
            self.fire_due()
            remaining = end - self.monotonic()
            if remaining <= 0:
                return
            nxt = self._timers.next_due()
            if nxt is not None:
                remaining = min(remaining, max(0.0, (nxt - self.now()).total_seconds()))
            time.sleep(remaining)

    async def sleep_async(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(max(0.0, seconds))
        self.fire_due()


class BacktestClock:
    """Simulated time: moves only when told to (``advance``/``advance_to``) or when a caller sleeps.

    Async sleepers wait on futures. One driver task per event loop advances the clock to the
    earliest sleeper's deadline once the other ready tasks have had a chance to run (and to
    register their own sleeps), so concurrent waiters wake in (deadline, call order) without
    any real waiting, and a sleeper never stalls because an earlier one finished.
    """

    # Event-loop turns the driver yields before it moves time: lets woken tasks run their
    # synchronous work and register their next sleep first.
    SETTLE_TURNS = 8

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _require_aware(start) if start else datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
        self._origin = self._now
        self._timers = _TimerHeap()
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._origin).total_seconds()

    def call_at(self, when: datetime, callback: Callable[[], object], name: str = "") -> Timer:
        return self._timers.add(when, callback, name)

    def call_later(self, delay: float, callback: Callable[[], object], name: str = "") -> Timer:
        return self.call_at(self._now + timedelta(seconds=delay), callback, name)

    def fire_due(self) -> int:
        fired = 0
        while (timer := self._timers.pop_due(self._now)) is not None:
            timer.callback()
            fired += 1
        return fired

    def advance(self, delta: timedelta | float) -> None:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ClockError(f"cannot advance by a negative amount ({delta})")
        self.advance_to(self._now + delta)

    def advance_to(self, when: datetime) -> None:
        when = _require_aware(when)
        if when < self._now:
            raise ClockError(
                f"BacktestClock cannot go backward from {self._now.isoformat()} "
                f"to {when.isoformat()}"
            )
        # Walk through every timer and sleeper due on the way, in time order, so a timer
        # callback sees the clock at its own due time.
        while True:
            nxt = self._timers.next_due()
            sleeper = self._sleepers[0][0] if self._sleepers else None
            step = min((t for t in (nxt, sleeper) if t is not None and t <= when), default=None)
            if step is None:
                break
            self._now = max(self._now, step)
            self._wake_sleepers()
            self.fire_due()
        self._now = when
        self._wake_sleepers()
        self.fire_due()

    def _wake_sleepers(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    async def sleep_async(self, seconds: float) -> None:
        import asyncio

        deadline = self._now + timedelta(seconds=max(0.0, seconds))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        if self._driver is None or self._driver.done() or self._driver.get_loop() is not loop:
            self._driver = loop.create_task(self._drive(), name="BacktestClock driver")
        await fut

    async def _drive(self) -> None:
        import asyncio

        while True:
            for _ in range(self.SETTLE_TURNS):
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # a cancelled sleeper must not stall the others
            if not self._sleepers:
                return
            self.advance_to(max(self._now, self._sleepers[0][0]))


class AcceleratedClock(RealTimeClock):
    """Wall time sped up ``speed`` times from ``start``: the offline ``mqd run`` on the
    simulated exchange. Sleeping ``s`` simulated seconds waits ``s / speed`` real seconds;
    timers fire in simulated time. ``paused`` holds the time (start-up work does not eat
    into the run) until ``resume()``."""

    def __init__(self, speed: float, start: datetime | None = None, *, paused: bool = False):
        super().__init__()
        self._real = RealTimeClock()
        self.speed = float(speed)
        self._start = start if start is not None else self._real.now()
        self._held: float | None = 0.0 if paused else None
        self._m0 = self._real.monotonic()

    def resume(self) -> None:
        if self._held is not None:
            self._m0 = self._real.monotonic() - self._held / self.speed
            self._held = None

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic())

    def monotonic(self) -> float:
        if self._held is not None:
            return self._held
        return (self._real.monotonic() - self._m0) * self.speed

    def sleep(self, seconds: float) -> None:
        self.resume()
        end = self.monotonic() + max(0.0, seconds)
        while True:
            self.fire_due()
            remaining = end - self.monotonic()
            if remaining <= 0:
                return
            self._real.sleep(min(remaining / self.speed, 1.0))

    async def sleep_async(self, seconds: float) -> None:
        self.resume()
        await self._real.sleep_async(max(0.0, seconds) / self.speed)
        self.fire_due()


class BrokerTimeClock(RealTimeClock):
    """Another clock shifted to the broker's time (``set_offset``).

    Alpaca's clock is the wall clock; the emulator's may start anywhere and run faster. Trade
    times, lock windows and bar requests must all be in the broker's time, so a live session
    against Alpaca runs on this clock, re-synced from ``GET /v2/clock`` now and then."""

    def __init__(self, base: Clock):
        super().__init__()
        self.base = base
        self.offset = timedelta(0)
        # How fast the broker's time runs against ours: 1 for Alpaca, the speed of an
        # accelerated emulator (measured between two syncs).
        self.rate = 1.0
        self._anchor: tuple[float, datetime] | None = None  # (our monotonic, broker time)

    def set_offset(self, offset: timedelta) -> None:
        self.offset = offset
        self._anchor = None
        self.rate = 1.0

    def sync(self, broker: Any) -> None:
        """Shift to ``broker.get_clock()``'s time (one request; its errors propagate). From
        the second sync on, the broker's rate is measured too, so an accelerated emulator's
        time keeps running at its own speed between syncs (within 5 % of 1 it is taken as 1:
        request latency, not acceleration)."""
        report = broker.get_clock()
        mono = self.base.monotonic()
        if self._anchor is not None:
            elapsed = mono - self._anchor[0]
            if elapsed >= 0.5:
                rate = (report.timestamp - self._anchor[1]).total_seconds() / elapsed
                self.rate = 1.0 if abs(rate - 1.0) < 0.05 or rate <= 0 else rate
        self._anchor = (mono, report.timestamp)
        self.offset = report.timestamp - self.base.now()

    def now(self) -> datetime:
        if self._anchor is not None and self.rate != 1.0:
            mono, broker_at = self._anchor
            return broker_at + timedelta(seconds=(self.base.monotonic() - mono) * self.rate)
        return self.base.now() + self.offset

    def monotonic(self) -> float:
        return self.base.monotonic()

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds)
        self.fire_due()

    async def sleep_async(self, seconds: float) -> None:
        await self.base.sleep_async(seconds)
        self.fire_due()
