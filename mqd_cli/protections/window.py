"""The closed trades the protections look at, kept up to date from the store.

``TradeWindow`` holds the trades closed since the window's start (oldest first, by closed_at
then trade_id), the equity the window opens with (starting equity plus the PnL closed before
it) and the equity after each trade. Each evaluation reads only the trades stored since the
newest one it holds, appends them and folds the trades that left the window into the equity
it opens with, so its cost follows the new trades, not the history.

Every trade taken in is passed on to the protections' incremental states
(``ProtectionState``) in the same order. A trade closed at the same instant as the newest
ones (several exits fill on one bar) goes in among them at O(that instant's trades); a trade
closed earlier than the newest (stored late by another path) rebuilds the window and the
states from the store's order.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from mqd_cli.orders.trades import ClosedTrade, closed_trades
from mqd_cli.protections.base import EquityPoint, ProtectionState
from mqd_cli.store import Store
from mqd_cli.store import trades as trades_db


class TradeWindow:
    """The closed trades since ``since``, their equity, and the states they feed."""

    def __init__(
        self, store: Store, starting_equity: Decimal, states: Sequence[ProtectionState] = ()
    ):
        self.store = store
        self.starting_equity = Decimal(starting_equity)
        self.states = tuple(states)
        self.since: datetime | None = None  # None: to be (re)built from the store
        self.opening = self.starting_equity
        self.trades: deque[ClosedTrade] = deque()
        self.points: deque[EquityPoint] = deque()  # equity after each trade of ``trades``
        self._ids: set[str] = set()

    def invalidate(self) -> None:
        """Rebuild from the store at the next ``move_to``."""
        self.since = None

    def move_to(self, since: datetime) -> None:
        """Make ``since`` the window's start and take in the trades stored since the newest
        one held. A start earlier than the current one (or a window not built) rebuilds it."""
        if self.since is None or since < self.since:
            self._rebuild(since)
            return
        trades, points = self.trades, self.points
        while trades and trades[0].closed_at < since:
            gone = trades.popleft()
            points.popleft()
            self._ids.discard(gone.trade_id)
            self.opening += gone.pnl
        self.since = since
        newest = trades[-1].closed_at if trades else since
        self.add(closed_trades(self.store, since=newest))

    def add(self, trades: Iterable[ClosedTrade]) -> None:
        """Take in trades not yet held (a trade closed before the window, whose PnL may be
        missing from the opening equity, rebuilds the window from the store)."""
        since = self.since
        if since is None:
            return
        for t in trades:
            if t.trade_id in self._ids:
                continue
            if t.closed_at < since:
                self._rebuild(since)
                continue
            held = self.trades
            if held and (t.closed_at, t.trade_id) < (held[-1].closed_at, held[-1].trade_id):
                if t.closed_at == held[-1].closed_at:
                    self._insert_at_newest_instant(t)
                else:
                    self._insert(t)  # out of time order (stored late by another path)
                continue
            equity = (self.points[-1].equity if self.points else self.opening) + t.pnl
            point = EquityPoint(t.closed_at, equity, "trades")
            held.append(t)
            self.points.append(point)
            self._ids.add(t.trade_id)
            if self.states:
                tail = self._tail() if len(held) > 1 and held[-2].closed_at == t.closed_at else ()
                for state in self.states:
                    state.add(t, tail or (point,))

    def _tail(self) -> list[EquityPoint]:
        """The equity points of the newest instant, in order."""
        points = self.points
        at = points[-1].at
        n = 1
        while n < len(points) and points[-1 - n].at == at:
            n += 1
        return [points[-i] for i in range(n, 0, -1)]

    def _insert_at_newest_instant(self, trade: ClosedTrade) -> None:
        """A trade closed at the newest instant with a smaller id than the last: it goes in
        among the trades of that instant, whose equity points are recomputed."""
        held, points = self.trades, self.points
        key = (trade.closed_at, trade.trade_id)
        i = len(held)
        while i and (held[i - 1].closed_at, held[i - 1].trade_id) > key:
            i -= 1
        after = [held.pop() for _ in range(len(held) - i)][::-1]
        for _ in after:
            points.pop()
        equity = points[-1].equity if points else self.opening
        for t in (trade, *after):
            equity += t.pnl
            held.append(t)
            points.append(EquityPoint(t.closed_at, equity, "trades"))
        self._ids.add(trade.trade_id)
        if self.states:
            tail = self._tail()
            for state in self.states:
                state.add(trade, tail)

    def _insert(self, trade: ClosedTrade) -> None:
        trades = list(self.trades)
        insort(trades, trade, key=lambda t: (t.closed_at, t.trade_id))
        self._reset(self.opening, trades)

    def _rebuild(self, since: datetime) -> None:
        self.since = since
        before = trades_db.realized_pnl_before(self.store, since)
        self._reset(self.starting_equity + before, closed_trades(self.store, since))

    def _reset(self, opening: Decimal, trades: list[ClosedTrade]) -> None:
        self.opening = opening
        self.trades = deque(trades)
        self._ids = {t.trade_id for t in trades}
        equity = opening
        points = []
        for t in trades:
            equity += t.pnl
            points.append(EquityPoint(t.closed_at, equity, "trades"))
        self.points = deque(points)
        if self.states:
            self._feed_states()

    def _feed_states(self) -> None:
        """Start the states over from the window: its opening, then every trade in order."""
        if self.since is None:
            return  # not built: ``move_to`` rebuilds it (and feeds them) first
        opener = EquityPoint(self.since, self.opening, "trades")
        states = self.states
        for state in states:
            state.reset(opener)
        points = list(self.points)
        first = 0  # index of the first trade of the current instant
        for i, t in enumerate(self.trades):
            if points[first].at != t.closed_at:
                first = i
            tail = points[first : i + 1]
            for state in states:
                state.add(t, tail)
