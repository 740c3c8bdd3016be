"""The Throttler: every outbound request to a broker or data API spends a named budget first.

Accounting is an exact sliding window kept as a list of send times per limit. An acquire
*reserves* the earliest slot at which its weight fits every budget it draws on (its limits and
their pools), after every earlier reservation, in one atomic step; the caller then sleeps on the
injected Clock until that slot. So waiters are served first come, first served, nobody polls,
and no half-open window ``[t, t + window)`` ever holds more than ``limit * (1 - margin)``
weight, while a saturating workload sends at the exact moment a slot frees.

With ``[throttle] shared = true`` the window lives in the store (``store/throttle.py``): the
reservation is one short ``BEGIN IMMEDIATE`` transaction, so every mqd process on the host
stays under the limit together. Otherwise it lives in memory.

Server feedback: ``observe`` reads ``X-Ratelimit-Remaining``/``-Reset`` (usage the server
counts that we did not send becomes "phantom" usage in the window) and a 429 holds every caller
of that budget until the reset (or ``Retry-After``); queued reservations move behind the hold
in their order. ``call`` wraps one request: a 429 is held out and retried (the server refused
it, so even an order submit is safe to resend); a network error, timeout or 5xx is retried with
exponential backoff and jitter only for idempotent requests. An order submit is re-raised at
once: its outcome is unknown and the caller must look the order up by ``client_order_id``.
"""

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
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from mqd_cli.brokers.errors import BrokerUnavailable, RateLimited
from mqd_cli.clock import Clock
from mqd_cli.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from mqd_cli.config import ThrottleSettings
    from mqd_cli.store import Store

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000
FLUSH_INTERVAL_US = US  # statistics reach the store at most this long after the event


def to_us(when: datetime) -> int:
    """Microseconds since the epoch: exact integer arithmetic for window boundaries."""
    d = when - EPOCH
    return (d.days * 86_400 + d.seconds) * US + d.microseconds


def from_us(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + timedelta(microseconds=us)


class UnknownLimit(UsageError):
    """A request named a budget that does not exist: an error, never an unthrottled call."""


# -- limits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """One named budget: ``limit`` weight units per sliding ``window``.

    ``pools`` are other limits every call of this one also draws on (finnhub's 60/min is
    pooled with its 30/s burst limit).
    """

    name: str
    limit: int
    window: timedelta
    pools: tuple[str, ...] = ()

    @property
    def window_us(self) -> int:
        return self.window // timedelta(microseconds=1)

    def budget(self, margin: float) -> int:
        """Weight actually admitted per window: the limit less the safety margin (at least 1)."""
        return max(1, int(self.limit * (1.0 - margin) + 1e-9))


PRESETS: dict[str, RateLimit] = {
    r.name: r
    for r in (
        RateLimit("alpaca_trading", 200, timedelta(minutes=1)),
        RateLimit("alpaca_data", 200, timedelta(minutes=1)),
        RateLimit("polygon", 5, timedelta(minutes=1)),
        RateLimit("finnhub", 60, timedelta(minutes=1), ("finnhub_burst",)),
        RateLimit("finnhub_burst", 30, timedelta(seconds=1)),
        RateLimit("discord", 5, timedelta(seconds=2), ("discord_global",)),
        RateLimit("discord_global", 50, timedelta(seconds=1)),
    )
}


def resolve_limits(settings: ThrottleSettings) -> dict[str, RateLimit]:
    """The presets with ``[throttle.limits.NAME]`` applied; ConfigError on an incomplete one."""
    limits = dict(PRESETS)
    problems = []
    for name, over in settings.limits.items():
        base = limits.get(name)
        if base is None and (over.limit <= 0 or over.window <= timedelta(0)):
            problems.append(
                f"throttle.limits.{name}: a new limit needs both limit and window "
                f"(presets: {', '.join(PRESETS)})"
            )
            continue
        base = base or RateLimit(name, over.limit, over.window)
        limits[name] = replace(
            base,
            limit=over.limit or base.limit,
            window=over.window if over.window > timedelta(0) else base.window,
            pools=tuple(dict.fromkeys((*base.pools, *over.pools))),
        )
    for lim in limits.values():
        for pool in lim.pools:
            if pool not in limits:
                problems.append(f"throttle.limits.{lim.name}.pools: unknown limit {pool!r}")
            elif pool == lim.name:
                problems.append(f"throttle.limits.{lim.name}.pools: a limit cannot pool itself")
    if problems:
        raise ConfigError(problems, "see the [throttle] section of config.example.toml")
    return limits


# -- backoff and headers ------------------------------------------------------------------------


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry ``attempt`` (1, 2, ...): ``d = min(cap, base * 2**(attempt-1))``,
    jittered uniformly in ``[d/2, d]`` so retrying processes spread out but still back off."""
    d = min(cap, base * 2.0 ** max(0, attempt - 1))
    return d / 2 + rng.random() * d / 2


@dataclass(frozen=True)
class RateHeaders:
    limit: int | None = None
    remaining: int | None = None
    reset_at: int | None = None  # epoch microseconds
    retry_after: float | None = None  # seconds


def parse_rate_headers(headers: Mapping[str, str], now_us: int) -> RateHeaders:
    """Read ``X-Ratelimit-Limit/-Remaining/-Reset`` and ``Retry-After``; malformed values are
    ignored. A reset above 1e9 is an epoch time in seconds (Alpaca), below a delay in seconds."""
    low = {str(k).lower(): str(v).strip() for k, v in headers.items()}

    def integer(key: str) -> int | None:
        try:
            value = int(low[key])
        except (KeyError, ValueError):
            return None
        return value if value >= 0 else None

    def number(key: str) -> float | None:
        try:
            value = float(low[key])
        except (KeyError, ValueError):
            return None
        return value if value >= 0 and value == value and value != float("inf") else None

    reset = number("x-ratelimit-reset")
    reset_at = None
    if reset is not None:
        reset_at = int(reset * US) if reset >= 1e9 else now_us + int(reset * US)
    retry_after = number("retry-after")
    if retry_after is None and "retry-after" in low:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(low["retry-after"])
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            retry_after = max(0.0, (to_us(when) - now_us) / US)
    return RateHeaders(
        integer("x-ratelimit-limit"), integer("x-ratelimit-remaining"), reset_at, retry_after
    )


# -- statistics ---------------------------------------------------------------------------------


@dataclass
class Counters:
    requests: int = 0
    weight: int = 0
    waits: int = 0
    wait_total: float = 0.0
    wait_max: float = 0.0
    rate_limited: int = 0
    backoffs: int = 0
    last_429: int | None = None
    last_reset: int | None = None

    def minus(self, old: Counters) -> dict:
        return {
            "requests": self.requests - old.requests,
            "weight": self.weight - old.weight,
            "waits": self.waits - old.waits,
            "wait_total": self.wait_total - old.wait_total,
            "wait_max": self.wait_max,
            "rate_limited": self.rate_limited - old.rate_limited,
            "backoffs": self.backoffs - old.backoffs,
            "last_429": self.last_429,
            "last_reset": self.last_reset,
        }


@dataclass(frozen=True)
class ProcessStats:
    """One process's counters for one limit."""

    process: str
    label: str
    pid: int
    requests: int
    weight: int
    waits: int
    wait_total: float
    wait_max: float
    rate_limited: int
    backoffs: int
    last_429: datetime | None
    updated: datetime | None


@dataclass(frozen=True)
class LimitStats:
    """One budget: its definition, the window right now, and counters over all processes."""

    name: str
    limit: int
    window: timedelta
    budget: int  # limit less the safety margin
    pools: tuple[str, ...]
    used: int  # weight sent in the last window (plus usage the server reported)
    queued: int  # weight reserved by waiters, not sent yet
    remaining: int  # weight a new caller could send now
    requests: int
    weight: int
    waits: int
    wait_total: float  # seconds
    wait_max: float  # seconds
    rate_limited: int  # 429s received
    backoffs: int
    last_429: datetime | None
    last_reset: datetime | None  # the latest reset time the server announced
    hold_until: datetime | None  # a 429 holds every caller until then
    processes: list[ProcessStats] = field(default_factory=list)

    @property
    def wait_mean(self) -> float:
        return self.wait_total / self.waits if self.waits else 0.0


def _limit_stats(
    lim: RateLimit,
    margin: float,
    now: int,
    used: int,
    queued: int,
    hold: int,
    total: Mapping[str, Any],
    processes: list[ProcessStats],
) -> LimitStats:
    budget = lim.budget(margin)
    held = hold > now
    return LimitStats(
        name=lim.name,
        limit=lim.limit,
        window=lim.window,
        budget=budget,
        pools=lim.pools,
        used=used,
        queued=queued,
        remaining=0 if held else max(0, budget - used - queued),
        requests=total.get("requests", 0),
        weight=total.get("weight", 0),
        waits=total.get("waits", 0),
        wait_total=total.get("wait_total", 0.0),
        wait_max=total.get("wait_max", 0.0),
        rate_limited=total.get("rate_limited", 0),
        backoffs=total.get("backoffs", 0),
        last_429=from_us(total.get("last_429")),
        last_reset=from_us(total.get("last_reset")),
        hold_until=from_us(hold) if held else None,
        processes=processes,
    )


def read_stats(
    store: Store, limits: Mapping[str, RateLimit], margin: float, now: datetime
) -> list[LimitStats]:
    """Every budget's statistics as persisted in the store (reads only; any process)."""
    from mqd_cli.store import throttle as sql

    now_us = to_us(now)
    rows = sql.stats_rows(store)
    holds = sql.holds(store)
    names = list(limits) + sorted(set(sql.known_limits(store)) - set(limits))
    out = []
    for name in names:
        lim = limits.get(name) or RateLimit(name, 0, timedelta(0))
        used, queued = sql.usage(store, name, now_us - lim.window_us, now_us)
        mine = [r for r in rows if r["limit_name"] == name]
        total = next((r for r in mine if r["process"] == "*"), {})
        procs = [
            ProcessStats(
                r["process"],
                r["label"],
                r["pid"],
                r["requests"],
                r["weight"],
                r["waits"],
                r["wait_total"],
                r["wait_max"],
                r["rate_limited"],
                r["backoffs"],
                from_us(r["last_429"]),
                from_us(r["updated"]),
            )
            for r in mine
            if r["process"] != "*"
        ]
        out.append(
            _limit_stats(lim, margin, now_us, used, queued, holds.get(name, 0), total, procs)
        )
    return out


# -- the window, in memory or in the store ------------------------------------------------------


class MemoryWindow:
    """The per-process window: same operations as ``store.throttle.WindowTx``."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rows: dict[str, deque[tuple[int, int, int, int]]] = {}  # (at, weight, rid, phantom)
        self._totals: dict[str, int] = {}
        self._holds: dict[str, int] = {}
        self._rid_at: dict[int, int] = {}

    @contextmanager
    def transaction(self) -> Iterator[MemoryWindow]:
        with self._lock:
            yield self

    def window(self, name: str, since: int) -> tuple[int, int | None, int]:
        """Drop rows at or before ``since``; (weight left, newest time, hold_until)."""
        self._prune(name, since)
        rows = self._rows.get(name)
        if not rows:
            return 0, None, self._holds.get(name, 0)
        return self._totals[name], rows[-1][0], self._holds.get(name, 0)

    def oldest_first(self, name: str, since: int) -> Iterator[tuple[int, int]]:
        for at, weight, _rid, _ph in self._rows.get(name, ()):
            if at > since:
                yield at, weight

    def insert(self, rows: Sequence[tuple[str, int, int, int, int]]) -> None:
        for name, at, weight, rid, phantom in rows:
            lst = self._rows.get(name)
            if lst is None:
                lst = self._rows[name] = deque()
            row = (at, weight, rid, phantom)
            if not lst or lst[-1][0] <= at:
                lst.append(row)
            else:  # a phantom dated before queued reservations
                i = len(lst)
                while i and lst[i - 1][0] > at:
                    i -= 1
                lst.insert(i, row)
            self._totals[name] = self._totals.get(name, 0) + weight
            if not phantom:
                self._rid_at[rid] = at

    def _prune(self, name: str, before: int) -> None:
        lst = self._rows.get(name)
        if not lst or lst[0][0] > before:
            return
        dropped = 0
        while lst and lst[0][0] <= before:
            _at, weight, rid, phantom = lst.popleft()
            dropped += weight
            if not phantom:
                self._rid_at.pop(rid, None)
        self._totals[name] -= dropped

    def future(self, name: str, after: int) -> list[int]:
        return [rid for at, _w, rid, ph in self._rows.get(name, ()) if at > after and not ph]

    def take(self, rid: int) -> list[tuple[str, int]]:
        out = []
        for name, lst in self._rows.items():
            for i, (_at, weight, r, ph) in enumerate(lst):
                if r == rid and not ph:
                    del lst[i]
                    self._totals[name] -= weight
                    out.append((name, weight))
                    break
        self._rid_at.pop(rid, None)
        return out

    def set_hold(self, name: str, until: int, now: int) -> None:
        self._holds[name] = max(self._holds.get(name, 0), until)

    def reserved_at(self, rid: int) -> int | None:
        return self._rid_at.get(rid)

    def peek(self, name: str, since: int) -> tuple[int, int | None, int]:
        with self._lock:
            return self.window(name, since)

    def usage(self, name: str, since: int, now: int) -> tuple[int, int]:
        with self._lock:
            rows = [r for r in self._rows.get(name, ()) if r[0] > since]
            used = sum(r[1] for r in rows if r[0] <= now)
            return used, sum(r[1] for r in rows) - used

    def hold_of(self, name: str) -> int:
        return self._holds.get(name, 0)


class StoreWindow:
    """The shared window: each operation group is one transaction of the store."""

    def __init__(self, store: Store):
        from mqd_cli.store import throttle as sql

        self._sql = sql
        self.store = store

    def transaction(self):
        return self._sql.transaction(self.store)

    def reserved_at(self, rid: int) -> int | None:
        return self._sql.reserved_at(self.store, rid)

    def peek(self, name: str, since: int) -> tuple[int, int | None, int]:
        return self._sql.peek(self.store, name, since)

    def usage(self, name: str, since: int, now: int) -> tuple[int, int]:
        return self._sql.usage(self.store, name, since, now)

    def hold_of(self, name: str) -> int:
        return self._sql.holds(self.store).get(name, 0)


# -- the throttler ------------------------------------------------------------------------------


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
        self._lock = threading.RLock()
        self._counters: dict[str, Counters] = {}
        self._flushed: dict[str, Counters] = {}
        self._streak: dict[str, int] = {}  # consecutive 429s per limit
        self._expand_cache: dict[tuple[str, ...], tuple[RateLimit, ...]] = {}
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
        lims = self._admissible(limits, weight)
        rid, at, now = self._reserve(lims, weight, None)
        if at <= now:  # the common case: room now, no generator, no sleep
            self._record(lims, weight, 0.0)
            return 0.0
        gen = self._wait(lims, weight, rid, at, now)
        try:
            delay = next(gen)
            while True:
                try:
                    self.clock.sleep(delay)
                except BaseException as exc:
                    delay = gen.throw(exc)
                else:
                    delay = gen.send(None)
        except StopIteration as stop:
            return stop.value

    async def acquire_async(self, limits: str | Sequence[str], weight: int = 1) -> float:
        """``acquire`` for coroutines: awaits ``clock.sleep_async`` instead of blocking."""
        lims = self._admissible(limits, weight)
        rid, at, now = self._reserve(lims, weight, None)
        if at <= now:
            self._record(lims, weight, 0.0)
            return 0.0
        gen = self._wait(lims, weight, rid, at, now)
        try:
            delay = next(gen)
            while True:
                try:
                    await self.clock.sleep_async(delay)
                except BaseException as exc:
                    delay = gen.throw(exc)
                else:
                    delay = gen.send(None)
        except StopIteration as stop:
            return stop.value

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
        """Acquire, run ``fn``, and retry as the failure allows (see the module docstring)."""
        lims = self._expand(limits)
        failures = 0
        while True:
            self.acquire(limits, weight)
            try:
                result = fn()
            except (RateLimited, BrokerUnavailable) as exc:
                failures += 1
                delay = self._after_failure(lims, exc, idempotent, failures)
                if delay:
                    self.clock.sleep(delay)
                continue
            self._succeeded(lims)
            return result

    async def call_async(
        self,
        limits: str | Sequence[str],
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        weight: int = 1,
    ) -> T:
        lims = self._expand(limits)
        failures = 0
        while True:
            await self.acquire_async(limits, weight)
            try:
                result = await fn()
            except (RateLimited, BrokerUnavailable) as exc:
                failures += 1
                delay = self._after_failure(lims, exc, idempotent, failures)
                if delay:
                    await self.clock.sleep_async(delay)
                continue
            self._succeeded(lims)
            return result

    def stats(self) -> list[LimitStats]:
        """Per limit: the window now and the counters of every process (this one included)."""
        now = self._now()
        if self.store is not None:
            self.flush()
            if self.shared:
                return read_stats(self.store, self.limits, self.margin, from_us(now))
            persisted = {
                s.name: s for s in read_stats(self.store, self.limits, self.margin, from_us(now))
            }
            out = []
            for name, s in persisted.items():
                lim = self.limits.get(name)
                if lim is None:
                    out.append(s)
                    continue
                used, queued = self._window.usage(name, now - lim.window_us, now)
                hold = self._window.hold_of(name)
                held = hold > now
                out.append(
                    replace(
                        s,
                        used=used,
                        queued=queued,
                        remaining=0 if held else max(0, s.budget - used - queued),
                        hold_until=from_us(hold) if held else None,
                    )
                )
            return out
        out = []
        for name, lim in self.limits.items():
            used, queued = self._window.usage(name, now - lim.window_us, now)
            c = self._counters.get(name, Counters())
            out.append(
                _limit_stats(
                    lim, self.margin, now, used, queued, self._window.hold_of(name), vars(c), []
                )
            )
        return out

    def flush(self) -> None:
        """Write the statistics counters to the store now (normally batched each second)."""
        if self.store is None:
            return
        from mqd_cli.store import throttle as sql

        with sql.transaction(self.store) as tx:
            self._flush_into(tx, self._now())

    def budget(self, name: str) -> int:
        return self._lookup(name).budget(self.margin)

    # -- acquiring -----------------------------------------------------------------------------

    def _admissible(self, limits: str | Sequence[str], weight: int) -> tuple[RateLimit, ...]:
        lims = self._expand(limits)
        if weight.__class__ is not int or weight < 1:
            raise UsageError(f"weight must be a positive integer, got {weight!r}")
        for lim in lims:
            if weight > self._plan[lim.name][1]:
                raise UsageError(
                    f"a weight of {weight} can never fit the {lim.name} budget of "
                    f"{lim.budget(self.margin)} per {_fmt_window(lim.window)}",
                    "split the request or raise the limit in [throttle.limits]",
                )
        return lims

    def _wait(
        self, lims: tuple[RateLimit, ...], weight: int, rid: int, at: int, start: int
    ) -> Generator[float, None, float]:
        """Sleep until the reserved slot, following it if a 429 hold moved it."""
        try:
            while True:
                now = self._now()
                if at <= now:
                    break
                yield (at - now) / US
                moved = self._window.reserved_at(rid)
                if moved is None:  # pruned while this process was suspended: take a new slot
                    rid, at, _now = self._reserve(lims, weight, None)
                else:
                    at = moved
        except BaseException:
            self._release(rid)
            raise
        waited = (self._now() - start) / US
        self._record(lims, weight, waited)
        return waited

    def _reserve(
        self, lims: Sequence[RateLimit], weight: int, rid: int | None, tx: Any = None
    ) -> tuple[int, int, int]:
        """Book the earliest slot where ``weight`` fits every limit, after every earlier
        booking: ``(rid, slot, now)``, all in one transaction."""
        if tx is None:
            with self._window.transaction() as tx:
                return self._reserve(lims, weight, rid, tx)
        now = self._now()
        at = now
        plan = self._plan
        for lim in lims:
            name = lim.name
            wus, budget = plan[name]
            total, last, hold = tx.window(name, now - wus)
            slot = max(now, last or 0, hold)
            need = total + weight - budget
            if need > 0:  # the oldest sends must leave the window first
                dropped = 0
                for sent, w in tx.oldest_first(name, now - wus):
                    dropped += w
                    if dropped >= need:
                        slot = max(slot, sent + wus)
                        break
            if slot > at:
                at = slot
        if rid is None:
            self._rid_seq += 1
            rid = self._rid_base + self._rid_seq
        tx.insert([(lim.name, at, weight, rid, 0) for lim in lims])
        if self.shared and now - self._last_flush >= FLUSH_INTERVAL_US:
            self._flush_into(tx, now)
        return rid, at, now

    def _release(self, rid: int) -> None:
        try:
            with self._window.transaction() as tx:
                tx.take(rid)
        except Exception:  # noqa: BLE001 - releasing is best effort; a kept slot is only lost
            pass

    def _record(self, lims: Sequence[RateLimit], weight: int, waited: float) -> None:
        with self._lock:
            for lim in lims:
                c = self._counter(lim.name)
                c.requests += 1
                c.weight += weight
                if waited > 0:
                    c.waits += 1
                    c.wait_total += waited
                    c.wait_max = max(c.wait_max, waited)
        flush_due = not self.shared and self.store is not None
        if flush_due and self._now() - self._last_flush >= FLUSH_INTERVAL_US:
            self.flush()

    # -- feedback and retries ------------------------------------------------------------------

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
        """A 429: count it and hold every caller of these budgets until the reset."""
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
            moved = [self._lookup(name) for name, _w in rows]
            self._reserve(moved, rows[0][1], rid, tx)

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

    def _expand(self, limits: str | Sequence[str]) -> tuple[RateLimit, ...]:
        """The named limits and, transitively, their pools; each once, in order."""
        key = (limits,) if isinstance(limits, str) else tuple(limits)
        cached = self._expand_cache.get(key)
        if cached is not None:
            return cached
        if not key:
            raise UnknownLimit("no rate limit named: every request must spend a budget")
        out: dict[str, RateLimit] = {}
        todo = list(key)
        while todo:
            lim = self._lookup(todo.pop(0))
            if lim.name not in out:
                out[lim.name] = lim
                todo.extend(lim.pools)
        self._expand_cache[key] = result = tuple(out.values())
        return result

    def _counter(self, name: str) -> Counters:
        c = self._counters.get(name)
        if c is None:
            c = self._counters[name] = Counters()
        return c

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


def _fmt_window(window: timedelta) -> str:
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
