"""The Throttler: named budgets with weights, pools, FIFO waiting, statistics and (shared)
leases; server feedback and retries are in ``feedback.py``. See ``mqd_cli/throttle/__init__.py``
for the design."""

from __future__ import annotations

import atexit
import contextlib
import random
import secrets
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from mqd_cli.clock import Clock
from mqd_cli.errors import UsageError
from mqd_cli.throttle.draw import Draw
from mqd_cli.throttle.feedback import ServerFeedback
from mqd_cli.throttle.lease import Leases, shared_counter
from mqd_cli.throttle.limits import (
    PRESETS,
    US,
    RateLimit,
    UnknownLimit,
    from_us,
    resolve_limits,
    to_us,
)
from mqd_cli.throttle.stats import LimitStats, Tally, limit_stats, process_identity, read_stats
from mqd_cli.throttle.window import MemoryWindow, StoreWindow, earliest_slot, fits_now

if TYPE_CHECKING:
    from mqd_cli.store import Store

T = TypeVar("T")

FLUSH_INTERVAL_US = US  # statistics reach the store at most this long after the event
# A long sleep wakes late by a share of its length (the kernel's timer slack on poll and epoll
# timeouts: 0.1 %, 0.5 % for a niced process, so 5 ms after a 1 s asyncio sleep). A wait
# longer than this is slept in two steps: to 1/64 of it before the slot, then the short rest.
EARLY_WAKE_US = 20_000
# A woken waiter may always send this late after its slot (capped at 1 % of the window), even
# with no send guard: every real wake is a little late, and a waiter later than its tolerance
# has to book again.
MIN_TOLERANCE_US = 5_000
NEVER = 1 << 62  # a flush time for a throttler without a store


class Throttler(ServerFeedback):
    """Named budgets with weights, pools, FIFO waiting, server feedback, retries and stats.

    Times are integers of microseconds: since the epoch for a shared window (every process
    reads the same), on the clock's monotonic time for a window in memory (no datetime
    arithmetic on the hot path, and a wall-clock step cannot stretch or shrink a window).
    Counters (``last_429``, ``last_reset``) and server resets are epoch times either way.
    """

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
    ) -> None:
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
        # A waiter wakes a little after its slot (scheduling, a busy event loop): its
        # reservation may still be sent up to the guard (at least 5 ms, at most 1 % of the
        # window) after the slot, and counts as if sent that late until it is sent; then it is
        # restamped to the moment it was let through. A later waiter goes now if every window
        # still has room, else books again. A send also stays counted a little after its window
        # (the guard, at most 0.1 % of it) for the moment between being let through and leaving
        # the host.
        self.guard_us = int(send_guard * US)
        # name -> (window counted in microseconds, weight admitted per window)
        lims = self.limits.items()
        margin = safety_margin
        self._plan = {
            n: (lim.window_us + min(self.guard_us, lim.window_us // 1000), lim.budget(margin))
            for n, lim in lims
        }
        tol = max(self.guard_us, MIN_TOLERANCE_US)
        self._tol = {n: max(1, min(tol, lim.window_us // 100)) for n, lim in lims}
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self._window: MemoryWindow | StoreWindow
        counter: memoryview | None = None
        if shared and store is not None:  # ``shared`` without a store was refused above
            self._window = StoreWindow(store)
            counter = shared_counter(store)
        else:
            self._window = MemoryWindow(self._plan, self._lock, self._tol)
        self._leases = Leases(clock, counter, self._plan) if counter is not None else None
        self._monotonic = clock.monotonic
        self._tally = Tally()
        self._streak: dict[str, int] = {}  # consecutive 429s per limit
        # Keyed by the call key as callers pass it: a name or a tuple of names (``_admit``
        # looks up whatever it is given; a list is unhashable and is expanded instead).
        self._draws: dict[Hashable, Draw] = {}
        # Shared reservations sent but still dated to the end of their tolerance in the store:
        # (rid, sent at), restamped at this process's next transaction.
        self._unsent: list[tuple[int, int]] = []
        self._rid_base = secrets.randbits(40) << 22
        self._rid_seq = 0
        started, now = self._times()
        self._process = process_identity(label, started)
        # Window time at which the counters are next due in the store.
        self._flush_at = now + FLUSH_INTERVAL_US if store is not None else NEVER
        if store is not None:
            ref = weakref.ref(self)

            def flush_at_exit() -> None:
                t = ref()
                if t is not None:
                    t._flush_quietly()

            atexit.register(flush_at_exit)

    # -- public API ----------------------------------------------------------------------------

    def acquire(self, limits: str | Sequence[str], weight: int = 1) -> float:
        """Block (on the clock) until every named budget has room; return the seconds waited."""
        draw = self._admit(limits, weight)
        if draw is None:  # the common case: room now, no coroutine, no sleep
            return 0.0
        return _run(self._queue(draw, weight, self._sleep))

    async def acquire_async(self, limits: str | Sequence[str], weight: int = 1) -> float:
        """``acquire`` for coroutines: awaits ``clock.sleep_async`` instead of blocking."""
        draw = self._admit(limits, weight)
        if draw is None:
            return 0.0
        return await self._queue(draw, weight, self.clock.sleep_async)

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
        epoch, now = self._times()
        if self.store is not None:
            self.flush()
            persisted = read_stats(self.store, self.limits, self.margin, from_us(epoch))
            if self.shared:
                return persisted
        else:
            with self._lock:
                self._tally.fold(self._draws.values())
                persisted = [
                    limit_stats(lim, self.margin, now, 0, 0, 0, vars(self._tally.counter(n)), [])
                    for n, lim in self.limits.items()
                ]
        window = self._window
        assert isinstance(window, MemoryWindow)
        return [window.current(s, self.limits.get(s.name), epoch, now) for s in persisted]

    def flush(self) -> None:
        """Write the statistics counters (and what leases spent) to the store now (normally
        batched each second)."""
        if self.store is None:
            return
        from mqd_cli.store import throttle as sql

        with sql.transaction(self.store) as tx:
            epoch, now = self._times()
            self._write_back(tx)
            if self._leases is not None:
                with self._lock:
                    self._leases.settle(tx, None, now, self._new_rid)
            self._flush_into(tx, epoch, now)

    def budget(self, name: str) -> int:
        return self._lookup(name).budget(self.margin)

    # -- acquiring -----------------------------------------------------------------------------

    def _admit(self, limits: str | Sequence[str], weight: int) -> Draw | None:
        """Let the call through now (None) when its weight fits every budget it draws on and
        no waiter or hold is ahead of it; otherwise the ``Draw`` to queue it on (and for a bad
        name or weight, raise). In memory this is the whole uncontended path: one clock read,
        one row appended per lane, two counter increments, no transaction."""
        try:
            draw = self._draws.get(limits)
        except TypeError:  # a list of names: expanded below
            draw = None
        if draw is None or weight.__class__ is not int or not 0 < weight <= draw.max_weight:
            draw = self._admissible(limits, weight)
        lanes = draw.lanes
        if lanes is None:
            return self._spend_lease(draw, weight)
        now = round(self._monotonic() * US)
        with self._lock:
            for lane in lanes:
                rows = lane.rows
                if rows:
                    if rows[-1][0] > now:
                        return draw  # a waiter holds a later slot: never overtake it
                    if rows[0][0] <= now - lane.span:
                        lane.prune(now - lane.span)
                if lane.total + weight > lane.budget or lane.hold > now:
                    return draw
            row = (now, weight, 0)
            for lane in lanes:
                lane.rows.append(row)
                lane.total += weight
            draw.requests += 1
            draw.weight += weight
        if now >= self._flush_at:
            self.flush()
        return None

    def _spend_lease(self, draw: Draw, weight: int) -> Draw | None:
        """A shared budget's uncontended path: spend a slot leased a moment ago, no store."""
        leases = self._leases
        if leases is not None:
            with self._lock:
                if leases.spend(draw.names, weight):
                    draw.requests += 1
                    draw.weight += weight
                    return None
        return draw

    def _admissible(self, limits: str | Sequence[str], weight: int) -> Draw:
        draw = self._expand(limits)
        if weight.__class__ is not int or weight < 1:
            raise UsageError(
                f"weight must be a positive integer, got {weight!r}",
                "a request's weight counts how many budget slots it takes: 1 or more",
            )
        if weight > draw.max_weight:
            lim = min(draw.lims, key=lambda lim: self._plan[lim.name][1])
            raise UsageError(
                f"a weight of {weight} can never fit the {lim.name} budget of "
                f"{lim.budget(self.margin)} per {_fmt_window(lim.window)}",
                "split the request or raise the limit in [throttle.limits]",
            )
        return draw

    async def _queue(
        self, draw: Draw, weight: int, sleep: Callable[[float], Awaitable[None]]
    ) -> float:
        """Book the earliest slot, sleep until it (following it if a 429 hold moves it), and
        let the call through: its row is restamped to that moment."""
        rid, at, start, epoch = self._book(draw, weight)
        now = start
        tol = draw.tol
        try:
            while True:
                if at > now:
                    ahead = at - now
                    await sleep((ahead - ahead // 64 if ahead > EARLY_WAKE_US else ahead) / US)
                rid, at, now, epoch, tol, sent = self._claim(draw, weight, rid, at, epoch, tol)
                if sent:
                    break
        except BaseException:
            self._release(rid)
            raise
        waited = (now - start) / US
        self._record(draw, weight, waited, now)
        return waited

    def _claim(
        self, draw: Draw, weight: int, rid: int, at: int, epoch: int, tol: int
    ) -> tuple[int, int, int, int, int, bool]:
        """A waiter woke for its slot ``at`` (tolerance ``tol``): ``(rid, slot, now, epoch,
        tol, sent)``. Sent when the reservation is due and ``now`` is within its tolerance:
        its row is restamped to ``now`` (in the store at this process's next transaction;
        until then it counts as sent at the end of its tolerance). Not yet due (moved behind a
        hold, with the usual tolerance): the new slot to sleep until. Later than its
        tolerance, or gone: it is given back and booked anew, with a tolerance of at least
        twice the lateness seen, so that a host that keeps waking late still makes progress."""
        window = self._window
        if isinstance(window, MemoryWindow):
            with self._lock:
                slot = window.reserved_at(rid)
                now = self._now()
                if slot is not None:
                    if slot != at:
                        tol = draw.tol
                    if slot > now:
                        return rid, slot, now, epoch, tol, False
                    if now <= slot + tol:
                        window.restamp(rid, now, draw.names)
                        return rid, slot, now, epoch, tol, True
        else:
            leases = self._leases
            # No hold was written since the booking (holds bump the counter): the slot stands.
            counter = leases.counter() if leases is not None else 0
            unmoved = leases is not None and counter == epoch
            slot = at if unmoved else window.reserved_at(rid)
            now = self._now()
            if slot is not None:
                if slot != at:
                    tol = draw.tol
                if slot > now:
                    return rid, slot, now, counter, tol, False
                if now <= slot + tol:
                    with self._lock:
                        self._unsent.append((rid, now))
                    return rid, slot, now, epoch, tol, True
        late = now - (slot if slot is not None else at)
        span = min(self._plan[n][0] for n in draw.names)
        tol = max(draw.tol, min(span, 2 * late))
        rid, at, now, epoch = self._book(draw, weight, give_back=rid, tol=tol)
        return rid, at, now, epoch, tol, False

    async def _sleep(self, seconds: float) -> None:
        """``clock.sleep`` for the blocking entry points (their coroutines never suspend)."""
        self.clock.sleep(seconds)

    def _book(
        self, draw: Draw, weight: int, give_back: int = 0, tol: int = 0
    ) -> tuple[int, int, int, int]:
        """Book the earliest slot where ``weight`` fits every limit, after every earlier
        booking: ``(rid, slot, now, hold counter)``, all in one transaction (which first gives
        back reservation ``give_back``, if any). A booking of a shared budget also writes back
        this process's sends and leases on those limits and may lease more."""
        with self._window.transaction() as tx:
            epoch = 0
            if self.shared:
                self._write_back(tx)
            if give_back:
                tx.take(give_back)
                now = self._now()
                if fits_now(tx, draw.lims, weight, now, self._plan):  # keeps its place
                    rid = self._new_rid()
                    self._reserve(tx, draw.lims, now, weight, rid, tol)
                    return rid, now, now, self._leases.counter() if self._leases else 0
            if self._leases is not None:
                epoch = self._leases.counter()
                rid, at, now = self._lease(tx, self._leases, draw, weight, tol)
            else:
                now = self._now()
                rid = self._new_rid()
                at = self._place(tx, draw.lims, weight, rid, now, tol)
            if self.shared and now >= self._flush_at:
                self._flush_into(tx, now, now)
        return rid, at, now, epoch

    def _place(
        self, tx: Any, lims: tuple[RateLimit, ...], weight: int, rid: int, now: int, tol: int = 0
    ) -> int:
        """Insert reservation ``rid`` at the earliest slot from ``now``; return the slot."""
        at, _spare = earliest_slot(tx, lims, weight, now, self._plan)
        self._reserve(tx, lims, at, weight, rid, tol)
        return at

    def _reserve(
        self, tx: Any, lims: tuple[RateLimit, ...], at: int, weight: int, rid: int, tol: int = 0
    ) -> None:
        """Rows of reservation ``rid`` at slot ``at``: each may be sent until the end of its
        limit's tolerance (or ``tol``, if longer), and counts as sent then until restamped."""
        tols = self._tol
        for lim in lims:
            tx.insert_span(lim.name, at, at + max(tol, tols[lim.name]), weight, rid)

    def _write_back(self, tx: Any) -> None:
        """Restamp the shared reservations this process sent since its last transaction."""
        with self._lock:
            sent, self._unsent = self._unsent, []
        for rid, when in sent:
            tx.sent(rid, when)

    def _lease(
        self, tx: Any, leases: Leases, draw: Draw, weight: int, tol: int = 0
    ) -> tuple[int, int, int]:
        """``_book`` of a shared budget with ``leases`` (this process's), inside its
        transaction."""
        mono = self.clock.monotonic()  # before ``now``: spent slots are never dated early
        now = self._now()
        with self._lock:
            leases.settle(tx, draw.names, now, self._new_rid)
            at, spare = earliest_slot(tx, draw.lims, weight, now, self._plan)
            rid = self._new_rid()
            self._reserve(tx, draw.lims, at, weight, rid, tol)
            if at == now:
                leases.grant(tx, draw.lims, draw.names, weight, spare, now, mono, self._new_rid)
        return rid, at, now

    def _new_rid(self) -> int:
        self._rid_seq += 1
        return self._rid_base + self._rid_seq

    def _release(self, rid: int) -> None:
        try:
            with self._window.transaction() as tx:
                if self.shared:
                    self._write_back(tx)
                tx.take(rid)
        except Exception:  # noqa: BLE001 - releasing is best effort; a kept slot is only lost
            pass

    def _record(self, draw: Draw, weight: int, waited: float, now: int) -> None:
        with self._lock:
            draw.requests += 1
            draw.weight += weight
            if waited > 0:
                self._tally.waited(draw.names, waited)
        if not self.shared and now >= self._flush_at:
            self.flush()

    # -- helpers -------------------------------------------------------------------------------

    def _now(self) -> int:
        """Window time (see the class docstring)."""
        if self.shared:
            return to_us(self.clock.now())
        return round(self._monotonic() * US)

    def _times(self) -> tuple[int, int]:
        """``(epoch, window time)``, in microseconds."""
        epoch = to_us(self.clock.now())
        return epoch, epoch if self.shared else round(self._monotonic() * US)

    def _lookup(self, name: str) -> RateLimit:
        lim = self.limits.get(name) if isinstance(name, str) else None
        if lim is None:
            raise UnknownLimit(
                f"unknown rate limit {name!r}",
                f"known limits: {', '.join(sorted(self.limits))}; define a new one under "
                "[throttle.limits.NAME] with limit and window",
            )
        return lim

    def _expand(self, limits: str | Sequence[str]) -> Draw:
        """The named limits and, transitively, their pools; each once, in order."""
        key = limits if isinstance(limits, str) else tuple(limits)
        cached = self._draws.get(key)
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
        window = self._window
        lanes = tuple(window.lanes[n] for n in out) if isinstance(window, MemoryWindow) else None
        draw = Draw(
            tuple(out.values()),
            min(self._plan[n][1] for n in out),
            lanes,
            min(self._tol[n] for n in out),
        )
        with self._lock:  # ``fold`` iterates the draws under the lock
            return self._draws.setdefault(key, draw)

    def _flush_into(self, tx: Any, epoch: int, now: int) -> None:
        with self._lock:
            self._tally.fold(self._draws.values())
            rows, totals = self._tally.unflushed()
            self._flush_at = now + FLUSH_INTERVAL_US
        if rows:
            tx.flush_stats({**self._process, "updated": epoch}, rows, totals)

    def _flush_quietly(self) -> None:
        with contextlib.suppress(Exception):  # at exit the store may already be closed
            self.flush()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (its sleeps block on the clock)."""
    try:
        coro.send(None)
    except StopIteration as done:
        value: T = done.value
        return value
    coro.close()
    raise RuntimeError("a blocking throttle call tried to suspend")


def _fmt_window(window: timedelta) -> str:
    from mqd_cli.durations import format_duration

    return format_duration(window)


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
