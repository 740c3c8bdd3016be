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
    weight, and the hold. ``rid`` 0 marks a row nobody looks up again: a send let through at
    once, or phantom usage the server reported."""

    __slots__ = ("name", "span", "budget", "rows", "total", "hold", "_rid_at")

    def __init__(self, name: str, span: int, budget: int, rid_at: dict[int, int]) -> None:
        self.name = name
        self.span = span  # window counted, in microseconds
        self.budget = budget
        self.rows: deque[tuple[int, int, int]] = deque()
        self.total = 0
        self.hold = 0
        self._rid_at = rid_at  # the window's reservation index, shared by its lanes

    def prune(self, since: int) -> None:
        """Drop the rows at or before ``since``: they have left the window."""
        rows = self.rows
        dropped = 0
        while rows and rows[0][0] <= since:
            _at, weight, rid = rows.popleft()
            dropped += weight
            if rid:
                self._rid_at.pop(rid, None)
        self.total -= dropped


class Draw:
    """A call key expanded: the limits one call draws on (its limits and, transitively, their
    pools, each once), the largest weight that can ever fit them all, their lanes when the
    window is in memory (None when it is shared), and the calls let through since the
    statistics last folded them in (plain integers: no counting object per call)."""

    __slots__ = ("lims", "names", "max_weight", "lanes", "requests", "weight")

    def __init__(
        self,
        lims: tuple[RateLimit, ...],
        max_weight: int,
        lanes: tuple[Lane, ...] | None,
    ) -> None:
        self.lims = lims
        self.names = tuple(lim.name for lim in lims)
        self.max_weight = max_weight
        self.lanes = lanes
        self.requests = 0
        self.weight = 0
