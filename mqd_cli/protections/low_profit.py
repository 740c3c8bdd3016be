"""LowProfit: lock a symbol whose stake-weighted profit over the lookback is too low.

Profit is ``sum(pnl) / sum(stake)`` over the symbol's trades in the window, so a -10 % trade
on a 100 stake does not outweigh a +1 % trade on 10,000 (a plain sum of ratios would say
-9 %). It judges only after ``trade_limit`` trades in the window. The lock is anchored on a
trade that was itself below the requirement, so a later winner never extends it.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from mqd_cli.config.settings import LowProfitSettings
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
    in_window,
    pct,
)


def stake_weighted_profit(trades: Sequence[ClosedTrade]) -> Decimal:
    stake = sum((t.stake for t in trades), Decimal(0))
    if not stake:
        return Decimal(0)
    return sum((t.pnl for t in trades), Decimal(0)) / stake


class LowProfit(Protection):
    name = "low_profit"
    settings: LowProfitSettings

    def history_needed(self) -> timedelta:
        return self.settings.lookback + self.lock_span()

    @property
    def required(self) -> Decimal:
        return Decimal(str(self.settings.required_profit))

    def _by_symbol(self, trades: list[ClosedTrade]) -> dict[str, list[ClosedTrade]]:
        groups: dict[str, list[ClosedTrade]] = defaultdict(list)
        for t in trades:
            groups[t.symbol].append(t)
        return groups

    def evaluate(self, ctx: EvalContext) -> list[LockRequest]:
        s = self.settings
        out = []
        for symbol, trades in self._by_symbol(ctx.trades).items():
            for anchor in reversed(trades):
                if anchor.profit_ratio >= self.required:
                    continue  # a trade that met the requirement never anchors a lock
                window = [t for t in trades if in_window(t, anchor.closed_at, s.lookback)]
                profit = stake_weighted_profit(window)
                if len(window) < s.trade_limit or profit >= self.required:
                    continue
                end = self.end_for(anchor.closed_at)
                if end > ctx.now:
                    out.append(self._request(symbol, anchor.closed_at, window, end))
                break
        return out

    def _request(
        self, symbol: str, anchor: datetime, window: Sequence[ClosedTrade], end: datetime
    ) -> LockRequest:
        profit = stake_weighted_profit(window)
        lookback = format_duration(self.settings.lookback)
        return LockRequest(
            protection=self.name,
            symbol=symbol,
            side=None,
            reason=(
                f"{symbol} made {pct(profit)} stake-weighted over {len(window)} "
                f"trades in {lookback} (required {pct(self.required)}); "
                f"locked {self.until_text()}"
            ),
            end=end,
            anchor=anchor,
            evidence={
                "trade_ids": [t.trade_id for t in window],
                "profit": str(profit.quantize(Decimal("0.000001"))),
                "pnl": str(sum((t.pnl for t in window), Decimal(0))),
                "stake": str(sum((t.stake for t in window), Decimal(0))),
                "required_profit": str(self.required),
                "lookback": lookback,
            },
        )

    def state(self) -> LowProfitState:
        return LowProfitState(self)

    def status(self, ctx: EvalContext) -> ProtectionStatus:
        s = self.settings
        worst: tuple[Decimal, str, int] | None = None
        for symbol, trades in self._by_symbol(ctx.trades).items():
            window = [t for t in trades if in_window(t, ctx.now, s.lookback)]
            if len(window) < s.trade_limit:
                continue
            profit = stake_weighted_profit(window)
            if worst is None or profit < worst[0]:
                worst = (profit, symbol, len(window))
        lookback = format_duration(s.lookback)
        if worst is None:
            measure = f"no symbol has {s.trade_limit} trades in the last {lookback} yet"
            value, tripped = None, False
        else:
            profit, symbol, n = worst
            measure = (
                f"worst {symbol}: {pct(profit)} stake-weighted over {n} trades in the last "
                f"{lookback} (required {pct(self.required)})"
            )
            value, tripped = profit.quantize(Decimal("0.000001")), profit < self.required
        return ProtectionStatus(
            name=self.name,
            enabled=self.enabled,
            config=self.config_doc(),
            measure=measure,
            value=value,
            threshold=self.required,
            tripped=tripped,
        )


class _SymbolWindow:
    """One symbol's trades of the lookback before its newest, with running sums."""

    __slots__ = ("trades", "pnl", "stake", "at", "anchors", "newest", "before")

    def __init__(self) -> None:
        self.trades: deque[ClosedTrade] = deque()
        self.pnl = Decimal(0)
        self.stake = Decimal(0)
        self.at: datetime | None = None  # the newest instant
        self.anchors = False  # a trade of the newest instant is below the requirement
        self.newest: tuple[datetime, tuple[ClosedTrade, ...]] | None = None  # its lock's
        self.before: tuple[datetime, tuple[ClosedTrade, ...]] | None = None  # earlier ones'


class LowProfitState(ProtectionState):
    """``LowProfit`` evaluated incrementally: per symbol a window sliding over its trades with
    running sums of PnL and stake (exact Decimal additions), and the lock of the latest trade
    below the requirement whose window was too (trades closed at one instant share a window,
    so the newest instant is judged again when another trade joins it)."""

    def __init__(self, protection: LowProfit):
        self.protection = protection
        self.required = protection.required
        self.reset(None)

    def reset(self, opener: EquityPoint | None) -> None:
        self._windows: dict[str, _SymbolWindow] = {}
        self._requests: dict[str, LockRequest] = {}
        self._live: set[str] = set()  # symbols with a lock that may be in force

    def add(self, trade: ClosedTrade, tail: Sequence[EquityPoint]) -> None:
        w = self._windows.get(trade.symbol)
        if w is None:
            w = self._windows[trade.symbol] = _SymbolWindow()
        at = trade.closed_at
        latest = w.newest or w.before
        if w.at != at:  # a later instant: the newest instant's lock becomes an earlier one's
            if w.newest is not None:
                w.before = w.newest
            w.at, w.anchors, w.newest = at, False, None
        append_in_order(w.trades, trade)
        w.pnl += trade.pnl
        w.stake += trade.stake
        start = at - self.protection.settings.lookback
        trades = w.trades
        while trades[0].closed_at <= start:
            gone = trades.popleft()
            w.pnl -= gone.pnl
            w.stake -= gone.stake
        if trade.profit_ratio < self.required:
            w.anchors = True
        if w.anchors:
            profit = w.pnl / w.stake if w.stake else Decimal(0)
            qualified = len(trades) >= self.protection.settings.trade_limit
            w.newest = (at, tuple(trades)) if qualified and profit < self.required else None
        if (w.newest or w.before) is not latest:
            self._requests.pop(trade.symbol, None)
            self._live.add(trade.symbol)

    def requests(self, now: datetime, since: datetime) -> list[LockRequest]:
        out = []
        for symbol in list(self._live):
            request = self._requests.get(symbol)
            if request is None:
                w = self._windows[symbol]
                latest = w.newest or w.before
                end = None if latest is None else self.protection.end_for(latest[0])
                if latest is None or end is None or end <= now:
                    self._live.discard(symbol)  # over: only a later trade can lock it again
                    continue
                request = self.protection._request(symbol, latest[0], latest[1], end)
                self._requests[symbol] = request
            elif request.end <= now:
                self._live.discard(symbol)
                del self._requests[symbol]
                continue
            out.append(request)
        return out
