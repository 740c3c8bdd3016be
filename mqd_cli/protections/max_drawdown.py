"""MaxDrawdown: stop everything after a deep peak-to-trough drop in account equity.

Drawdown is measured on equity, never by summing per-trade ratios: the equity at the start of
the lookback (starting equity plus the PnL closed before it, or the broker's equity sample)
counts as a peak, so one large first loss trips it. A point is a breach when equity *fell* to
it and it is at least ``max_drawdown`` below the highest equity of its own lookback window; the
lock is anchored on the latest breach, so a recovery (a winning trade) never extends a lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from datetime import datetime, timedelta
from decimal import Decimal

from mqd_cli.config.settings import MaxDrawdownSettings
from mqd_cli.durations import format_duration
from mqd_cli.protections.base import (
    EquityPoint,
    EvalContext,
    LockRequest,
    Protection,
    ProtectionStatus,
    money,
    pct,
)


def window_peaks(points: list[EquityPoint], lookback: timedelta) -> list[EquityPoint]:
    """For each point, the highest equity of its window, in one pass (a monotonic deque).

    A point's window is ``(at - lookback, at]`` plus the last point at or before its start
    (the equity the window opens with), so the starting equity always counts as a peak.
    """
    peaks: list[EquityPoint] = []
    dq: deque[int] = deque()  # indices, equity strictly decreasing from the front
    lo = 0
    for i, p in enumerate(points):
        while dq and points[dq[-1]].equity <= p.equity:
            dq.pop()
        dq.append(i)
        while lo + 1 <= i and points[lo + 1].at <= p.at - lookback:
            lo += 1
        while dq[0] < lo:
            dq.popleft()
        peaks.append(points[dq[0]])
    return peaks


def drawdown(peak: EquityPoint, point: EquityPoint) -> Decimal:
    if peak.equity <= 0:
        return Decimal(0)
    return max(Decimal(0), (peak.equity - point.equity) / peak.equity)


class MaxDrawdown(Protection):
    name = "max_drawdown"
    settings: MaxDrawdownSettings

    def history_needed(self) -> timedelta:
        return self.settings.lookback + self.lock_span()

    @property
    def threshold(self) -> Decimal:
        return Decimal(str(self.settings.max_drawdown))

    def evaluate(self, ctx: EvalContext) -> list[LockRequest]:
        pts = ctx.equity
        earliest = ctx.now - self.lock_span()
        start = bisect_left([p.at for p in pts], earliest)
        peaks = window_peaks(pts, self.settings.lookback)
        for i in range(len(pts) - 1, max(start, 1) - 1, -1):
            if pts[i].equity >= pts[i - 1].equity:
                continue  # only a fall can trip it: recoveries never anchor a lock
            peak = peaks[i]
            dd = drawdown(peak, pts[i])
            if dd < self.threshold:
                continue
            end = self.end_for(pts[i].at)
            if end <= ctx.now:
                break
            return [self._request(pts[i], peak, dd, end)]
        return []

    def _request(
        self, trough: EquityPoint, peak: EquityPoint, dd: Decimal, end: datetime
    ) -> LockRequest:
        lookback = format_duration(self.settings.lookback)
        return LockRequest(
            protection=self.name,
            symbol=None,
            side=None,
            reason=(
                f"equity drawdown {pct(dd)} (limit {pct(self.threshold)}) within {lookback}: "
                f"{money(peak.equity)} -> {money(trough.equity)}; all trading locked "
                f"{self.until_text()}"
            ),
            end=end,
            anchor=trough.at,
            evidence={
                "drawdown": str(dd.quantize(Decimal("0.000001"))),
                "max_drawdown": str(self.threshold),
                "peak_equity": str(peak.equity),
                "peak_at": peak.at.isoformat(),
                "trough_equity": str(trough.equity),
                "trough_at": trough.at.isoformat(),
                "equity_source": trough.source,
                "lookback": lookback,
            },
        )

    def status(self, ctx: EvalContext) -> ProtectionStatus:
        pts = ctx.equity
        dd, peak, current = Decimal(0), None, None
        if pts:
            # The drawdown now: the latest equity against the peak of the lookback window.
            current = pts[-1]
            peak = window_peaks(pts, self.settings.lookback)[-1]
            dd = drawdown(peak, current)
        lookback = format_duration(self.settings.lookback)
        detail = (
            f" (equity {money(current.equity)}, peak {money(peak.equity)}, from {current.source})"
            if current is not None and peak is not None
            else " (no equity history)"
        )
        return ProtectionStatus(
            name=self.name,
            enabled=self.enabled,
            config=self.config_doc(),
            measure=(
                f"drawdown {pct(dd)} of {pct(self.threshold)} allowed over the last "
                f"{lookback}{detail}"
            ),
            value=dd.quantize(Decimal("0.000001")),
            threshold=self.threshold,
            tripped=dd >= self.threshold and dd > 0,
        )
