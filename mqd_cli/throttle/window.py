"""The sliding window of every budget, in memory or in the store, and where the next slot is.

A row is a booking of ``weight`` on one limit from ``at`` (when it may be sent) to ``latest``
(when it is sent at the latest); it stays counted one window (plus the send guard) after
``latest``. A plain send or reservation has ``latest == at``. Only the store also holds leased
slots (``latest`` after ``at``: see ``lease.py``); the memory window never does, so its rows in
``at`` order are in ``latest`` order too.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mqd_cli.throttle.limits import RateLimit

if TYPE_CHECKING:
    from mqd_cli.store import Store


def earliest_slot(
    tx: Any, lims: Sequence[RateLimit], weight: int, now: int, plan: Mapping[str, tuple[int, int]]
) -> tuple[int, int]:
    """``(slot, spare)``: the earliest time from ``now`` at which ``weight`` fits every budget
    of ``lims`` after every earlier booking (and any hold), and, when that is ``now``, how much
    more weight would fit now as well. ``plan`` maps a name to (window counted, budget).

    Bookings only ever start at or after the newest one, so from the slot on the window only
    loses rows: the budget holds everywhere once it holds at the slot, which is when the
    oldest rows (by ``latest``) have left it.
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
            for latest, w in tx.oldest_first(name, now - wus):
                dropped += w
                if dropped >= need:
                    slot = max(slot, latest + wus)
                    break
        if slot > at:
            at = slot
        free = budget - total - weight
        spare = free if spare is None or free < spare else spare
    return at, (spare or 0) if at == now else 0


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
