"""Named budgets: limits, presets, ``[throttle]`` resolution, backoff, and rate-limit headers.

Times are integers of microseconds since the epoch (``to_us``): window boundaries compare
exactly, in memory and in the store alike.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, overload

from mqd_cli.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from mqd_cli.config.settings import ThrottleSettings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000
# A rate header number above this (seconds, ~31 million years) is junk, not a time: ignored,
# so that converting it to microseconds can never overflow.
MAX_HEADER_SECONDS = 1e15


def to_us(when: datetime) -> int:
    """Microseconds since the epoch: exact integer arithmetic for window boundaries."""
    d = when - EPOCH
    return (d.days * 86_400 + d.seconds) * US + d.microseconds


@overload
def from_us(us: int) -> datetime: ...
@overload
def from_us(us: None) -> None: ...
def from_us(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + timedelta(microseconds=us)


class UnknownLimit(UsageError):
    """A request named a budget that does not exist: an error, never an unthrottled call."""


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
        # The dead-man heartbeat of `mqd run` ([notify] heartbeat_url): one ping a minute by
        # default; the budget stops a misconfigured interval from hammering the monitor.
        RateLimit("heartbeat", 6, timedelta(minutes=1)),
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
    """Read ``X-Ratelimit-Limit/-Remaining/-Reset`` and ``Retry-After`` (seconds or an HTTP
    date); malformed values are ignored. A reset above 1e9 is an epoch time in seconds (Alpaca),
    below a delay in seconds. Nothing is capped here: how long a 429 holds is decided in
    ``feedback.py``."""
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
        return value if 0 <= value <= MAX_HEADER_SECONDS else None  # also rejects nan

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
