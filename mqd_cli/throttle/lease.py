"""Leases: a shared budget spent in memory, a small batch of slots per store transaction.

Booking one slot in the store is one write transaction (tens of microseconds). When a budget
has room *now* and nobody is queued for it, a process books a small batch instead: per limit,
one row that may be spent any time from the booking (``at``) until ``latest = at + validity``
and that stays counted one window (plus the send guard) after ``latest``. A slot sent at any
moment ``s`` in ``[at, latest]`` occupies ``[s, s + window)``, inside the booked
``[at, latest + window)``, so no real window ever holds more than the store let through, in
any process. Spending a leased slot reads a counter, a deadline and the clock: no store.

- The first slot of a batch is the caller's own and is booked as a plain send; only the rest
  is leased. At the process's next transaction touching those limits (or its stats flush)
  the spent slots are written back as sends at the moments they were spent (claims close
  together share one row that spans them), and the unspent rest is returned. So under load a
  booking holds its slot's real window, not the lease's.
- A lease is granted only from room that is free now with no booking queued after now
  (``earliest_slot`` returns now), so it never jumps a waiter of this or another process,
  and only from room beyond ``FREE_SHARE`` of the budget: near saturation, where a slot
  leased to a process that is not sending right now would keep the others waiting, every
  slot is booked alone, at the moment it is sent, exactly as without leases.
- The batch size of a call key starts at 1 (a lone request books exactly its own slot, as
  without leases), doubles each time the previous batch was used up within its validity,
  and falls back to 1 after an idle gap; it never exceeds ``BATCH_SHARE`` of the smallest
  budget involved, nor ``BATCH_MAX``.
- A 429 hold or phantom usage bumps a counter that every process of the store maps from a
  tiny file next to it, inside the transaction that writes the hold. A lease granted before
  the bump is no longer spent: the next acquire goes to the store, returns the lease and sees
  the hold. Where the file cannot be mapped, there are no leases (every acquire books its own
  slot).
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mqd_cli.throttle.limits import US, RateLimit

if TYPE_CHECKING:
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store

VALIDITY_SHARE = 0.01  # a lease may be spent for 1 % of the window after it was booked ...
VALIDITY_MAX_US = US  # ... and never longer than a second
MERGE_SHARE = 0.001  # spent slots within 0.1 % of the window of each other share one row
BATCH_SHARE = 1 / 32  # a batch never holds more than ~3 % of a budget
BATCH_MAX = 256
FREE_SHARE = 0.25  # leases come only out of room beyond a quarter of the budget
EPOCH_MASK = (1 << 64) - 1


@dataclass
class Lease:
    """Slots of one call key booked in one transaction, spent in memory."""

    names: tuple[str, ...]
    size: int  # the batch size this grant asked for (its caller's slot included)
    at: int  # booked at (epoch microseconds)
    latest: int  # spend by then
    mono: float  # clock.monotonic() read just before ``at``: claims are dated from it
    deadline: float  # mono + validity
    epoch: int  # hold counter when granted
    rid: int = 0  # of the rows booked for the rest (0: none)
    left: int = 0
    used_up: bool = False  # the rest was all spent before it was written back
    claims: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, weight)


def shared_counter(store: Store) -> memoryview | None:
    """The hold counter every process of ``store`` shares: 8 bytes mapped from
    ``<store file>-throttle``; a private one for an in-memory store; None when unmappable."""
    path = str(store.path)
    if path in ("", ":memory:"):  # one connection in one process: nobody else to tell
        return memoryview(bytearray(8)).cast("Q")
    try:
        fd = os.open(f"{path}-throttle", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)  # zero-filled; growing it twice is harmless
            mapped = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None
    return memoryview(mapped).cast("Q")


class Leases:
    """This process's leases of the shared budgets, by call key (the limit names drawn on)."""

    def __init__(
        self, clock: Clock, counter: memoryview, plan: Mapping[str, tuple[int, int]]
    ) -> None:
        self.clock = clock
        self._epoch = counter
        self._plan = plan  # name -> (window counted in microseconds, budget)
        self._leases: dict[tuple[str, ...], Lease] = {}

    def spend(self, names: tuple[str, ...], weight: int) -> bool:
        """Take ``weight`` from the lease of ``names`` if it is still good; the caller holds
        the throttler's lock."""
        lease = self._leases.get(names)
        if lease is None or lease.left < weight or lease.epoch != self._epoch[0]:
            return False
        t = self.clock.monotonic()
        if t > lease.deadline:
            return False
        lease.left -= weight
        lease.claims.append((t, weight))
        return True

    def counter(self) -> int:
        """The hold counter now: unchanged since a booking means no hold moved it."""
        value: int = self._epoch[0]
        return value

    def bump(self) -> None:
        """Tell every process that a hold or phantom usage was written (inside that write)."""
        self._epoch[0] = (self._epoch[0] + 1) & EPOCH_MASK

    def settle(
        self, tx: Any, names: Iterable[str] | None, now: int, new_rid: Callable[[], int]
    ) -> None:
        """Write back what the leases drawing on ``names`` (all leases: None) spent, and
        return the rest."""
        touched = None if names is None else set(names)
        for lease in self._leases.values():
            if not lease.rid or (touched is not None and touched.isdisjoint(lease.names)):
                continue
            tx.take(lease.rid)
            for latest, weight in self._spent(lease, now):
                rid = new_rid()
                for name in lease.names:
                    tx.insert_span(name, lease.at, latest, weight, rid)
            lease.used_up = lease.left == 0
            lease.rid = lease.left = 0
            lease.claims.clear()

    def grant(
        self,
        tx: Any,
        lims: tuple[RateLimit, ...],
        names: tuple[str, ...],
        weight: int,
        spare: int,
        now: int,
        mono: float,
        new_rid: Callable[[], int],
    ) -> None:
        """The caller's ``weight`` was just booked at ``now`` (room free, nobody queued):
        lease up to a batch of ``spare`` more, sized by recent demand."""
        validity = min(VALIDITY_MAX_US, min(int(self._plan[n][0] * VALIDITY_SHARE) for n in names))
        prev = self._leases.get(names)
        size = 1
        if prev is not None and mono - prev.mono <= validity / US:  # asked again soon
            cap = max(1, min(BATCH_MAX, *(int(self._plan[n][1] * BATCH_SHARE) for n in names)))
            size = min(cap, prev.size * 2) if prev.used_up else prev.size
        lease = Lease(names, size, now, now + validity, mono, mono + validity / US, self._epoch[0])
        lease.used_up = True  # nothing leased yet: a second call soon grows the batch
        extra = min(size - weight, spare - int(min(self._plan[n][1] for n in names) * FREE_SHARE))
        if extra > 0:
            lease.rid, lease.left, lease.used_up = new_rid(), extra, False
            for lim in lims:
                tx.insert_span(lim.name, now, lease.latest, extra, lease.rid)
        self._leases[names] = lease

    def _spent(self, lease: Lease, now: int) -> list[tuple[int, int]]:
        """``(latest, weight)`` rows for the claims of ``lease``: each claim dated no earlier
        than it was made (the clock was read before ``lease.at``), merged when close."""
        merge = max(1, int(min(self._plan[n][0] for n in lease.names) * MERGE_SHARE))
        rows: list[list[int]] = []
        for t, weight in lease.claims:
            when = min(lease.latest, now, lease.at + math.ceil((t - lease.mono) * US))
            if rows and when - rows[-1][2] <= merge:
                rows[-1][0] = max(rows[-1][0], when)
                rows[-1][1] += weight
            else:
                rows.append([when, weight, when])  # (latest, weight, first claim)
        return [(latest, weight) for latest, weight, _first in rows]
