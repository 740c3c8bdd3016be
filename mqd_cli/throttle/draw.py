"""A call key expanded (``Draw``) and one budget's window in memory (``Lane``).

A leaf of the throttle package: ``window``, ``stats`` and ``throttler`` import it and it imports
none of them, so their imports point one way only (``window`` -> ``stats`` -> ``draw``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqd_cli.throttle.limits import RateLimit


class Lane:
    """One budget's window in memory: rows ``(at, weight, rid)`` in ``at`` order, their total
    weight, and the hold. ``rid`` 0 marks a send (stamped when it was let through) or phantom
    usage the server reported; any other ``rid`` is a reservation not yet sent, which may still
    go out up to ``tol`` after its slot and so stays counted until ``at + tol`` leaves."""

    __slots__ = ("name", "span", "budget", "tol", "rows", "total", "hold", "_rid_at", "_rid_tol")

    def __init__(
        self,
        name: str,
        span: int,
        budget: int,
        rid_at: dict[int, int],
        tol: int = 0,
        rid_tol: dict[int, int] | None = None,
    ) -> None:
        self.name = name
        self.span = span  # window counted, in microseconds
        self.budget = budget
        self.tol = tol  # how late after its slot a reservation may be sent, in microseconds
        self.rows: deque[tuple[int, int, int]] = deque()
        self.total = 0
        self.hold = 0
        self._rid_at = rid_at  # the window's reservation index, shared by its lanes
        # a reservation booked again after its waiter woke late: its own, longer tolerance
        self._rid_tol = rid_tol if rid_tol is not None else {}

    def latest(self, at: int, rid: int) -> int:
        """When a row may be sent at the latest: a reservation not yet sent until the end of
        its tolerance."""
        return at + self._rid_tol.get(rid, self.tol) if rid else at

    def prune(self, since: int) -> None:
        """Drop the rows at or before ``since``: they have left the window (a reservation not
        yet sent leaves only once ``at + tol`` has)."""
        rows = self.rows
        dropped = 0
        while rows and rows[0][0] <= since:
            at, weight, rid = rows[0]
            if rid and self.latest(at, rid) > since:
                break
            rows.popleft()
            dropped += weight
            if rid:
                self._rid_at.pop(rid, None)
                self._rid_tol.pop(rid, None)
        self.total -= dropped

    def restamp(self, rid: int, sent: int) -> None:
        """Reservation ``rid`` was sent at ``sent`` (in ``[at, at + tol]``): it becomes a send
        dated then, kept in ``at`` order."""
        rows = self.rows
        for i in range(len(rows) - 1, -1, -1):  # reservations sit at the young end
            if rows[i][2] == rid:
                weight = rows[i][1]
                del rows[i]
                j = len(rows)
                while j and rows[j - 1][0] > sent:
                    j -= 1
                rows.insert(j, (sent, weight, 0))
                return


class Draw:
    """A call key expanded: the limits one call draws on (its limits and, transitively, their
    pools, each once), the largest weight that can ever fit them all, how late after its slot
    a reservation may still be sent, their lanes when the window is in memory (None when it is
    shared), and the calls let through since the
    statistics last folded them in (plain integers: no counting object per call)."""

    __slots__ = ("lims", "names", "max_weight", "tol", "lanes", "requests", "weight")

    def __init__(
        self,
        lims: tuple[RateLimit, ...],
        max_weight: int,
        lanes: tuple[Lane, ...] | None,
        tol: int = 0,
    ) -> None:
        self.lims = lims
        self.names = tuple(lim.name for lim in lims)
        self.max_weight = max_weight
        self.tol = tol  # a reservation must be sent within this of its slot (every budget's)
        self.lanes = lanes
        self.requests = 0
        self.weight = 0
