"""The sliding window of every budget, in memory or in the store, and where the next slot is.

A row is a booking of ``weight`` on one limit from ``at`` (when it may be sent) to ``latest``
(when it is sent at the latest); it stays counted one window after ``latest``. A send is
dated when it was let through (``latest == at``). A reservation not yet sent may still go out
up to the limit's tolerance after its slot (``latest = at + tol``); when it is sent, its row
is restamped to that moment, so the window holds real send times, never a slot the request
left after. Only the store also holds leased slots (``latest`` later still: see ``lease.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mqd_cli.throttle.draw import Lane
from mqd_cli.throttle.limits import RateLimit, from_us

if TYPE_CHECKING:
    from mqd_cli.store import Store
    from mqd_cli.store.throttle import WindowTx
    from mqd_cli.throttle.stats import LimitStats


def earliest_slot(
    tx: Any, lims: Sequence[RateLimit], weight: int, now: int, plan: Mapping[str, tuple[int, int]]
) -> tuple[int, int]:
    """``(slot, spare)``: the earliest time from ``now`` at which ``weight`` fits every budget
    of ``lims`` after every earlier booking (and any hold), and, when that is ``now``, how much
    more weight would fit now as well. ``plan`` maps a name to (window counted, budget).

    Bookings only ever start at or after the newest one, so from the slot on the window only
    loses rows: the budget holds everywhere once it holds at the slot, which is when the
    oldest rows (by ``latest``) have left it. (The rows come nearly in ``latest`` order; the
    running maximum keeps the slot safe where a pending reservation precedes a send.)
    """
    at = now
    spare = None
    for lim in lims:
        name = lim.name
        wus, budget = plan[name]
        total, last, hold = tx.window(name, now - wus)
        slot = max(now, last or 0, hold)
        need = total + weight - budget
        if need > 0:  # the oldest sends must leave the window first
            dropped = 0
            gone = None
            for latest, w in tx.oldest_first(name, now - wus):
                dropped += w
                gone = latest if gone is None or latest > gone else gone
                if dropped >= need:
                    slot = max(slot, gone + wus)
                    break
        if slot > at:
            at = slot
        free = budget - total - weight
        spare = free if spare is None or free < spare else spare
    return at, (spare or 0) if at == now else 0


def fits_now(
    tx: Any, lims: Sequence[RateLimit], weight: int, now: int, plan: Mapping[str, tuple[int, int]]
) -> bool:
    """Whether ``weight`` sent at ``now`` keeps every window of ``lims`` within budget, with
    every booking as it stands (those queued after ``now`` included, wherever they are).

    A row ``[at, latest]`` may be in any window that overlaps it: it is counted at every
    ``T`` in ``[at, latest + window)``. A send at ``now`` adds ``weight`` on
    ``[now, now + window)``, where the count only rises where a row starts, so checking
    ``now`` and each later start inside that span is exact. Used for a waiter that woke after
    its tolerance: it may still go now instead of queueing again behind everyone.
    """
    for lim in lims:
        wus, budget = plan[lim.name]
        _total, _last, hold = tx.window(lim.name, now - wus)
        if hold > now:
            return False
        rows = tx.spans(lim.name, now - wus)
        for t in [now, *(at for at, _latest, _w in rows if now < at < now + wus)]:
            active = sum(w for at, latest, w in rows if at <= t and latest > t - wus)
            if active + weight > budget:
                return False
    return True


class MemoryWindow:
    """The per-process window, one ``Lane`` per limit: the operations of
    ``store.throttle.WindowTx``, on the clock's monotonic microseconds. The throttler's
    uncontended path reads and appends lanes directly, under the same lock."""

    def __init__(
        self,
        plan: Mapping[str, tuple[int, int]],
        lock: threading.RLock,
        tols: Mapping[str, int] | None = None,
    ) -> None:
        self._lock = lock
        self._rid_at: dict[int, int] = {}  # reservation id -> its slot
        self._rid_tol: dict[int, int] = {}  # reservation id -> its own tolerance, if longer
        tols = tols or {}
        self.lanes = {
            n: Lane(n, span, budget, self._rid_at, tols.get(n, 0), self._rid_tol)
            for n, (span, budget) in plan.items()
        }

    def transaction(self) -> MemoryWindow:
        return self

    def __enter__(self) -> MemoryWindow:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def window(self, name: str, since: int) -> tuple[int, int | None, int]:
        """Drop rows at or before ``since``; (weight left, newest time, hold_until)."""
        lane = self.lanes[name]
        lane.prune(since)
        rows = lane.rows
        return lane.total, rows[-1][0] if rows else None, lane.hold

    def oldest_first(self, name: str, since: int) -> Iterator[tuple[int, int]]:
        """``(latest, weight)`` of the rows still counted: a reservation not yet sent as if
        sent at the end of its tolerance."""
        lane = self.lanes[name]
        for at, weight, rid in lane.rows:
            latest = lane.latest(at, rid)
            if latest > since:
                yield latest, weight

    def spans(self, name: str, since: int) -> list[tuple[int, int, int]]:
        """``(at, latest, weight)`` of the rows still counted after ``since``."""
        lane = self.lanes[name]
        out = []
        for at, weight, rid in lane.rows:
            latest = lane.latest(at, rid)
            if latest > since:
                out.append((at, latest, weight))
        return out

    def insert_span(
        self, name: str, at: int, latest: int, weight: int, rid: int, phantom: int = 0
    ) -> None:
        """A reservation (``rid``) of ``weight`` that may be sent from ``at`` to ``latest``."""
        if rid and not phantom and latest - at > self.lanes[name].tol:
            self._rid_tol[rid] = max(self._rid_tol.get(rid, 0), latest - at)
        self.insert([(name, at, weight, rid, phantom)])

    def restamp(self, rid: int, sent: int, names: Sequence[str]) -> None:
        """Reservation ``rid`` on ``names`` went out at ``sent``: a send dated then."""
        if self._rid_at.pop(rid, None) is not None:
            for name in names:
                self.lanes[name].restamp(rid, sent)
        self._rid_tol.pop(rid, None)

    def insert(self, rows: Sequence[tuple[str, int, int, int, int]]) -> None:
        for name, at, weight, rid, phantom in rows:
            lane = self.lanes[name]
            rid = 0 if phantom else rid
            lst = lane.rows
            if not lst or lst[-1][0] <= at:
                lst.append((at, weight, rid))
            else:  # a phantom dated before queued reservations
                i = len(lst)
                while i and lst[i - 1][0] > at:
                    i -= 1
                lst.insert(i, (at, weight, rid))
            lane.total += weight
            if rid:
                self._rid_at[rid] = at

    def future(self, name: str, after: int) -> list[int]:
        return [rid for at, _w, rid in self.lanes[name].rows if at > after and rid]

    def take(self, rid: int) -> list[tuple[str, int]]:
        out = []
        for name, lane in self.lanes.items():
            for i, (_at, weight, r) in enumerate(lane.rows):
                if r == rid:
                    del lane.rows[i]
                    lane.total -= weight
                    out.append((name, weight))
                    break
        self._rid_at.pop(rid, None)
        self._rid_tol.pop(rid, None)
        return out

    def set_hold(self, name: str, until: int, now: int) -> None:
        lane = self.lanes[name]
        lane.hold = max(lane.hold, until)

    def reserved_at(self, rid: int) -> int | None:
        return self._rid_at.get(rid)

    def peek(self, name: str, since: int) -> tuple[int, int | None, int]:
        with self._lock:
            return self.window(name, since)

    def usage(self, name: str, since: int, now: int) -> tuple[int, int]:
        with self._lock:
            rows = [r for r in self.lanes[name].rows if r[0] > since]
            used = sum(r[1] for r in rows if r[0] <= now)
            return used, sum(r[1] for r in rows) - used

    def hold_of(self, name: str) -> int:
        return self.lanes[name].hold

    def current(self, s: LimitStats, lim: RateLimit | None, epoch: int, now: int) -> LimitStats:
        """``s`` with this window as it is ``now`` (its hold shown as an epoch time)."""
        if lim is None:
            return s
        used, queued = self.usage(s.name, now - lim.window_us, now)
        hold = self.lanes[s.name].hold
        held = hold > now
        return replace(
            s,
            used=used,
            queued=queued,
            remaining=0 if held else max(0, s.budget - used - queued),
            hold_until=from_us(hold - now + epoch) if held else None,
        )


class StoreWindow:
    """The shared window: each operation group is one transaction of the store."""

    def __init__(self, store: Store) -> None:
        from mqd_cli.store import throttle as sql

        self._sql = sql
        self.store = store

    def transaction(self) -> AbstractContextManager[WindowTx]:
        return self._sql.transaction(self.store)

    def reserved_at(self, rid: int) -> int | None:
        return self._sql.reserved_at(self.store, rid)

    def peek(self, name: str, since: int) -> tuple[int, int | None, int]:
        return self._sql.peek(self.store, name, since)

    def usage(self, name: str, since: int, now: int) -> tuple[int, int]:
        return self._sql.usage(self.store, name, since, now)

    def hold_of(self, name: str) -> int:
        return self._sql.holds(self.store).get(name, 0)
