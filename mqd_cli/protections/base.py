"""The protection interface and the types shared by protections, the manager and the store.

A protection is a pure function of closed trades, equity history and "now": ``evaluate``
returns the locks it wants (scope, reason, end, evidence) and ``status`` its current measure
against its threshold. Locks are anchored on the event that tripped them (the trade close or
equity sample), so the result does not depend on when evaluation runs, live or in a backtest,
and a later winning trade can never extend a lock: only losing events anchor one.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from mqd_cli import market_calendar
from mqd_cli.orders.trades import ClosedTrade

Scope = Literal["global", "symbol", "side"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_unlock_at(text: str) -> time | None:
    """``"09:25"`` -> time(9, 25); ``""`` -> None; ValueError on anything else."""
    if not text:
        return None
    m = _HHMM.match(text)
    if not m:
        raise ValueError(f"expected HH:MM (24-hour, New York time) like '09:25', got {text!r}")
    return time(int(m.group(1)), int(m.group(2)))


def lock_end(anchor: datetime, stop_duration: timedelta, unlock_at: time | None) -> datetime:
    """When a lock anchored at ``anchor`` ends.

    ``anchor + stop_duration``, or with ``unlock_at``: that New York wall-clock time on the next
    trading day after the anchor's New York date (skipping weekends and NYSE holidays).
    No rounding to bars: the end is exactly this instant, and the lock is inactive at it.
    """
    if unlock_at is None:
        return anchor + stop_duration
    day = market_calendar.next_trading_day(anchor.astimezone(market_calendar.EXCHANGE_TZ).date())
    local = datetime.combine(day, unlock_at, market_calendar.EXCHANGE_TZ)
    return local.astimezone(anchor.tzinfo)


def scope_of(symbol: str | None, side: str | None) -> Scope:
    if symbol is not None:
        return "symbol" if side is None else "side"
    return "global" if side is None else "side"


def describe_scope(symbol: str | None, side: str | None) -> str:
    """Human form: 'all symbols', 'AAPL', 'all symbols (short)', 'AAPL (long)'."""
    what = symbol if symbol is not None else "all symbols"
    return what if side is None else f"{what} ({side})"


@dataclass(frozen=True)
class LockRequest:
    """What a protection asks for; the manager persists it as a ``Lock`` unless one exists."""

    protection: str
    symbol: str | None  # None = every symbol
    side: str | None  # None = both sides
    reason: str
    end: datetime
    anchor: datetime  # the event that tripped it
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        return scope_of(self.symbol, self.side)


@dataclass(frozen=True)
class Lock:
    """A persisted lock. Active while ``start <= now < end`` and not unlocked by hand."""

    id: int
    protection: str
    scope: Scope
    symbol: str | None
    side: str | None
    reason: str
    start: datetime
    end: datetime
    evidence: dict[str, Any]
    unlocked_at: datetime | None = None
    unlocked_by: str | None = None
    unlock_reason: str | None = None

    def is_active(self, now: datetime) -> bool:
        return self.unlocked_at is None and now < self.end

    def remaining(self, now: datetime) -> timedelta:
        return max(timedelta(0), self.end - now) if self.is_active(now) else timedelta(0)

    @property
    def target(self) -> str:
        return describe_scope(self.symbol, self.side)


@dataclass(frozen=True)
class ProtectionStatus:
    """One protection's current measure against its threshold."""

    name: str
    enabled: bool
    config: dict[str, Any]
    measure: str  # e.g. "2 of 3 stop-losses in the last 1h"
    value: Decimal | None  # the current measure as a number (count, ratio, money)
    threshold: Decimal | None
    tripped: bool  # the measure is at or past the threshold right now
    locks: tuple[Lock, ...] = ()


@dataclass(frozen=True)
class ProtectionEvent:
    """Emitted to the run loop's ``notify`` (log, Discord) when a lock starts, ends or is lifted."""

    kind: Literal["locked", "expired", "unlocked"]
    protection: str
    lock: Lock
    at: datetime
    message: str


@dataclass(frozen=True)
class EquityPoint:
    at: datetime
    equity: Decimal
    source: Literal["trades", "broker"]


@dataclass
class EvalContext:
    """What a protection sees: now, recent closed trades (oldest first) and equity history."""

    now: datetime
    trades: list[ClosedTrade]
    equity: list[EquityPoint]  # oldest first; the first point opens the window


class ProtectionState(ABC):
    """A protection evaluated incrementally: its answer kept up to date as trades close.

    The manager's ``TradeWindow`` feeds it every closed trade of the window in (closed_at,
    trade_id) order: ``add`` gets a trade at or after every trade fed so far (a trade closed at
    the same instant as the newest may come with a smaller trade_id) and ``tail``, the equity
    after each trade closed at that instant, in order. ``reset`` starts over from the equity the
    window opens with (a trade out of time order, or a window rebuilt from the store).
    ``requests`` returns exactly what ``Protection.evaluate`` (the straightforward evaluation,
    kept as the reference) returns for the same trades at ``now``: the locks in force.
    """

    @abstractmethod
    def reset(self, opener: EquityPoint) -> None:
        """Forget everything; the window opens at ``opener`` (its start and equity)."""

    @abstractmethod
    def add(self, trade: ClosedTrade, tail: Sequence[EquityPoint]) -> None:
        """Take in one closed trade (amortised O(1))."""

    @abstractmethod
    def requests(self, now: datetime, since: datetime) -> list[LockRequest]:
        """The locks in force at ``now`` (end after ``now``); ``since`` is the window's start."""


class Protection(ABC):
    """A circuit breaker. Subclasses set ``name`` and implement the four methods."""

    name: str = ""

    def __init__(self, settings: Any):
        self.settings = settings
        self.unlock_at = parse_unlock_at(getattr(settings, "unlock_at", ""))

    @property
    def enabled(self) -> bool:
        return bool(self.settings.enabled)

    @abstractmethod
    def history_needed(self) -> timedelta:
        """How far back from now trades/equity must reach for ``evaluate``."""

    @abstractmethod
    def evaluate(self, ctx: EvalContext) -> list[LockRequest]:
        """Locks that should be in force now (their end is after ``ctx.now``)."""

    @abstractmethod
    def status(self, ctx: EvalContext) -> ProtectionStatus:
        """The current measure against the threshold (locks are filled in by the manager)."""

    @abstractmethod
    def state(self) -> ProtectionState:
        """A new incremental evaluation of this protection (what the manager runs)."""

    # -- helpers shared by the protections -----------------------------------------------------

    def lock_span(self) -> timedelta:
        """Longest time from anchor to lock end (with unlock_at: up to a long holiday weekend)."""
        if self.unlock_at is not None:
            return timedelta(days=7)
        return self.settings.stop_duration

    def end_for(self, anchor: datetime) -> datetime:
        return lock_end(anchor, self.settings.stop_duration, self.unlock_at)

    def until_text(self) -> str:
        if self.unlock_at is not None:
            return f"until {self.unlock_at:%H:%M} New York time on the next trading day"
        from mqd_cli.durations import format_duration

        return f"for {format_duration(self.settings.stop_duration)}"

    def config_doc(self) -> dict[str, Any]:
        from mqd_cli.config.loading import plain

        return plain(self.settings)


def in_window(trade: ClosedTrade, end: datetime, lookback: timedelta) -> bool:
    """Closed within ``(end - lookback, end]``: a trade exactly ``lookback`` old is out."""
    return end - lookback < trade.closed_at <= end


def append_in_order(held: deque[ClosedTrade], trade: ClosedTrade) -> None:
    """Append ``trade`` to trades in (closed_at, trade_id) order; one closed at the same
    instant as the last ones with a smaller id goes in among them."""
    key = (trade.closed_at, trade.trade_id)
    i = len(held)
    while i and (held[i - 1].closed_at, held[i - 1].trade_id) > key:
        i -= 1
    if i == len(held):
        held.append(trade)
    else:
        held.insert(i, trade)


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def pct(value: Decimal | float) -> str:
    return f"{Decimal(str(value)) * 100:.2f}%".replace(".00%", "%")
