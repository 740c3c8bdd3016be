"""StoplossGuard: lock after N losing stop exits within the lookback.

A trade counts when it was closed by a stop (stop-loss, trailing stop, liquidation) *and* lost
money: a trailing stop that locks in a profit is a good exit, not a warning sign. The lock is
anchored on the exit that made the count reach the limit and ends ``stop_duration`` after it
(or at ``unlock_at``). Scope: global, per symbol (``only_per_symbol``), per side
(``only_per_side``), or per symbol and side.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from mqd_cli.config.settings import StoplossGuardSettings
from mqd_cli.durations import format_duration
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.protections.base import (
    EquityPoint,
    EvalContext,
    LockRequest,
    Protection,
    ProtectionState,
    ProtectionStatus,
    append_in_order,
    describe_scope,
    in_window,
)

Key = tuple[str | None, str | None]  # (symbol, side)


class StoplossGuard(Protection):
    name = "stoploss_guard"
    settings: StoplossGuardSettings

    def history_needed(self) -> timedelta:
        return self.settings.lookback + self.lock_span()

    def _key(self, trade: ClosedTrade) -> Key:
        s = self.settings
        return (
            trade.symbol if s.only_per_symbol else None,
            trade.side if s.only_per_side else None,
        )

    def _groups(self, trades: list[ClosedTrade]) -> dict[Key, list[ClosedTrade]]:
        groups: dict[Key, list[ClosedTrade]] = defaultdict(list)
        for t in trades:
            if t.is_stop_exit and t.is_loss:
                groups[self._key(t)].append(t)
        return groups

    def evaluate(self, ctx: EvalContext) -> list[LockRequest]:
        s = self.settings
        out = []
        for key, stops in self._groups(ctx.trades).items():
            # The latest exit that brought the count within its own window to the limit.
            for anchor in reversed(stops):
                window = [t for t in stops if in_window(t, anchor.closed_at, s.lookback)]
                if len(window) < s.trade_limit:
                    continue
                end = self.end_for(anchor.closed_at)
                if end > ctx.now:
                    out.append(self._request(key, anchor.closed_at, window, end))
                break
        return out

    def _request(
        self, key: Key, anchor: datetime, window: Sequence[ClosedTrade], end: datetime
    ) -> LockRequest:
        s = self.settings
        symbol, side = key
        lookback = format_duration(s.lookback)
        return LockRequest(
            protection=self.name,
            symbol=symbol,
            side=side,
            reason=(
                f"{len(window)} stop-loss exits in {lookback} "
                f"(limit {s.trade_limit}) on {describe_scope(symbol, side)}; "
                f"locked {self.until_text()}"
            ),
            end=end,
            anchor=anchor,
            evidence={
                "trade_ids": [t.trade_id for t in window],
                "count": len(window),
                "trade_limit": s.trade_limit,
                "lookback": lookback,
                "last_exit": anchor.isoformat(),
            },
        )

    def state(self) -> StoplossGuardState:
        return StoplossGuardState(self)

    def status(self, ctx: EvalContext) -> ProtectionStatus:
        s = self.settings
        worst: tuple[int, Key] = (0, (None, None))
        for key, stops in self._groups(ctx.trades).items():
            n = sum(1 for t in stops if in_window(t, ctx.now, s.lookback))
            worst = max(worst, (n, key), key=lambda w: w[0])
        count, (symbol, side) = worst
        where = "" if (symbol, side) == (None, None) else f" on {describe_scope(symbol, side)}"
        return ProtectionStatus(
            name=self.name,
            enabled=self.enabled,
            config=self.config_doc(),
            measure=(
                f"{count} of {s.trade_limit} stop-losses in the last "
                f"{format_duration(s.lookback)}{where}"
            ),
            value=Decimal(count),
            threshold=Decimal(s.trade_limit),
            tripped=count >= s.trade_limit,
        )


class StoplossGuardState(ProtectionState):
    """``StoplossGuard`` evaluated incrementally: per key (symbol and/or side) the losing stop
    exits of the lookback before the newest one, a window that slides as exits arrive, and
    the lock of the latest exit whose window reached the limit. Exits closed at one instant
    share one window, so the newest instant's lock is rebuilt when another exit joins it."""

    def __init__(self, guard: StoplossGuard):
        self.guard = guard
        self.reset(None)

    def reset(self, opener: EquityPoint | None) -> None:
        self._stops: dict[Key, deque[ClosedTrade]] = {}
        self._latest: dict[Key, tuple[datetime, Sequence[ClosedTrade]]] = {}
        self._requests: dict[Key, LockRequest] = {}

    def add(self, trade: ClosedTrade, tail: Sequence[EquityPoint]) -> None:
        if not (trade.is_stop_exit and trade.is_loss):
            return
        guard = self.guard
        key = guard._key(trade)
        stops = self._stops.get(key)
        if stops is None:
            stops = self._stops[key] = deque()
        append_in_order(stops, trade)
        start = trade.closed_at - guard.settings.lookback
        while stops[0].closed_at <= start:
            stops.popleft()
        if len(stops) >= guard.settings.trade_limit:
            self._latest[key] = (trade.closed_at, tuple(stops))
            self._requests.pop(key, None)

    def requests(self, now: datetime, since: datetime) -> list[LockRequest]:
        out = []
        for key, (anchor, window) in list(self._latest.items()):
            request = self._requests.get(key)
            if request is None:
                end = self.guard.end_for(anchor)
                if end <= now:  # over: only a later exit can lock this key again
                    del self._latest[key]
                    continue
                request = self._requests[key] = self.guard._request(key, anchor, window, end)
            elif request.end <= now:
                del self._latest[key], self._requests[key]
                continue
            out.append(request)
        return out
