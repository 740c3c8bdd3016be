"""LowProfit: lock a symbol whose stake-weighted profit over the lookback is too low.

Profit is ``sum(pnl) / sum(stake)`` over the symbol's trades in the window, so a -10 % trade
on a 100 stake does not outweigh a +1 % trade on 10,000 (a plain sum of ratios would say
-9 %). It judges only after ``trade_limit`` trades in the window. The lock is anchored on a
trade that was itself below the requirement, so a later winner never extends it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from mqd_cli.config.settings import LowProfitSettings
from mqd_cli.durations import format_duration
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.protections.base import (
    EvalContext,
    LockRequest,
    Protection,
    ProtectionStatus,
    in_window,
    pct,
)


def stake_weighted_profit(trades: list[ClosedTrade]) -> Decimal:
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
                    lookback = format_duration(s.lookback)
                    out.append(
                        LockRequest(
                            protection=self.name,
                            symbol=symbol,
                            side=None,
                            reason=(
                                f"{symbol} made {pct(profit)} stake-weighted over {len(window)} "
                                f"trades in {lookback} (required {pct(self.required)}); "
                                f"locked {self.until_text()}"
                            ),
                            end=end,
                            anchor=anchor.closed_at,
                            evidence={
                                "trade_ids": [t.trade_id for t in window],
                                "profit": str(profit.quantize(Decimal("0.000001"))),
                                "pnl": str(sum((t.pnl for t in window), Decimal(0))),
                                "stake": str(sum((t.stake for t in window), Decimal(0))),
                                "required_profit": str(self.required),
                                "lookback": lookback,
                            },
                        )
                    )
                break
        return out

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
