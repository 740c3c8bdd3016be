"""Server feedback and retries: the half of the Throttler that reacts to responses.

Rate headers tighten the window (usage the server counts that we did not send becomes phantom
usage); a 429 holds every caller of its budgets, in every process, until the reset, and moves
the queued reservations behind the hold in their order; ``call`` retries what the failure
allows. See ``mqd_cli/throttle/__init__.py`` for the design.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from mqd_cli.brokers.errors import BrokerUnavailable, RateLimited
from mqd_cli.throttle.limits import (
    US,
    RateHeaders,
    RateLimit,
    backoff_delay,
    parse_rate_headers,
    to_us,
)

if TYPE_CHECKING:
    import random
    import threading

    from mqd_cli.throttle.lease import Leases
    from mqd_cli.throttle.stats import Tally
    from mqd_cli.throttle.window import MemoryWindow, StoreWindow

T = TypeVar("T")


class ServerFeedback:
    """Mixed into ``Throttler``: uses its policy, state and booking methods (``_times``,
    ``_lookup``, ``_admissible``, ``_admit``, ``_queue``, ``_place``, ``_new_rid``,
    ``_flush_into``, ``flush``)."""

    shared: bool
    margin: float
    backoff_base: float
    max_backoff: float
    max_attempts: int
    _rng: random.Random
    _lock: threading.RLock
    _window: MemoryWindow | StoreWindow
    _leases: Leases | None
    _tally: Tally
    _streak: dict[str, int]  # consecutive 429s per limit

    def observe(self, limit: str, status: int, headers: Mapping[str, str]) -> None:
        """Feed a response back: rate headers tighten the window; a 429 holds the budget.

        Inside ``call``, let the adapter raise ``RateLimited`` instead of observing the 429
        (``call`` records it); observe the headers of the other responses.
        """
        lim = self._lookup(limit)
        epoch, now = self._times()
        h = parse_rate_headers(headers, epoch)
        if h.reset_at is not None:
            with self._lock:
                c = self._tally.counter(lim.name)
                c.last_reset = max(c.last_reset or 0, h.reset_at)
        if status == 429:
            self._rate_limited((lim,), h.reset_at, h.retry_after)
            return
        if status < 400:
            self._streak[lim.name] = 0
        if h.remaining is not None:
            self._tighten(lim, h, epoch, now)

    async def _call(
        self,
        limits: str | Sequence[str],
        attempt: Callable[[], Awaitable[T]],
        idempotent: bool,
        weight: int,
        sleep: Callable[[float], Awaitable[None]],
    ) -> T:
        lims = self._admissible(limits, weight).lims  # a bad name fails before any attempt
        failures = 0
        while True:
            draw = self._admit(limits, weight)
            if draw is not None:
                await self._queue(draw, weight, sleep)
            try:
                result = await attempt()
            except (RateLimited, BrokerUnavailable) as exc:
                failures += 1
                delay = self._after_failure(lims, exc, idempotent, failures)
                if delay:
                    await sleep(delay)
                continue
            self._succeeded(lims)
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
                self._tally.counter(lim.name).backoffs += 1
        return backoff_delay(failures, self.backoff_base, self.max_backoff, self._rng)

    def _succeeded(self, lims: Sequence[RateLimit]) -> None:
        for lim in lims:
            if self._streak.get(lim.name):
                self._streak[lim.name] = 0

    def _rate_limited(
        self, lims: Sequence[RateLimit], reset_at: int | None, retry_after: float | None
    ) -> None:
        """A 429: count it and hold every caller of these budgets, in every process, until the
        reset (``reset_at`` in epoch microseconds)."""
        epoch, now = self._times()
        streak = max(self._streak.get(lim.name, 0) for lim in lims) + 1
        until = now
        if retry_after is not None:
            until = max(until, now + int(retry_after * US))
        if reset_at is not None and reset_at > epoch:
            until = max(until, reset_at - epoch + now)
        backed_off = streak > 1 or until == now
        if backed_off:  # repeated 429s (or no hint at all): back off exponentially
            delay = backoff_delay(streak, self.backoff_base, self.max_backoff, self._rng)
            until = max(until, now + int(delay * US))
        with self._lock:
            for lim in lims:
                self._streak[lim.name] = streak
                c = self._tally.counter(lim.name)
                c.rate_limited += 1
                c.last_429 = epoch
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
                self._flush_into(tx, epoch, now)
        if not self.shared:
            self.flush()

    def _hold(self, tx: Any, lim: RateLimit, until: int, now: int) -> None:
        """Hold ``lim`` until ``until`` and move its queued reservations behind the hold, in
        their order (their owners notice when they wake)."""
        tx.set_hold(lim.name, until, now)
        queued = [(rid, tx.take(rid)) for rid in tx.future(lim.name, now)]
        for rid, rows in queued:
            if rows:
                moved = tuple(self._lookup(name) for name, _w in rows)
                self._place(tx, moved, rows[0][1], rid, now)

    def _tighten(self, lim: RateLimit, h: RateHeaders, epoch: int, now: int) -> None:
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
            if h.reset_at is not None and h.reset_at > epoch:
                reset = h.reset_at - epoch + now
                at = max(since + 1, min(now, reset - lim.window_us))
            tx.insert([(lim.name, at, phantom, 0, 1)])
            if self._leases is not None:
                self._leases.bump()
