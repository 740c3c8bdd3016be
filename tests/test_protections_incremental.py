"""The incremental protections place exactly the locks of the straightforward evaluation.

``ProtectionManager(incremental=False)`` runs ``Protection.evaluate`` over the whole context
on every evaluation (the reference); the default manager runs the protections' incremental
states. Both are driven through the same random histories (symbols, sides, PnL, exit reasons,
ties at one instant in any trade_id order, trades stored late, broker equity samples, periodic
rebuilds, unlocks and restarts) with random settings, and must agree request for request at
every step and lock for lock in their stores.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as settings_h
from hypothesis import strategies as st

from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import ProtectionsSettings
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.protections.base import EquityPoint, EvalContext, LockRequest
from mqd_cli.protections.manager import ProtectionManager
from mqd_cli.protections.max_drawdown import DrawdownTracker, MaxDrawdown
from mqd_cli.store import Store
from mqd_cli.store.protections import lock_history
from mqd_cli.store.trades import insert_closed_trade

T0 = datetime(2026, 1, 8, 14, 0, tzinfo=UTC)  # a Thursday: unlock_at crosses the weekend
NAMES = ("stoploss_guard", "max_drawdown", "cooldown", "low_profit")
REASONS = ("stop_loss", "trailing_stop", "liquidation", "signal", "take_profit")

# Durations on the same grid as the gaps between trades, so trades exactly a lookback old occur.
minutes = st.sampled_from([1, 2, 3, 5, 20, 45, 90, 240]).map(lambda m: timedelta(minutes=m))
unlock_at = st.sampled_from(["", "", "", "09:25", "16:00"])


@st.composite
def protection_settings(draw) -> ProtectionsSettings:
    base = ProtectionsSettings()
    enabled = draw(st.lists(st.booleans(), min_size=4, max_size=4).filter(any))
    return dataclasses.replace(
        base,
        stoploss_guard=dataclasses.replace(
            base.stoploss_guard,
            enabled=enabled[0],
            trade_limit=draw(st.integers(1, 4)),
            lookback=draw(minutes),
            stop_duration=draw(minutes),
            only_per_symbol=draw(st.booleans()),
            only_per_side=draw(st.booleans()),
            unlock_at=draw(unlock_at),
        ),
        max_drawdown=dataclasses.replace(
            base.max_drawdown,
            enabled=enabled[1],
            max_drawdown=draw(st.sampled_from([0.001, 0.01, 0.03, 0.08])),
            lookback=draw(minutes),
            stop_duration=draw(minutes),
            starting_equity=Decimal(10_000),
            unlock_at=draw(unlock_at),
        ),
        cooldown=dataclasses.replace(
            base.cooldown,
            enabled=enabled[2],
            loss_threshold=Decimal(draw(st.sampled_from([0, 50, 200, 400]))),
            after_any_exit=draw(st.booleans()),
            stop_duration=draw(minutes),
            only_per_symbol=draw(st.booleans()),
            unlock_at=draw(unlock_at),
        ),
        low_profit=dataclasses.replace(
            base.low_profit,
            enabled=enabled[3],
            trade_limit=draw(st.integers(1, 4)),
            lookback=draw(minutes),
            required_profit=draw(st.sampled_from([-0.05, 0.0, 0.01, 0.2])),
            stop_duration=draw(minutes),
            unlock_at=draw(unlock_at),
        ),
    )


trade_event = st.tuples(
    st.just("trade"),
    st.sampled_from([0, 0, 1, 2, 5, 20, 90]),  # minutes after the newest close (0: same instant)
    st.sampled_from(["AAPL", "MSFT", "TSLA"]),
    st.sampled_from(["long", "short"]),
    st.integers(-450, 300),  # pnl
    st.sampled_from(REASONS),
    st.sampled_from(["100", "1000", "5000"]),  # stake
    st.integers(0, 999),  # trade id: the order of ties is random
    st.sampled_from(["told", "told", "told", "stored", "late"]),
)
events = st.lists(
    st.one_of(
        trade_event,
        trade_event,
        trade_event,
        st.tuples(st.just("tick"), st.integers(1, 300)),
        st.tuples(st.just("equity"), st.integers(8_000, 11_000)),
        st.tuples(st.just("check")),
        st.tuples(st.just("restart")),
        st.tuples(st.just("unlock")),
    ),
    min_size=15,
    max_size=80,
)


def _trade(closed_at: datetime, symbol, side, pnl, reason, stake, n: int) -> ClosedTrade:
    qty = Decimal(10)
    entry = Decimal(stake) / qty
    pnl_d = Decimal(pnl)
    return ClosedTrade(
        trade_id=f"t{n:04d}",
        symbol=symbol,
        side=side,
        qty=qty,
        entry_price=entry,
        exit_price=entry + (pnl_d / qty if side == "long" else -pnl_d / qty),
        opened_at=closed_at - timedelta(minutes=3),
        closed_at=closed_at,
        pnl=pnl_d,
        fees=Decimal(0),
        exit_reason=reason,
        strategy="prop",
    )


def _sorted(requests: list[LockRequest]) -> list[LockRequest]:
    return sorted(requests, key=lambda r: (r.anchor, r.symbol or "", r.side or "", r.end))


def _requests_both(inc: ProtectionManager, ref: ProtectionManager) -> tuple[list, list]:
    """What each evaluation would ask for now (incremental states, straightforward)."""
    now = inc.clock.now()
    active = inc.enabled
    mine = [_sorted(r) for r in inc._requests(now, active, ())]
    ctx = ref.context(now, ref.enabled)
    theirs = [_sorted(p.evaluate(ctx)) for p in ref.enabled]
    return mine, theirs


def _locks(store: Store) -> list[dict]:
    return lock_history(store, 100_000)


def _only(name: str, **changes) -> ProtectionsSettings:
    base = ProtectionsSettings()
    out = base
    for n in NAMES:
        sub = getattr(base, n)
        out = dataclasses.replace(out, **{n: dataclasses.replace(sub, enabled=(n == name))})
    sub = dataclasses.replace(getattr(out, name), **changes)
    return dataclasses.replace(out, **{name: sub})


_EXIT = ("trade", 0, "AAPL", "long", -5, "stop_loss", "100")


@settings_h(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(protection_settings(), events)
@example(  # a stop exit exactly one lookback old is out of the window
    _only("stoploss_guard", trade_limit=2, lookback=timedelta(minutes=1)),
    [(*_EXIT, 0, "told"), ("trade", 1, *_EXIT[2:], 1, "told")],
)
@example(  # three exits at one instant, told in falling trade_id order
    _only("stoploss_guard", trade_limit=3, only_per_symbol=True),
    [(*_EXIT, 9, "told"), (*_EXIT, 5, "told"), (*_EXIT, 1, "told"), ("tick", 5)],
)
def test_incremental_protections_place_the_same_locks_as_the_straightforward_evaluation(
    tmp_path_factory, settings, history
):
    replay(tmp_path_factory.mktemp("inc"), settings, history)


def replay(folder, settings: ProtectionsSettings, history: list[tuple]) -> None:
    """Drive both managers through ``history``; assert they agree after every event."""
    stores = {"inc": Store.open(folder / "inc.db"), "ref": Store.open(folder / "ref.db")}
    clock = BacktestClock(T0)
    mgrs = {
        "inc": ProtectionManager(settings, stores["inc"], clock),
        "ref": ProtectionManager(settings, stores["ref"], clock, incremental=False),
    }
    newest = T0
    seen: set[str] = set()
    try:
        for event in history:
            kind = event[0]
            if kind == "trade":
                _, step, symbol, side, pnl, reason, stake, n, how = event
                if f"t{n:04d}" in seen:
                    continue
                seen.add(f"t{n:04d}")
                if how == "late":  # stored by another path, closed before the newest
                    closed = newest - timedelta(minutes=step + 1)
                else:
                    closed = newest + timedelta(minutes=step)
                    newest = closed
                clock.advance_to(max(clock.now(), closed))
                t = _trade(closed, symbol, side, pnl, reason, stake, n)
                for name, mgr in mgrs.items():
                    insert_closed_trade(stores[name], t)
                    if how == "told":
                        mgr.on_trade_closed(t)
                    else:
                        mgr.evaluate()
            elif kind == "tick":
                clock.advance(timedelta(minutes=event[1]))
                newest = max(newest, clock.now() - timedelta(minutes=30))
                for mgr in mgrs.values():
                    mgr.evaluate()
            elif kind == "equity":
                clock.advance(timedelta(minutes=1))
                for mgr in mgrs.values():
                    mgr.evaluate(equity=Decimal(event[1]))
            elif kind == "check":  # what the periodic check does
                for mgr in mgrs.values():
                    mgr.invalidate()
                    mgr.evaluate()
            elif kind == "restart":
                # A trade stored late is seen at the next rebuild (the periodic check); a
                # restart rebuilds too, and must come to the state the running one rebuilds.
                mgrs["inc"].invalidate()
                running = mgrs["inc"]._requests(clock.now(), mgrs["inc"].enabled, ())
                mgrs = {
                    "inc": ProtectionManager(settings, stores["inc"], clock),
                    "ref": ProtectionManager(settings, stores["ref"], clock, incremental=False),
                }
                restarted = mgrs["inc"]._requests(clock.now(), mgrs["inc"].enabled, ())
                assert [_sorted(r) for r in restarted] == [_sorted(r) for r in running]
            elif kind == "unlock":
                for mgr in mgrs.values():
                    mgr.unlock(None, True, "test", "tester")
            mine, theirs = _requests_both(mgrs["inc"], mgrs["ref"])
            assert mine == theirs, event
            assert _locks(stores["inc"]) == _locks(stores["ref"]), event
    finally:
        for s in stores.values():
            s.close()


@settings_h(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 0, 1, 3, 10]), st.integers(8_000, 11_000)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 60),
    st.sampled_from([0.001, 0.02, 0.05]),
    st.integers(0, 40),
)
def test_drawdown_tracker_finds_the_breach_evaluate_finds_at_every_point(
    raw, lookback_min, threshold, stop_min
):
    """Points fed as instants (several at one instant, the tail replaced as it grows) give
    the same lock as ``MaxDrawdown.evaluate`` over the whole series, after every point."""
    base = ProtectionsSettings().max_drawdown
    protection = MaxDrawdown(
        dataclasses.replace(
            base,
            max_drawdown=threshold,
            lookback=timedelta(minutes=lookback_min),
            stop_duration=timedelta(minutes=stop_min + 1),
        )
    )
    state = protection.state()
    opener = EquityPoint(T0, Decimal(10_000), "trades")
    state.reset(opener)
    points = [opener]
    at = T0
    for step, equity in raw:
        at += timedelta(minutes=step)
        points.append(EquityPoint(at, Decimal(equity), "trades"))
        state.trades.add([p for p in points[1:] if p.at == at])
        for now in (at, at + timedelta(minutes=stop_min)):
            carry = [EquityPoint(now, points[-1].equity, "trades")] if at < now else []
            ctx = EvalContext(now=now, trades=[], equity=[*points, *carry])
            assert state.requests(now, T0) == protection.evaluate(ctx)


def test_drawdown_tracker_refuses_a_point_before_the_newest():
    tracker = DrawdownTracker(timedelta(hours=1), Decimal("0.1"))
    tracker.add([EquityPoint(T0, Decimal(100), "broker")])
    tracker.add([EquityPoint(T0 + timedelta(minutes=5), Decimal(90), "broker")])
    with pytest.raises(ValueError, match="before"):
        tracker.add([EquityPoint(T0, Decimal(80), "broker")])
