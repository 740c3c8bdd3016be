"""Statistics per budget: this process's counters and what every process persisted."""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mqd_cli.throttle.limits import RateLimit, from_us, to_us

if TYPE_CHECKING:
    from mqd_cli.store import Store
    from mqd_cli.throttle.draw import Draw


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

    def minus(self, old: Counters) -> dict[str, Any]:
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


class Tally:
    """This process's counters per limit, and what it last wrote to the store.

    A call let through counts on its ``Draw`` (two integer increments, whatever its pools);
    ``fold`` moves those counts onto the limits before anyone reads them. The caller holds
    the throttler's lock.
    """

    def __init__(self) -> None:
        self.counters: dict[str, Counters] = {}
        self._flushed: dict[str, Counters] = {}

    def counter(self, name: str) -> Counters:
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = Counters()
        return c

    def waited(self, names: Iterable[str], seconds: float) -> None:
        for name in names:
            c = self.counter(name)
            c.waits += 1
            c.wait_total += seconds
            c.wait_max = max(c.wait_max, seconds)

    def fold(self, draws: Iterable[Draw]) -> None:
        for draw in draws:
            if draw.requests:
                for name in draw.names:
                    c = self.counter(name)
                    c.requests += draw.requests
                    c.weight += draw.weight
                draw.requests = draw.weight = 0

    def unflushed(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """This process's rows (absolute) and the deltas for the totals, of every limit whose
        counters changed since the last call; they count as written from now on."""
        rows, totals = [], []
        for name, c in self.counters.items():
            old = self._flushed.get(name, Counters())
            if c == old:
                continue
            rows.append({"limit_name": name, **vars(c)})
            totals.append({"limit_name": name, **c.minus(old)})
            self._flushed[name] = replace(c)
        return rows, totals


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
    used: int  # weight sent (or leased to a process) in the last window, plus server-reported
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


def limit_stats(
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
        out.append(limit_stats(lim, margin, now_us, used, queued, holds.get(name, 0), total, procs))
    return out


def process_identity(label: str | None, started: int) -> dict[str, Any]:
    """This process's key in the statistics: unique per throttler, labelled with its command."""
    if label is None:
        args = [os.path.basename(sys.argv[0] or "python")] + sys.argv[1:3]
        label = " ".join(a for a in args if not a.startswith("-"))[:60]
    return {
        "process": f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}",
        "label": label,
        "pid": os.getpid(),
        "started": started,
    }
