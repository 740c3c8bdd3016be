"""The Throttler: named budgets with weights, pools, FIFO waiting, server feedback, retries,
statistics, and (shared) leases. See ``mqd_cli/throttle/__init__.py`` for the design."""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import secrets
import socket
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from mqd_cli.brokers.errors import BrokerUnavailable, RateLimited
from mqd_cli.clock import Clock
from mqd_cli.errors import UsageError
from mqd_cli.throttle.lease import Leases, shared_counter
from mqd_cli.throttle.limits import (
    PRESETS,
    US,
    RateHeaders,
    RateLimit,
    UnknownLimit,
    backoff_delay,
    from_us,
    parse_rate_headers,
    resolve_limits,
    to_us,
)
from mqd_cli.throttle.stats import Counters, LimitStats, limit_stats, read_stats
from mqd_cli.throttle.window import MemoryWindow, StoreWindow, earliest_slot

if TYPE_CHECKING:
    from mqd_cli.store import Store

T = TypeVar("T")

FLUSH_INTERVAL_US = US  # statistics reach the store at most this long after the event

# A call key expanded: (its limits and pools, their names, the largest weight that can fit).
Call = tuple[tuple[RateLimit, ...], tuple[str, ...], int]


class Throttler:
    """Named budgets with weights, pools, FIFO waiting, server feedback, retries and stats."""

    def __init__(
        self,
        clock: Clock,
        limits: Mapping[str, RateLimit] | None = None,
        *,
        store: Store | None = None,
        shared: bool = False,
        safety_margin: float = 0.03,
        backoff_base: float = 0.5,
        max_backoff: float = 60.0,
        max_attempts: int = 5,
        send_guard: float = 0.0,
        rng: random.Random | None = None,
        label: str | None = None,
    ):
        if shared and store is None:
            raise ValueError("a shared throttler needs a store")
        self.clock = clock
        self.limits: dict[str, RateLimit] = dict(limits if limits is not None else PRESETS)
        self.margin = safety_margin
        self.shared = shared
        self.store = store
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        # A send stays counted this long after its window: the request leaves a little after
        # its slot (scheduling, the HTTP client), and that delay varies between requests.
        self.guard_us = int(send_guard * US)
        # name -> (window counted in microseconds, weight admitted per window)
        # The guard is capped at 1 % of the window so it never costs more than 1 % of a budget.
        self._plan = {
            n: (lim.window_us + min(self.guard_us, lim.window_us // 100), lim.budget(safety_margin))
            for n, lim in self.limits.items()
        }
        self._rng = rng or random.Random()
        self._window: MemoryWindow | StoreWindow = StoreWindow(store) if shared else MemoryWindow()
        counter = shared_counter(store) if shared else None
        self._leases = Leases(clock, counter, self._plan) if counter is not None else None
        self._lock = threading.RLock()
        self._counters: dict[str, Counters] = {}
        self._flushed: dict[str, Counters] = {}
        self._streak: dict[str, int] = {}  # consecutive 429s per limit
        self._calls: dict[str | tuple[str, ...], Call] = {}
        self._rid_base = secrets.randbits(40) << 22
        self._rid_seq = 0
        started = to_us(clock.now())
        self._process = {
            "process": f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}",
            "label": label if label is not None else _process_label(),
            "pid": os.getpid(),
            "started": started,
        }
        self._last_flush = started
        if store is not None:
            ref = weakref.ref(self)
            atexit.register(lambda: (t := ref()) is not None and t._flush_quietly())

    # -- public API ----------------------------------------------------------------------------

    def acquire(self, limits: str | Sequence[str], weight: int = 1) -> float:
        """Block (on the clock) until every named budget has room; return the seconds waited."""
        call = self._admissible(limits, weight)
        booking = self._begin(call, weight)
        if booking is None:  # the common case: room now, no coroutine, no sleep
            return 0.0
        return _run(self._wait(call, weight, booking, self._sleep))

    async def acquire_async(self, limits: str | Sequence[str], weight: int = 1) -> float:
        """``acquire`` for coroutines: awaits ``clock.sleep_async`` instead of blocking."""
        call = self._admissible(limits, weight)
        booking = self._begin(call, weight)
        if booking is None:
            return 0.0
        return await self._wait(call, weight, booking, self.clock.sleep_async)

    def observe(self, limit: str, status: int, headers: Mapping[str, str]) -> None:
        """Feed a response back: rate headers tighten the window; a 429 holds the budget.

        Inside ``call``, let the adapter raise ``RateLimited`` instead of observing the 429
        (``call`` records it); observe the headers of the other responses.
        """
        lim = self._lookup(limit)
        now = self._now()
        h = parse_rate_headers(headers, now)
        if h.reset_at is not None:
            with self._lock:
                c = self._counter(lim.name)
                c.last_reset = max(c.last_reset or 0, h.reset_at)
        if status == 429:
            self._rate_limited((lim,), h.reset_at, h.retry_after)
            return
        if status < 400:
            self._streak[lim.name] = 0
        if h.remaining is not None:
            self._tighten(lim, h, now)

    def call(
        self, limits: str | Sequence[str], fn: Callable[[], T], *, idempotent: bool, weight: int = 1
    ) -> T:
        """Acquire, run ``fn``, and retry as the failure allows (see the package docstring)."""

        async def attempt() -> T:
            return fn()

        return _run(self._call(limits, attempt, idempotent, weight, self._sleep))

    async def call_async(
        self,
        limits: str | Sequence[str],
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        weight: int = 1,
    ) -> T:
        return await self._call(limits, fn, idempotent, weight, self.clock.sleep_async)

    def stats(self) -> list[LimitStats]:
        """Per limit: the window now and the counters of every process (this one included)."""
        now = self._now()
        if self.store is not None:
            self.flush()
            persisted = read_stats(self.store, self.limits, self.margin, from_us(now))
            if self.shared:
                return persisted
        else:
            persisted = [
                limit_stats(lim, self.margin, now, 0, 0, 0, vars(self._counter(name)), [])
                for name, lim in self.limits.items()
            ]
        return [self._with_memory_window(s, now) for s in persisted]

    def flush(self) -> None:
        """Write the statistics counters (and what leases spent) to the store now (normally
        batched each second)."""
        if self.store is None:
            return
        from mqd_cli.store import throttle as sql

        with sql.transaction(self.store) as tx:
            now = self._now()
            if self._leases is not None:
                with self._lock:
                    self._leases.settle(tx, None, now, self._new_rid)
            self._flush_into(tx, now)

    def budget(self, name: str) -> int:
        return self._lookup(name).budget(self.margin)

    # -- acquiring -----------------------------------------------------------------------------

    def _admissible(self, limits: str | Sequence[str], weight: int) -> Call:
        call = self._expand(limits)
        if weight.__class__ is not int or weight < 1:
            raise UsageError(f"weight must be a positive integer, got {weight!r}")
        if weight > call[2]:
            lim = min(call[0], key=lambda lim: self._plan[lim.name][1])
            raise UsageError(
                f"a weight of {weight} can never fit the {lim.name} budget of "
                f"{lim.budget(self.margin)} per {_fmt_window(lim.window)}",
                "split the request or raise the limit in [throttle.limits]",
            )
        return call

    def _begin(self, call: Call, weight: int) -> tuple[int, int, int] | None:
        """Take a slot now (None) or book the earliest later one: ``(rid, slot, now)``."""
        lims, names, _max = call
        leases = self._leases
        if leases is not None:
            with self._lock:
                if leases.spend(names, weight):  # no store: a slot leased a moment ago
                    self._count(lims, weight, 0.0)
                    return None
        rid, at, now = self._reserve(call, weight, None)
        if at <= now:
            self._record(lims, weight, 0.0)
            return None
        return rid, at, now

    async def _wait(
        self,
        call: Call,
        weight: int,
        booking: tuple[int, int, int],
        sleep: Callable[[float], Awaitable[None]],
    ) -> float:
        """Sleep until the reserved slot, following it if a 429 hold moved it."""
        lims = call[0]
        rid, at, start = booking
        try:
            while True:
                now = self._now()
                if at <= now:
                    break
                await sleep((at - now) / US)
                moved = self._window.reserved_at(rid)
                if moved is None:  # pruned while this process was suspended: take a new slot
                    rid, at, _now = self._reserve(call, weight, None)
                else:
                    at = moved
        except BaseException:
            self._release(rid)
            raise
        waited = (self._now() - start) / US
        self._record(lims, weight, waited)
        return waited

    async def _sleep(self, seconds: float) -> None:
        """``clock.sleep`` for the blocking entry points (their coroutines never suspend)."""
        self.clock.sleep(seconds)

    def _reserve(
        self, call: Call, weight: int, rid: int | None, tx: Any = None
    ) -> tuple[int, int, int]:
        """Book the earliest slot where ``weight`` fits every limit, after every earlier
        booking: ``(rid, slot, now)``, all in one transaction. A fresh booking of a shared
        budget also hands back this process's leases on those limits and may lease more."""
        if tx is None:
            with self._window.transaction() as tx:
                return self._reserve(call, weight, rid, tx)
        lims, names, _max = call
        if rid is not None or self._leases is None:
            now = self._now()
            at, _spare = earliest_slot(tx, lims, weight, now, self._plan)
            rid = rid if rid is not None else self._new_rid()
            tx.insert([(name, at, weight, rid, 0) for name in names])
        else:
            rid, at, now = self._lease(tx, call, weight)
        if self.shared and now - self._last_flush >= FLUSH_INTERVAL_US:
            self._flush_into(tx, now)
        return rid, at, now

    def _lease(self, tx: Any, call: Call, weight: int) -> tuple[int, int, int]:
        """``_reserve`` of a shared budget with leases, inside its transaction."""
        lims, names, _max = call
        mono = self.clock.monotonic()  # before ``now``: spent slots are never dated early
        now = self._now()
        with self._lock:
            self._leases.settle(tx, names, now, self._new_rid)
            at, spare = earliest_slot(tx, lims, weight, now, self._plan)
            rid = self._new_rid()
            tx.insert([(name, at, weight, rid, 0) for name in names])
            if at == now:
                self._leases.grant(tx, lims, names, weight, spare, now, mono, self._new_rid)
        return rid, at, now

    def _new_rid(self) -> int:
        self._rid_seq += 1
        return self._rid_base + self._rid_seq

    def _release(self, rid: int) -> None:
        try:
            with self._window.transaction() as tx:
                tx.take(rid)
        except Exception:  # noqa: BLE001 - releasing is best effort; a kept slot is only lost
            pass

    def _record(self, lims: Sequence[RateLimit], weight: int, waited: float) -> None:
        with self._lock:
            self._count(lims, weight, waited)
        flush_due = not self.shared and self.store is not None
        if flush_due and self._now() - self._last_flush >= FLUSH_INTERVAL_US:
            self.flush()

    def _count(self, lims: Sequence[RateLimit], weight: int, waited: float) -> None:
        for lim in lims:
            c = self._counters.get(lim.name) or self._counter(lim.name)
            c.requests += 1
            c.weight += weight
            if waited > 0:
                c.waits += 1
                c.wait_total += waited
                c.wait_max = max(c.wait_max, waited)

    # -- feedback and retries ------------------------------------------------------------------

    async def _call(
        self,
        limits: str | Sequence[str],
        attempt: Callable[[], Awaitable[T]],
        idempotent: bool,
        weight: int,
        sleep: Callable[[float], Awaitable[None]],
    ) -> T:
        call = self._admissible(limits, weight)
        failures = 0
        while True:
            booking = self._begin(call, weight)
            if booking is not None:
                await self._wait(call, weight, booking, sleep)
            try:
                result = await attempt()
            except (RateLimited, BrokerUnavailable) as exc:
                failures += 1
                delay = self._after_failure(call[0], exc, idempotent, failures)
                if delay:
                    await sleep(delay)
                continue
            self._succeeded(call[0])
            return result

    def _after_failure(
        self, lims: Sequence[RateLimit], exc: Exception, idempotent: bool, failures: int
    ) -> float:
        """Seconds to sleep before the next attempt; re-raise when no retry is allowed."""
        if isinstance(exc, RateLimited):
            reset = to_us(exc.reset_at) if exc.reset_at is not None else None
            self._rate_limited(lims, reset, exc.retry_after)
            if failures >= self.max_attempts:
                raise exc
            return 0.0  # refused, not processed: the next acquire waits out the hold
        if not idempotent or failures >= self.max_attempts:
            raise exc  # an order submit's outcome is unknown: look it up, never resend blindly
        with self._lock:
            for lim in lims:
                self._counter(lim.name).backoffs += 1
        return backoff_delay(failures, self.backoff_base, self.max_backoff, self._rng)

    def _succeeded(self, lims: Sequence[RateLimit]) -> None:
        for lim in lims:
            if self._streak.get(lim.name):
                self._streak[lim.name] = 0

    def _rate_limited(
        self, lims: Sequence[RateLimit], reset_at: int | None, retry_after: float | None
    ) -> None:
        """A 429: count it and hold every caller of these budgets, in every process, until the
        reset."""
        now = self._now()
        streak = max(self._streak.get(lim.name, 0) for lim in lims) + 1
        until = now
        if retry_after is not None:
            until = max(until, now + int(retry_after * US))
        if reset_at is not None and reset_at > now:
            until = max(until, reset_at)
        backed_off = streak > 1 or until == now
        if backed_off:  # repeated 429s (or no hint at all): back off exponentially
            delay = backoff_delay(streak, self.backoff_base, self.max_backoff, self._rng)
            until = max(until, now + int(delay * US))
        with self._lock:
            for lim in lims:
                self._streak[lim.name] = streak
                c = self._counter(lim.name)
                c.rate_limited += 1
                c.last_429 = now
                c.backoffs += backed_off
                if reset_at is not None:
                    c.last_reset = max(c.last_reset or 0, reset_at)
        with self._window.transaction() as tx:
            if self._leases is not None:
                with self._lock:
                    self._leases.settle(tx, [lim.name for lim in lims], now, self._new_rid)
                    self._leases.bump()  # every process's leases go back to the store
            for lim in lims:
                # A bogus far-future reset must not freeze the budget for good.
                cap = now + max(lim.window_us, int(self.max_backoff * US))
                self._hold(tx, lim, min(until, cap), now)
            if self.shared:
                self._flush_into(tx, now)
        if not self.shared:
            self.flush()

    def _hold(self, tx: Any, lim: RateLimit, until: int, now: int) -> None:
        """Hold ``lim`` until ``until`` and move its queued reservations behind the hold, in
        their order (their owners notice when they wake)."""
        tx.set_hold(lim.name, until, now)
        queued = [(rid, tx.take(rid)) for rid in tx.future(lim.name, now)]
        for rid, rows in queued:
            if not rows:
                continue
            moved = tuple(self._lookup(name) for name, _w in rows)
            self._reserve((moved, tuple(name for name, _w in rows), 0), rows[0][1], rid, tx)

    def _tighten(self, lim: RateLimit, h: RateHeaders, now: int) -> None:
        """The server counts usage we did not send (another client on the account): add it to
        the window as phantom usage that expires with the server's reset."""
        assert h.remaining is not None
        since = now - lim.window_us
        budget = lim.budget(self.margin)
        allowed = max(0, h.remaining - (lim.limit - budget))
        total, _last, _hold = self._window.peek(lim.name, since)
        if budget - total <= allowed:
            return
        with self._window.transaction() as tx:
            total, _last, _hold = tx.window(lim.name, since)
            phantom = budget - total - allowed
            if phantom <= 0:
                return
            at = now
            if h.reset_at is not None and h.reset_at > now:
                at = max(since + 1, min(now, h.reset_at - lim.window_us))
            tx.insert([(lim.name, at, phantom, 0, 1)])
            if self._leases is not None:
                self._leases.bump()

    # -- helpers -------------------------------------------------------------------------------

    def _now(self) -> int:
        return to_us(self.clock.now())

    def _lookup(self, name: str) -> RateLimit:
        lim = self.limits.get(name) if isinstance(name, str) else None
        if lim is None:
            raise UnknownLimit(
                f"unknown rate limit {name!r}",
                f"known limits: {', '.join(sorted(self.limits))}; define a new one under "
                "[throttle.limits.NAME] with limit and window",
            )
        return lim

    def _expand(self, limits: str | Sequence[str]) -> Call:
        """The named limits and, transitively, their pools; each once, in order."""
        key = limits if isinstance(limits, str) else tuple(limits)
        cached = self._calls.get(key)
        if cached is not None:
            return cached
        todo = [key] if isinstance(key, str) else list(key)
        if not todo:
            raise UnknownLimit("no rate limit named: every request must spend a budget")
        out: dict[str, RateLimit] = {}
        while todo:
            lim = self._lookup(todo.pop(0))
            if lim.name not in out:
                out[lim.name] = lim
                todo.extend(lim.pools)
        lims = tuple(out.values())
        call = (lims, tuple(out), min(self._plan[name][1] for name in out))
        self._calls[key] = call
        return call

    def _counter(self, name: str) -> Counters:
        c = self._counters.get(name)
        if c is None:
            c = self._counters[name] = Counters()
        return c

    def _with_memory_window(self, s: LimitStats, now: int) -> LimitStats:
        """``s`` with the window of this process's memory (a per-process throttler)."""
        if s.name not in self.limits:
            return s
        used, queued = self._window.usage(s.name, now - self.limits[s.name].window_us, now)
        hold = self._window.hold_of(s.name)
        held = hold > now
        return replace(
            s,
            used=used,
            queued=queued,
            remaining=0 if held else max(0, s.budget - used - queued),
            hold_until=from_us(hold) if held else None,
        )

    def _flush_into(self, tx: Any, now: int) -> None:
        with self._lock:
            rows, totals = [], []
            for name, c in self._counters.items():
                old = self._flushed.get(name, Counters())
                if c == old:
                    continue
                rows.append({"limit_name": name, **vars(c)})
                totals.append({"limit_name": name, **c.minus(old)})
                self._flushed[name] = replace(c)
            self._last_flush = now
        if rows:
            tx.flush_stats({**self._process, "updated": now}, rows, totals)

    def _flush_quietly(self) -> None:
        with contextlib.suppress(Exception):  # at exit the store may already be closed
            self.flush()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (its sleeps block on the clock)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a blocking throttle call tried to suspend")


def _fmt_window(window) -> str:
    from mqd_cli.config import format_duration

    return format_duration(window)


def _process_label() -> str:
    args = [os.path.basename(sys.argv[0] or "python")] + sys.argv[1:3]
    return " ".join(a for a in args if not a.startswith("-"))[:60]


def build(services: Any) -> Throttler:
    """The throttler of ``services``: limits and policy from ``[throttle]``, store, clock."""
    ts = services.settings.throttle
    return Throttler(
        services.clock,
        resolve_limits(ts),
        store=services.store,
        shared=ts.shared,
        safety_margin=ts.safety_margin,
        backoff_base=ts.backoff_base.total_seconds(),
        max_backoff=ts.max_backoff.total_seconds(),
        max_attempts=ts.max_attempts,
        send_guard=ts.send_guard.total_seconds(),
    )
