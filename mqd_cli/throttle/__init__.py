"""The Throttler: every outbound request to a broker or data API spends a named budget first.

Accounting is an exact sliding window kept as a list of send times per limit. An acquire
*reserves* the earliest slot at which its weight fits every budget it draws on (its limits and
their pools), after every earlier reservation, in one atomic step; the caller then sleeps on the
injected Clock until that slot. So waiters are served first come, first served, nobody polls,
and no half-open window ``[t, t + window)`` ever holds more than ``limit * (1 - margin)``
weight, while a saturating workload sends at the moment a slot frees.

Send times are stamped when a request is let through, not when its slot was booked: a waiter
wakes a little late (scheduling, timer slack, a busy event loop), so its reservation counts as
sent at the end of its tolerance (the send guard, at most 1 % of the window) until it is let
through, and is then restamped to that moment (in the store, at the process's next
transaction). A waiter later than its tolerance goes at once if every window from then on has
room, and books again otherwise. A long wait is slept in two steps (to 1/64 of it before the
slot, then the rest), since a long timer wakes late by a share of its length. A send stays
counted the guard (at most 0.1 % of the window) after its window, for the moment between being
let through and leaving the host.

With ``[throttle] shared = true`` the window lives in the store (``store/throttle.py``): a
booking is one short ``BEGIN IMMEDIATE`` transaction, so every mqd process on the host stays
under the limit together (the throttle's transactions queue on an advisory lock next to the
store, so a busy store passes to the next process in microseconds, not after SQLite's
millisecond busy sleeps). When a budget has room, one transaction leases a small batch of
slots that the process then spends in memory (``lease.py``). Otherwise the window lives in
memory.

Server feedback: ``observe`` reads ``X-Ratelimit-Remaining``/``-Reset`` (usage the server
counts that we did not send becomes "phantom" usage in the window) and a 429 holds every caller
of that budget until the reset (or ``Retry-After``), in full: ``max_backoff`` caps only our own
backoff, and only a reset beyond ``feedback.MAX_SERVER_HOLD`` (an absurd header) is cut short.
Queued reservations move behind the hold in their order, and leases of every process go back
to the store. ``call`` wraps one request:
a 429 is held out and retried (the server refused it, so even an order submit is safe to
resend); a network error, timeout or 5xx is retried with exponential backoff and jitter only
for idempotent requests. An order submit is re-raised at once: its outcome is unknown and the
caller must look the order up by ``client_order_id``.

In memory, an acquire that fits now with nobody queued or held ahead of it (the uncontended
case) reads the monotonic clock once, appends one row per budget and bumps two integers: no
transaction, no coroutine, no datetime. Anything else takes the general path that books a slot.

Modules: ``limits`` (budgets, presets, config, backoff, headers), ``draw`` (a call key
expanded, and one budget's lane in memory), ``window`` (the sliding window in memory or in the
store, and the earliest slot), ``lease`` (batches of shared slots), ``stats`` (counters and
persisted statistics), ``feedback`` (rate headers, 429 holds, retries), ``throttler`` (the
Throttler). The exceptions ``call`` retries on (``RateLimited``, ``BrokerUnavailable``) live in
``mqd_cli/errors.py``, below the brokers that raise them.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqd_cli.throttle.limits import (
        EPOCH,
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
    from mqd_cli.throttle.stats import Counters, LimitStats, ProcessStats, read_stats
    from mqd_cli.throttle.throttler import FLUSH_INTERVAL_US, Throttler, build
    from mqd_cli.throttle.window import MemoryWindow, StoreWindow

# Each name is imported from its module when first asked for: `mqd throttle stats` reads the
# statistics without importing the throttler's machinery (start-up, issue 17).
_HOME = {
    **dict.fromkeys(
        (
            "EPOCH",
            "PRESETS",
            "US",
            "RateHeaders",
            "RateLimit",
            "UnknownLimit",
            "backoff_delay",
            "from_us",
            "parse_rate_headers",
            "resolve_limits",
            "to_us",
        ),
        "limits",
    ),
    **dict.fromkeys(("Counters", "LimitStats", "ProcessStats", "read_stats"), "stats"),
    **dict.fromkeys(("FLUSH_INTERVAL_US", "Throttler", "build"), "throttler"),
    **dict.fromkeys(("MemoryWindow", "StoreWindow"), "window"),
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'mqd_cli.throttle' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"mqd_cli.throttle.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "EPOCH",
    "FLUSH_INTERVAL_US",
    "PRESETS",
    "US",
    "Counters",
    "LimitStats",
    "MemoryWindow",
    "ProcessStats",
    "RateHeaders",
    "RateLimit",
    "StoreWindow",
    "Throttler",
    "UnknownLimit",
    "backoff_delay",
    "build",
    "from_us",
    "parse_rate_headers",
    "read_stats",
    "resolve_limits",
    "to_us",
]
