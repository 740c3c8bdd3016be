"""Server feedback and retries: the half of the Throttler that reacts to responses.

Rate headers tighten the window (usage the server counts that we did not send becomes phantom
usage); a 429 holds every caller of its budgets, in every process, until the reset, and moves
the queued reservations behind the hold in their order; ``call`` retries what the failure
allows. The server's reset is obeyed in full: ``max_backoff`` caps only our own backoff, and
only a reset beyond ``MAX_SERVER_HOLD`` (an absurd header) is cut short, with a warning. See
``mqd_cli/throttle/__init__.py`` for the design.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from mqd_cli.errors import BrokerUnavailable, RateLimited
from mqd_cli.throttle.limits import (
    MAX_HEADER_SECONDS,
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

    from mqd_cli.throttle.draw import Draw
    from mqd_cli.throttle.lease import Leases
    from mqd_cli.throttle.stats import Tally
    from mqd_cli.throttle.window import MemoryWindow, StoreWindow

T = TypeVar("T")

log = logging.getLogger("mqd.throttle")

# The longest hold a server's reset (``X-Ratelimit-Reset`` / ``Retry-After``) can impose, when
# it is longer than the budget's window. Any real reset is well inside it (Alpaca's window is
# 60 s); a reset hours or days ahead is a bogus header (or a clock far off), and obeying it
# would freeze the budget in every process sharing the store. Such a hold is cut to this bound
# and logged as a warning; the next 429 holds again.
MAX_SERVER_HOLD = timedelta(minutes=15)
MAX_SERVER_HOLD_US = MAX_SERVER_HOLD // timedelta(microseconds=1)


class ServerFeedback:
    """Mixed into ``Throttler``: uses its policy, state and booking methods (``_times``,
    ``_lookup``, ``_admissible``, ``_admit``, ``_queue``, ``_place``, ``_new_rid``,
    ``_write_back``, ``_flush_into``, ``flush``)."""

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

    if TYPE_CHECKING:  # provided by ``Throttler``; declared here for the type checker only

        def _lookup(self, name: str) -> RateLimit: ...
        def _times(self) -> tuple[int, int]: ...
        def _admissible(self, limits: str | Sequence[str], weight: int) -> Draw: ...
        def _admit(self, limits: str | Sequence[str], weight: int) -> Draw | None: ...
        async def _queue(
            self, draw: Draw, weight: int, sleep: Callable[[float], Awaitable[None]]
        ) -> float: ...
        def _place(
            self, tx: Any, lims: tuple[RateLimit, ...], weight: int, rid: int, now: int
        ) -> int: ...
        def _new_rid(self) -> int: ...
        def _write_back(self, tx: Any) -> None: ...
        def _flush_into(self, tx: Any, epoch: int, now: int) -> None: ...
        def flush(self) -> None: ...

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
        reset (``reset_at`` in epoch microseconds) or ``Retry-After``, in full. Our own jittered
        backoff (capped at ``max_backoff``) applies when the server names no reset, or on a
        repeated 429, and only ever lengthens the hold."""
        epoch, now = self._times()
        streak = max(self._streak.get(lim.name, 0) for lim in lims) + 1
        ahead = server_wait_us(reset_at, retry_after, epoch)
        backed_off = streak > 1 or ahead == 0
        own = 0
        if backed_off:  # repeated 429s (or no usable hint): back off exponentially
            own = int(backoff_delay(streak, self.backoff_base, self.max_backoff, self._rng) * US)
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
            if self.shared:
                self._write_back(tx)
            if self._leases is not None:
                with self._lock:
                    self._leases.settle(tx, [lim.name for lim in lims], now, self._new_rid)
                    self._leases.bump()  # every process's leases go back to the store
            for lim in lims:
                self._hold(tx, lim, now + max(own, self._bounded(lim, ahead)), now)
            if self.shared:
                self._flush_into(tx, epoch, now)
        if not self.shared:
            self.flush()

    def _bounded(self, lim: RateLimit, ahead: int) -> int:
        """The server's wait on ``lim``, in full unless it passes the sanity bound."""
        bound = max(lim.window_us, MAX_SERVER_HOLD_US)
        if ahead <= bound:
            return ahead
        log.warning(
            "throttle: the server's rate-limit reset for %s is %.0fs ahead, beyond the %.0fs "
            "sanity bound; holding %.0fs (a bogus header or a clock far off?)",
            lim.name,
            ahead / US,
            bound / US,
            bound / US,
        )
        return bound

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


def server_wait_us(reset_at: int | None, retry_after: float | None, epoch: int) -> int:
    """Microseconds the server asked us to wait from ``epoch``: the later of its reset (epoch
    microseconds) and ``Retry-After`` (seconds); 0 when it named neither, or nothing usable
    (a past reset, a negative or non-finite delay)."""
    ahead = 0
    if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
        ahead = math.ceil(min(retry_after, MAX_HEADER_SECONDS) * US)
    if reset_at is not None and reset_at > epoch:
        ahead = max(ahead, reset_at - epoch)
    return ahead
