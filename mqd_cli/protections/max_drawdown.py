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
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from mqd_cli.config.settings import MaxDrawdownSettings
from mqd_cli.durations import format_duration
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.protections.base import (
    EquityPoint,
    EvalContext,
    LockRequest,
    Protection,
    ProtectionState,
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

    def state(self) -> MaxDrawdownState:
        return MaxDrawdownState(self)

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


Breach = tuple[EquityPoint, EquityPoint, Decimal]  # (trough, the peak of its window, drawdown)


class DrawdownTracker:
    """Window peaks of an equity series kept as it grows, and its latest breach.

    The same arithmetic as ``window_peaks`` and ``MaxDrawdown.evaluate``, one point at a time:
    a monotonic deque of indices (equity strictly decreasing from the front) gives each point
    the highest equity of its window, and the latest point that fell to at least
    ``threshold`` below it is kept. Points at the newest instant (several trades can close
    at once) stay in ``tail``, replaceable as a whole, and are folded into the deque when a
    later instant arrives; so each point costs amortised O(1), and evaluating O(tail).
    """

    def __init__(self, lookback: timedelta, threshold: Decimal):
        self.lookback = lookback
        self.threshold = threshold
        self.start(None)

    def start(self, opener: EquityPoint | None) -> None:
        """Forget everything; ``opener`` (if any) is the first point, the window's opening."""
        self._points: deque[EquityPoint] = deque()  # sealed points from index ``_base`` on
        self._base = 0
        self._lo = 0  # index of the newest instant's window opener
        self._dq: deque[int] = deque()
        self._tail: list[EquityPoint] = []
        self._breach: Breach | None = None  # the latest breach among the sealed points
        if opener is not None:
            self._push(opener)

    @property
    def newest(self) -> EquityPoint | None:
        if self._tail:
            return self._tail[-1]
        return self._points[-1] if self._points else None

    def add(self, tail: Sequence[EquityPoint]) -> None:
        """The points of the newest instant, all of them in order. An instant later than the
        held tail folds the tail in first; the same instant replaces the tail."""
        if not tail:
            return
        at = tail[0].at
        if self._tail and at == self._tail[0].at:
            self._tail = list(tail)
            return
        newest = self.newest
        if newest is not None and at < newest.at:
            raise ValueError(f"equity point at {at.isoformat()} before {newest.at.isoformat()}")
        for p in self._tail:
            self._push(p)
        if not self._points:  # no opener: the first point opens the window
            self._push(tail[0])
            tail = tail[1:]
        self._tail = list(tail)

    def add_each(self, points: Iterable[EquityPoint]) -> None:
        """Points at distinct, growing instants (broker equity samples), one by one."""
        for p in points:
            self.add((p,))

    def latest_breach(self) -> Breach | None:
        """The latest point that fell and lies ``threshold`` or more below its window's peak."""
        if not self._tail:
            return self._breach
        self._advance(self._tail[0].at)
        best = self._points[self._dq[0] - self._base]
        prev = self._points[-1]
        found: Breach | None = None
        for p in self._tail:
            if p.equity >= best.equity:
                best = p
            if p.equity < prev.equity:
                dd = drawdown(best, p)
                if dd >= self.threshold:
                    found = (p, best, dd)
            prev = p
        return found or self._breach

    def _push(self, p: EquityPoint) -> None:
        points, dq = self._points, self._dq
        prev = points[-1] if points else None
        i = self._base + len(points)
        points.append(p)
        while dq and points[dq[-1] - self._base].equity <= p.equity:
            dq.pop()
        dq.append(i)
        self._advance(p.at)
        if prev is not None and p.equity < prev.equity:
            dd = drawdown(points[dq[0] - self._base], p)
            if dd >= self.threshold:
                self._breach = (p, points[dq[0] - self._base], dd)

    def _advance(self, at: datetime) -> None:
        """Move the window opener to the last point at or before ``at - lookback`` (it never
        moves back: instants only grow) and let go of what lies before it."""
        points, dq = self._points, self._dq
        start = at - self.lookback
        last = self._base + len(points) - 1
        lo = self._lo
        while lo + 1 <= last and points[lo + 1 - self._base].at <= start:
            lo += 1
        self._lo = lo
        while dq and dq[0] < lo:
            dq.popleft()
        while self._base < lo:
            points.popleft()
            self._base += 1


class MaxDrawdownState(ProtectionState):
    """``MaxDrawdown`` evaluated incrementally: one ``DrawdownTracker`` over the equity after
    each closed trade, one over the broker's equity samples (which win once there are any)."""

    def __init__(self, protection: MaxDrawdown):
        self.protection = protection
        s = protection.settings
        self.trades = DrawdownTracker(s.lookback, protection.threshold)
        self.broker = DrawdownTracker(s.lookback, protection.threshold)

    def reset(self, opener: EquityPoint) -> None:
        self.trades.start(opener)

    def add(self, trade: ClosedTrade, tail: Sequence[EquityPoint]) -> None:
        self.trades.add(tail)

    def requests(self, now: datetime, since: datetime) -> list[LockRequest]:
        if self.broker.newest is not None:
            breach = self.broker.latest_breach()
        else:
            breach = self.trades.latest_breach()
        if breach is None:
            return []
        trough, peak, dd = breach
        end = self.protection.end_for(trough.at)
        if end <= now:
            return []
        if peak.source == "trades" and peak.at < since:
            # The straightforward evaluation sees the trades before the window as one point,
            # the equity it opens with, at its start.
            peak = EquityPoint(since, peak.equity, peak.source)
        return [self.protection._request(trough, peak, dd, end)]
