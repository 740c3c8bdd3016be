"""The Throttler: every outbound request to a broker or data API spends a named budget first.

Accounting is an exact sliding window kept as a list of send times per limit. An acquire
*reserves* the earliest slot at which its weight fits every budget it draws on (its limits and
their pools), after every earlier reservation, in one atomic step; the caller then sleeps on the
injected Clock until that slot. So waiters are served first come, first served, nobody polls,
and no half-open window ``[t, t + window)`` ever holds more than ``limit * (1 - margin)``
weight, while a saturating workload sends at the exact moment a slot frees.

With ``[throttle] shared = true`` the window lives in the store (``store/throttle.py``): a
booking is one short ``BEGIN IMMEDIATE`` transaction, so every mqd process on the host stays
under the limit together. When a budget has room, one transaction leases a small batch of
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
