"""ProtectionManager: evaluates every protection and answers "may this symbol trade?".

Evaluation runs at start-up, when a trade closes, and on a timer (every ``check_interval``),
so a lock starts even when the trade reached the store by another path and every protection
sees the same store. Locks live only in the store: ``is_locked`` reads it, so an unlock done
by ``mqd protections unlock`` in another process takes effect at the next check, and locks
survive restarts. A lock is inactive exactly at its end, on any clock.

The closed trades of the longest lookback are kept in a ``TradeWindow`` that reads only the
trades stored since the newest one it holds, and each protection is evaluated incrementally
(``Protection.state``): every trade the window takes in updates running counters, sliding
windows and running peaks, so a closed trade costs amortised O(1), whatever the number of
trades in the lookback. The straightforward evaluation (``Protection.evaluate`` over an
``EvalContext``, today's definition of every lock) is kept as the reference:
``ProtectionManager(incremental=False)`` runs it, and a property test checks that both place
the same locks. Start-up and every periodic check rebuild the window and the states from the
store, which also picks up a trade another process stored out of time order.

When one evaluation places several locks of one protection, they are stored oldest anchor
first (then by symbol and side), so lock ids do not depend on how the trades were grouped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from mqd_cli.clock import Clock, Timer
from mqd_cli.config.settings import ProtectionsSettings
from mqd_cli.errors import UsageError
from mqd_cli.orders.trades import SIDES, ClosedTrade
from mqd_cli.protections.base import (
    EquityPoint,
    EvalContext,
    Lock,
    LockRequest,
    Protection,
    ProtectionEvent,
    ProtectionState,
    ProtectionStatus,
)
from mqd_cli.protections.cooldown import Cooldown
from mqd_cli.protections.low_profit import LowProfit
from mqd_cli.protections.max_drawdown import MaxDrawdown, MaxDrawdownState
from mqd_cli.protections.stoploss_guard import StoplossGuard
from mqd_cli.protections.window import TradeWindow
from mqd_cli.store import Store
from mqd_cli.store import protections as locks_db
from mqd_cli.store.protections import LockRow

log = logging.getLogger("mqd.protections")

EventKind = Literal["locked", "expired", "unlocked"]  # ``ProtectionEvent.kind``


def format_remaining(seconds: float) -> str:
    """``3725`` -> ``"1h 2m 5s"``; ``0`` -> ``"0s"``."""
    secs = max(0, int(seconds))
    days, secs = divmod(secs, 86400)
    hours, secs = divmod(secs, 3600)
    mins, secs = divmod(secs, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (mins, "m"), (secs, "s")) if v]
    return " ".join(parts) or "0s"


def _order(request: LockRequest) -> tuple[datetime, str, str]:
    """Locks placed by one evaluation are stored oldest anchor first, then by scope."""
    return (request.anchor, request.symbol or "", request.side or "")


def _lock(row: LockRow | None) -> Lock | None:
    return None if row is None else Lock(**row)


def _locks(rows: Iterable[LockRow]) -> list[Lock]:
    return [Lock(**row) for row in rows]


class ProtectionManager:
    """All configured protections over one store and one clock."""

    def __init__(
        self,
        settings: ProtectionsSettings,
        store: Store,
        clock: Clock,
        notify: Callable[[ProtectionEvent], None] | None = None,
        *,
        incremental: bool = True,
    ):
        self.settings = settings
        self.incremental = incremental
        self.store = store
        self.clock = clock
        self.notify = notify
        self.protections: list[Protection] = [
            StoplossGuard(settings.stoploss_guard),
            MaxDrawdown(settings.max_drawdown),
            Cooldown(settings.cooldown),
            LowProfit(settings.low_profit),
        ]
        self._timer: Timer | None = None
        self._expiry_timers: dict[int, Timer] = {}
        # The incremental states of the enabled protections (none for the reference path).
        self.states: dict[str, ProtectionState] = (
            {p.name: p.state() for p in self.protections if p.enabled} if incremental else {}
        )
        self.window = TradeWindow(
            store, settings.max_drawdown.starting_equity, tuple(self.states.values())
        )
        self._samples_stale = True  # reload the broker equity samples from the store
        # Locks known to be in the store (placed here or found there), by identity: asking
        # the store again for one of these is a no-op, so it is skipped.
        self._known: set[tuple[str, str | None, str | None, datetime]] = set()
        self._winners_may_lock = settings.low_profit.enabled or (
            settings.cooldown.enabled and settings.cooldown.after_any_exit
        )

    @property
    def enabled(self) -> list[Protection]:
        return [p for p in self.protections if p.enabled]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> list[Lock]:
        """Restore persisted locks, evaluate once, and start the periodic check (once)."""
        if self._timer is not None:
            return []
        for lock in _locks(locks_db.active_locks(self.store, self.clock.now())):
            self._schedule_expiry(lock)
        self.invalidate()
        placed = self.evaluate()
        self._schedule_check()
        return placed

    def stop(self) -> None:
        """Cancel the timers (locks stay in the store)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for timer in self._expiry_timers.values():
            timer.cancel()
        self._expiry_timers.clear()

    def invalidate(self) -> None:
        """Rebuild the window, the states and the equity samples from the store next time."""
        self.window.invalidate()
        self._samples_stale = True

    def _schedule_check(self) -> None:
        self._timer = self.clock.call_later(
            self.settings.check_interval.total_seconds(), self._check, "protections.check"
        )

    def _check(self) -> None:
        try:
            self.invalidate()  # the store is the truth: rebuild from it now and then
            self.evaluate()
            keep = max(p.history_needed() for p in self.protections) + timedelta(days=1)
            locks_db.prune_equity(self.store, self.clock.now() - keep)
        except Exception:  # a failed check must not stop the loop's clock; the next one retries
            log.exception("protections: periodic evaluation failed")
        finally:
            self._schedule_check()

    def _schedule_expiry(self, lock: Lock) -> None:
        if lock.id in self._expiry_timers:
            return
        self._expiry_timers[lock.id] = self.clock.call_at(
            lock.end, lambda: self._expired(lock.id), f"protections.expire.{lock.id}"
        )

    def _expired(self, lock_id: int) -> None:
        self._expiry_timers.pop(lock_id, None)
        lock = _lock(locks_db.get_lock(self.store, lock_id))
        if lock is None or lock.unlocked_at is not None:
            return  # lifted by hand: the unlock already told everyone
        self._emit("expired", lock, f"{lock.protection}: lock on {lock.target} ended")

    # -- evaluation ----------------------------------------------------------------------------

    def on_trade_closed(self, trade: ClosedTrade) -> list[Lock]:
        """Evaluate after a trade closed (the caller stores the trade; this stores nothing).

        A trade that cannot anchor a lock is only taken into the window: StoplossGuard counts
        losing stop exits, Cooldown a loss past its threshold and MaxDrawdown a fall of equity,
        so a break-even or winning trade starts none of them (LowProfit, which may anchor on a
        small winner, and Cooldown's ``after_any_exit`` judge every trade). Whatever else
        changed meanwhile is seen at the next evaluation or periodic check.
        """
        if trade.pnl >= 0 and not self._winners_may_lock:
            self.window.add((trade,))
            return []
        return self.evaluate(extra_trades=(trade,))

    def evaluate(
        self, equity: Decimal | None = None, *, extra_trades: tuple[ClosedTrade, ...] = ()
    ) -> list[Lock]:
        """Run every enabled protection now; persist and announce new locks; return them.

        ``equity`` is a broker equity sample (kept in the store). Without samples, equity is
        ``starting_equity`` plus the cumulative realized PnL of the closed trades.
        """
        now = self.clock.now()
        if equity is not None:
            locks_db.record_equity(self.store, now, Decimal(equity))
        active = self.enabled
        if not active:
            return []
        if self.incremental:
            requests = self._requests(now, active, extra_trades)
        else:
            ctx = self.context(now, active, extra_trades)
            requests = [p.evaluate(ctx) for p in active]
        placed = []
        known = self._known
        if len(known) > 4096:  # forget the ended ones (they end, so they never come back)
            known.difference_update([k for k in known if k[3] <= now])
        for mine in requests:
            for request in sorted(mine, key=_order) if len(mine) > 1 else mine:
                identity = (request.protection, request.symbol, request.side, request.end)
                if identity in known:
                    continue
                known.add(identity)
                lock = _lock(locks_db.insert_lock(self.store, request, now))
                if lock is None:
                    continue  # already placed (or lifted by an operator): same evidence
                placed.append(lock)
                self._schedule_expiry(lock)
                self._emit(
                    "locked",
                    lock,
                    f"{lock.protection}: {lock.target} locked until {lock.end.isoformat()} "
                    f"({format_remaining((lock.end - now).total_seconds())}): {lock.reason}",
                )
        return placed

    def _requests(
        self, now: datetime, active: list[Protection], extra_trades: tuple[ClosedTrade, ...]
    ) -> list[list[LockRequest]]:
        """What the incremental states ask for now, per active protection."""
        since = now - max(p.history_needed() for p in active)
        window = self.window
        window.move_to(since)
        window.add(extra_trades)
        states = self.states
        drawdown = states.get(MaxDrawdown.name)
        if isinstance(drawdown, MaxDrawdownState):
            self._sync_samples(drawdown, since)
        return [states[p.name].requests(now, since) for p in active]

    def _sync_samples(self, state: MaxDrawdownState, since: datetime) -> None:
        """Bring the broker equity samples up to date: those stored since the newest held
        (all of the window after a rebuild, or when the newest one's value changed)."""
        tracker = state.broker
        newest = tracker.newest
        if newest is not None and not self._samples_stale:
            rows = locks_db.equity_samples(self.store, newest.at)
            if not rows or rows[0][0] != newest.at or rows[0][1] != newest.equity:
                newest = None  # pruned or overwritten under us: reload
            else:
                tracker.add_each(EquityPoint(at, eq, "broker") for at, eq in rows[1:])
                return
        rows = locks_db.equity_samples(self.store, since)
        tracker.start(None)
        tracker.add_each(EquityPoint(at, eq, "broker") for at, eq in rows)
        self._samples_stale = False

    def context(
        self,
        now: datetime,
        protections: list[Protection] | None = None,
        extra_trades: tuple[ClosedTrade, ...] = (),
    ) -> EvalContext:
        """What the protections see now: the closed trades since the longest lookback (oldest
        first; ``extra_trades`` joined to the stored ones) and the equity history."""
        protections = protections if protections is not None else self.protections
        since = now - max(p.history_needed() for p in protections)
        window = self.window
        window.move_to(since)
        window.add(extra_trades)
        trades = list(window.trades)
        samples = locks_db.equity_samples(self.store, since)
        if samples:
            points = [EquityPoint(at, eq, "broker") for at, eq in samples]
        else:
            points = [EquityPoint(since, window.opening, "trades"), *window.points]
        if points[-1].at < now:  # carry the latest equity to now (a flat step, never a breach)
            points.append(EquityPoint(now, points[-1].equity, points[-1].source))
        return EvalContext(now=now, trades=trades, equity=points)

    # -- queries -------------------------------------------------------------------------------

    def is_locked(self, symbol: str, side: str) -> Lock | None:
        """The active lock that blocks opening ``side`` ("long"/"short") on ``symbol``, if any."""
        if side not in SIDES:
            raise ValueError(f"side must be 'long' or 'short', got {side!r}")
        return _lock(locks_db.matching_lock(self.store, self.clock.now(), symbol, side))

    def active_locks(self) -> list[Lock]:
        return _locks(locks_db.active_locks(self.store, self.clock.now()))

    def history(self, limit: int = 50) -> list[Lock]:
        return _locks(locks_db.lock_history(self.store, limit))

    def status(self) -> list[ProtectionStatus]:
        """Every protection (enabled or not) with its measure, threshold and active locks."""
        now = self.clock.now()
        ctx = self.context(now)
        active = _locks(locks_db.active_locks(self.store, now))
        out = []
        for p in self.protections:
            st = p.status(ctx)
            mine = tuple(lock for lock in active if lock.protection == p.name)
            out.append(
                ProtectionStatus(
                    name=st.name,
                    enabled=st.enabled,
                    config=st.config,
                    measure=st.measure,
                    value=st.value,
                    threshold=st.threshold,
                    tripped=st.tripped,
                    locks=mine,
                )
            )
        return out

    # -- manual unlock -------------------------------------------------------------------------

    def unlock(self, symbol: str | None, all: bool, reason: str, who: str) -> list[Lock]:
        """End active locks early (every lock with ``all``, else those on ``symbol``).

        The same evidence never re-locks (a lock is unique on its end); a new qualifying trade
        does. Returns the locks lifted; each is announced as an "unlocked" event.
        """
        if not all and not symbol:
            raise UsageError(
                "name a SYMBOL to unlock, or pass --all",
                "mqd protections unlock AAPL --reason '...'",
            )
        if not reason or not reason.strip():
            raise UsageError("an unlock needs a --reason", "it is kept with the lock's history")
        lifted = _locks(
            locks_db.unlock_locks(
                self.store,
                self.clock.now(),
                symbol=None if all else symbol,
                all=all,
                who=who,
                reason=reason.strip(),
            )
        )
        for lock in lifted:
            timer = self._expiry_timers.pop(lock.id, None)
            if timer is not None:
                timer.cancel()
            self._emit(
                "unlocked",
                lock,
                f"{lock.protection}: lock on {lock.target} lifted by {who}: {reason.strip()}",
            )
        return lifted

    # -- events --------------------------------------------------------------------------------

    def _emit(self, kind: EventKind, lock: Lock, message: str) -> None:
        (log.warning if kind == "locked" else log.info)("%s", message)
        if self.notify is None:
            return
        event = ProtectionEvent(kind, lock.protection, lock, self.clock.now(), message)
        try:
            self.notify(event)
        except Exception:  # a failed alert must not undo or block the lock itself
            log.exception("protections: notify failed for %s", kind)


__all__ = ["ProtectionManager", "format_remaining"]
