"""Cooldown: pause after a large losing trade (or after every exit, if configured).

A trade that lost at least ``loss_threshold`` (money, after fees) pauses its symbol (or every
symbol with ``only_per_symbol = false``) for ``stop_duration`` from its close, or until
``unlock_at``. The newest qualifying exit anchors the pause; winners never do (unless
``after_any_exit``, where every exit is a reason to pause).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from mqd_cli.config.settings import CooldownSettings
from mqd_cli.durations import format_duration
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.protections.base import (
    EquityPoint,
    EvalContext,
    LockRequest,
    Protection,
    ProtectionState,
    ProtectionStatus,
    describe_scope,
    money,
)


class Cooldown(Protection):
    name = "cooldown"
    settings: CooldownSettings

    def history_needed(self) -> timedelta:
        return self.lock_span()

    def qualifies(self, trade: ClosedTrade) -> bool:
        if self.settings.after_any_exit:
            return True
        return trade.pnl < 0 and -trade.pnl >= self.settings.loss_threshold

    def _key(self, trade: ClosedTrade) -> str | None:
        return trade.symbol if self.settings.only_per_symbol else None

    def evaluate(self, ctx: EvalContext) -> list[LockRequest]:
        latest: dict[str | None, ClosedTrade] = {}
        for t in ctx.trades:  # oldest first: the last one per key wins
            if self.qualifies(t):
                latest[self._key(t)] = t
        out = []
        for symbol, trade in latest.items():
            end = self.end_for(trade.closed_at)
            if end <= ctx.now:
                continue
            out.append(self._request(symbol, trade, end))
        return out

    def _request(self, symbol: str | None, trade: ClosedTrade, end: datetime) -> LockRequest:
        threshold = money(self.settings.loss_threshold)
        what = (
            "an exit"
            if self.settings.after_any_exit
            else f"a loss of {money(-trade.pnl)} (threshold {threshold})"
        )
        return LockRequest(
            protection=self.name,
            symbol=symbol,
            side=None,
            reason=(
                f"cooldown after {what} on {trade.symbol}; "
                f"{describe_scope(symbol, None)} paused {self.until_text()}"
            ),
            end=end,
            anchor=trade.closed_at,
            evidence={
                "trade_id": trade.trade_id,
                "symbol": trade.symbol,
                "pnl": str(trade.pnl),
                "exit_reason": trade.exit_reason,
                "loss_threshold": str(self.settings.loss_threshold),
                "closed_at": trade.closed_at.isoformat(),
            },
        )

    def state(self) -> CooldownState:
        return CooldownState(self)

    def status(self, ctx: EvalContext) -> ProtectionStatus:
        s = self.settings
        window = s.stop_duration if self.unlock_at is None else timedelta(days=1)
        recent = [t for t in ctx.trades if ctx.now - window < t.closed_at <= ctx.now]
        worst = max((-t.pnl for t in recent if t.pnl < 0), default=Decimal(0))
        span = format_duration(window)
        if s.after_any_exit:
            measure = f"{len(recent)} exits in the last {span} (any exit pauses)"
            value, threshold, tripped = Decimal(len(recent)), Decimal(1), bool(recent)
        else:
            measure = (
                f"largest loss in the last {span}: {money(worst)} of "
                f"{money(s.loss_threshold)} threshold"
            )
            value, threshold = worst, s.loss_threshold
            tripped = worst > 0 and worst >= s.loss_threshold
        return ProtectionStatus(
            name=self.name,
            enabled=self.enabled,
            config=self.config_doc(),
            measure=measure,
            value=value,
            threshold=threshold,
            tripped=tripped,
        )


class CooldownState(ProtectionState):
    """``Cooldown`` evaluated incrementally: the latest qualifying exit per key (the symbol,
    or everything), by (closed_at, trade_id) so the order trades arrive in does not matter."""

    def __init__(self, cooldown: Cooldown):
        self.cooldown = cooldown
        self.reset(None)

    def reset(self, opener: EquityPoint | None) -> None:
        self._latest: dict[str | None, tuple[ClosedTrade, LockRequest | None]] = {}

    def add(self, trade: ClosedTrade, tail: Sequence[EquityPoint]) -> None:
        cooldown = self.cooldown
        if not cooldown.qualifies(trade):
            return
        key = cooldown._key(trade)
        held = self._latest.get(key)
        if held is None or (trade.closed_at, trade.trade_id) > (
            held[0].closed_at,
            held[0].trade_id,
        ):
            self._latest[key] = (trade, None)

    def requests(self, now: datetime, since: datetime) -> list[LockRequest]:
        out = []
        for key, (trade, request) in list(self._latest.items()):
            if request is None:
                end = self.cooldown.end_for(trade.closed_at)
                if end > now:
                    request = self.cooldown._request(key, trade, end)
                    self._latest[key] = (trade, request)
            if request is None or request.end <= now:  # over: only a later exit pauses again
                del self._latest[key]
                continue
            out.append(request)
        return out
