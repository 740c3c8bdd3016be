"""ProtectionManager: evaluates every protection and answers "may this symbol trade?".

Evaluation runs at start-up, when a trade closes, and on a timer (every ``check_interval``),
so a lock starts even when the trade reached the store by another path and every protection
sees the same store. Locks live only in the store: ``is_locked`` reads it, so an unlock done
by ``mqd protections unlock`` in another process takes effect at the next check, and locks
survive restarts. A lock is inactive exactly at its end, on any clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from mqd_cli.clock import Clock, Timer
from mqd_cli.config import ProtectionsSettings
from mqd_cli.errors import UsageError
from mqd_cli.protections.base import (
    EquityPoint,
    EvalContext,
    Lock,
    Protection,
    ProtectionEvent,
    ProtectionStatus,
)
from mqd_cli.protections.cooldown import Cooldown
from mqd_cli.protections.low_profit import LowProfit
from mqd_cli.protections.max_drawdown import MaxDrawdown
from mqd_cli.protections.stoploss_guard import StoplossGuard
from mqd_cli.store import Store
from mqd_cli.store import protections as locks_db
from mqd_cli.store import trades as trades_db
from mqd_cli.trades import SIDES, ClosedTrade

log = logging.getLogger("mqd.protections")


def format_remaining(seconds: float) -> str:
    """``3725`` -> ``"1h 2m 5s"``; ``0`` -> ``"0s"``."""
    secs = max(0, int(seconds))
    days, secs = divmod(secs, 86400)
    hours, secs = divmod(secs, 3600)
    mins, secs = divmod(secs, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (mins, "m"), (secs, "s")) if v]
    return " ".join(parts) or "0s"


class ProtectionManager:
    """All configured protections over one store and one clock."""

    def __init__(
        self,
        settings: ProtectionsSettings,
        store: Store,
        clock: Clock,
        notify: Callable[[ProtectionEvent], None] | None = None,
    ):
        self.settings = settings
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

    @property
    def enabled(self) -> list[Protection]:
        return [p for p in self.protections if p.enabled]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> list[Lock]:
        """Restore persisted locks, evaluate once, and start the periodic check (once)."""
        if self._timer is not None:
            return []
        for lock in locks_db.active_locks(self.store, self.clock.now()):
            self._schedule_expiry(lock)
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

    def _schedule_check(self) -> None:
        self._timer = self.clock.call_later(
            self.settings.check_interval.total_seconds(), self._check, "protections.check"
        )

    def _check(self) -> None:
        try:
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
        lock = locks_db.get_lock(self.store, lock_id)
        if lock is None or lock.unlocked_at is not None:
            return  # lifted by hand: the unlock already told everyone
        self._emit("expired", lock, f"{lock.protection}: lock on {lock.target} ended")

    # -- evaluation ----------------------------------------------------------------------------

    def on_trade_closed(self, trade: ClosedTrade) -> list[Lock]:
        """Evaluate after a trade closed (the caller stores the trade; this stores nothing)."""
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
        ctx = self.context(now, active, extra_trades)
        placed = []
        for protection in active:
            for request in protection.evaluate(ctx):
                lock = locks_db.insert_lock(self.store, request, now)
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

    def context(
        self,
        now: datetime,
        protections: list[Protection] | None = None,
        extra_trades: tuple[ClosedTrade, ...] = (),
    ) -> EvalContext:
        protections = protections if protections is not None else self.protections
        since = now - max(p.history_needed() for p in protections)
        trades = trades_db.closed_trades(self.store, since=since)
        known = {t.trade_id for t in trades}
        extra = [t for t in extra_trades if t.trade_id not in known and t.closed_at >= since]
        if extra:
            trades = sorted(trades + extra, key=lambda t: (t.closed_at, t.trade_id))
        return EvalContext(now=now, trades=trades, equity=self._equity(now, since, trades))

    def _equity(
        self, now: datetime, since: datetime, trades: list[ClosedTrade]
    ) -> list[EquityPoint]:
        samples = locks_db.equity_samples(self.store, since)
        if samples:
            points = [EquityPoint(at, eq, "broker") for at, eq in samples]
        else:
            equity = self.settings.max_drawdown.starting_equity + trades_db.realized_pnl_before(
                self.store, since
            )
            points = [EquityPoint(since, equity, "trades")]
            for t in trades:
                equity += t.pnl
                points.append(EquityPoint(t.closed_at, equity, "trades"))
        if points[-1].at < now:  # carry the latest equity to now (a flat step, never a breach)
            points.append(EquityPoint(now, points[-1].equity, points[-1].source))
        return points

    # -- queries -------------------------------------------------------------------------------

    def is_locked(self, symbol: str, side: str) -> Lock | None:
        """The active lock that blocks opening ``side`` ("long"/"short") on ``symbol``, if any."""
        if side not in SIDES:
            raise ValueError(f"side must be 'long' or 'short', got {side!r}")
        return locks_db.matching_lock(self.store, self.clock.now(), symbol, side)

    def active_locks(self) -> list[Lock]:
        return locks_db.active_locks(self.store, self.clock.now())

    def history(self, limit: int = 50) -> list[Lock]:
        return locks_db.lock_history(self.store, limit)

    def status(self) -> list[ProtectionStatus]:
        """Every protection (enabled or not) with its measure, threshold and active locks."""
        now = self.clock.now()
        ctx = self.context(now)
        active = locks_db.active_locks(self.store, now)
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
        lifted = locks_db.unlock_locks(
            self.store,
            self.clock.now(),
            symbol=None if all else symbol,
            all=all,
            who=who,
            reason=reason.strip(),
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

    def _emit(self, kind: str, lock: Lock, message: str) -> None:
        (log.warning if kind == "locked" else log.info)("%s", message)
        if self.notify is None:
            return
        event = ProtectionEvent(kind, lock.protection, lock, self.clock.now(), message)
        try:
            self.notify(event)
        except Exception:  # a failed alert must not undo or block the lock itself
            log.exception("protections: notify failed for %s", kind)


__all__ = ["ProtectionManager", "format_remaining"]
