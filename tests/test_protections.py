"""Protections on a BacktestClock with synthetic closed trades and a real SQLite store."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as settings_h
from hypothesis import strategies as st

from mqd_cli.clock import BacktestClock
from mqd_cli.config.loading import loads
from mqd_cli.config.settings import ProtectionsSettings
from mqd_cli.errors import ConfigError, UsageError
from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.orders.trades import ClosedTrade, closed_trades
from mqd_cli.protections.base import lock_end, parse_unlock_at
from mqd_cli.protections.manager import ProtectionManager, format_remaining
from mqd_cli.store import Store
from mqd_cli.store.trades import insert_closed_trade

T0 = datetime(2026, 1, 6, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 New York
_ids = itertools.count(1)


def trade(
    closed_at: datetime,
    pnl: str,
    *,
    symbol: str = "AAPL",
    side: str = "long",
    reason: str = "stop_loss",
    stake: str = "1000",
) -> ClosedTrade:
    qty = Decimal("10")
    entry = Decimal(stake) / qty
    pnl_d = Decimal(pnl)
    exit_ = entry + (pnl_d / qty if side == "long" else -pnl_d / qty)
    return ClosedTrade(
        trade_id=f"t{next(_ids)}",
        symbol=symbol,
        side=side,
        qty=qty,
        entry_price=entry,
        exit_price=exit_,
        opened_at=closed_at - timedelta(minutes=5),
        closed_at=closed_at,
        pnl=pnl_d,
        fees=Decimal("0"),
        exit_reason=reason,
        strategy="test",
    )


def settings(toml: str = "", *, only: str | None = None) -> ProtectionsSettings:
    """Protections from TOML; ``only`` disables every other protection."""
    s = loads(toml).settings.protections
    if only:
        for name in ("stoploss_guard", "max_drawdown", "cooldown", "low_profit"):
            sub = getattr(s, name)
            s = dataclasses.replace(s, **{name: dataclasses.replace(sub, enabled=(name == only))})
    return s


@pytest.fixture
def store(tmp_path):
    st = Store.open(tmp_path / "mqd.db")
    yield st
    st.close()


@pytest.fixture
def clock():
    return BacktestClock(T0)


def close_trade(mgr: ProtectionManager, store: Store, t: ClosedTrade):
    """What the order tracker does: store the trade, then tell the protections."""
    mgr.clock.advance_to(max(mgr.clock.now(), t.closed_at))
    insert_closed_trade(store, t)
    return mgr.on_trade_closed(t)


SLG = """
[protections.stoploss_guard]
trade_limit = 3
lookback = "1h"
stop_duration = "1h"
"""


# -- StoplossGuard -------------------------------------------------------------------------------


def test_stoploss_guard_three_stops_spread_beyond_lookback_no_lock_fourth_inside_locks(
    store, clock
):
    mgr = ProtectionManager(settings(SLG, only="stoploss_guard"), store, clock)
    for minutes in (0, 40, 80):  # any two within 1h, never three
        assert close_trade(mgr, store, trade(T0 + timedelta(minutes=minutes), "-10")) == []
    assert mgr.is_locked("AAPL", "long") is None

    last_exit = T0 + timedelta(minutes=90)
    (lock,) = close_trade(mgr, store, trade(last_exit, "-10", symbol="MSFT"))
    assert lock.scope == "global" and lock.symbol is None and lock.side is None
    assert lock.end == last_exit + timedelta(hours=1)
    assert lock.evidence["count"] == 3
    assert mgr.is_locked("AAPL", "long").id == lock.id
    assert mgr.is_locked("TSLA", "short").id == lock.id

    clock.advance_to(lock.end - timedelta(microseconds=1))
    assert mgr.is_locked("AAPL", "long") is not None
    clock.advance_to(lock.end)
    assert mgr.is_locked("AAPL", "long") is None  # inactive exactly at its end
    assert mgr.active_locks() == []
    assert mgr.evaluate() == []  # re-evaluating the same old trades does not re-lock


def test_stoploss_guard_trade_exactly_lookback_old_is_outside_the_window(store, clock):
    mgr = ProtectionManager(settings(SLG, only="stoploss_guard"), store, clock)
    for minutes in (0, 30, 60):  # the first is exactly 1h before the third
        close_trade(mgr, store, trade(T0 + timedelta(minutes=minutes), "-1"))
    assert mgr.active_locks() == []


def test_stoploss_guard_per_side_locks_only_the_side_that_hit_the_limit(store, clock):
    toml = SLG + "only_per_side = true\n"
    mgr = ProtectionManager(settings(toml, only="stoploss_guard"), store, clock)
    for i, sym in enumerate(("AAPL", "MSFT")):
        close_trade(mgr, store, trade(T0 + timedelta(minutes=i), "-5", symbol=sym, side="short"))
    for i in range(2):
        close_trade(mgr, store, trade(T0 + timedelta(minutes=5 + i), "-5", side="long"))
    assert mgr.active_locks() == []  # 2 long, 2 short: each side below 3
    (lock,) = close_trade(mgr, store, trade(T0 + timedelta(minutes=9), "-5", symbol="NVDA"))
    assert (lock.scope, lock.symbol, lock.side) == ("side", None, "long")
    assert mgr.is_locked("TSLA", "long") is not None
    assert mgr.is_locked("TSLA", "short") is None
    assert "all symbols (long)" in lock.reason


def test_stoploss_guard_per_symbol_locks_only_that_symbol(store, clock):
    mgr = ProtectionManager(
        settings(SLG + "only_per_symbol = true\n", only="stoploss_guard"), store, clock
    )
    for i in range(2):
        close_trade(mgr, store, trade(T0 + timedelta(minutes=i), "-5", symbol="MSFT"))
    for i in range(3):
        close_trade(mgr, store, trade(T0 + timedelta(minutes=5 + i), "-5", symbol="AAPL"))
    (lock,) = mgr.active_locks()
    assert (lock.scope, lock.symbol) == ("symbol", "AAPL")
    assert mgr.is_locked("AAPL", "short") is not None
    assert mgr.is_locked("MSFT", "long") is None


def test_winning_trailing_stop_does_not_count_as_a_stop_loss(store, clock):
    mgr = ProtectionManager(settings(SLG, only="stoploss_guard"), store, clock)
    close_trade(mgr, store, trade(T0, "-5", reason="stop_loss"))
    close_trade(mgr, store, trade(T0 + timedelta(minutes=1), "-5", reason="trailing_stop"))
    winner = trade(T0 + timedelta(minutes=2), "25", reason="trailing_stop")
    assert close_trade(mgr, store, winner) == []
    assert close_trade(mgr, store, trade(T0 + timedelta(minutes=3), "-5", reason="signal")) == []
    (status,) = [s for s in mgr.status() if s.name == "stoploss_guard"]
    assert status.measure == "2 of 3 stop-losses in the last 1h"
    assert not status.tripped
    assert close_trade(mgr, store, trade(T0 + timedelta(minutes=4), "-5", reason="liquidation"))


# -- MaxDrawdown ---------------------------------------------------------------------------------

MDD = """
[protections.max_drawdown]
max_drawdown = 0.20
lookback = "2d"
stop_duration = "24h"
starting_equity = "10000"
"""


def test_one_large_first_loss_trips_equity_drawdown_starting_equity_is_the_peak(store, clock):
    mgr = ProtectionManager(settings(MDD, only="max_drawdown"), store, clock)
    (lock,) = close_trade(mgr, store, trade(T0, "-3000", reason="signal"))
    assert lock.scope == "global"
    assert lock.end == T0 + timedelta(hours=24)
    assert lock.evidence["peak_equity"] == "10000"
    assert lock.evidence["trough_equity"] == "7000"
    assert Decimal(lock.evidence["drawdown"]) == Decimal("0.3")
    assert mgr.is_locked("ANY", "short") is not None


def test_drawdown_below_threshold_does_not_lock_and_status_shows_the_measure(store, clock):
    mgr = ProtectionManager(settings(MDD, only="max_drawdown"), store, clock)
    close_trade(mgr, store, trade(T0, "500", reason="signal"))  # peak 10,500
    assert close_trade(mgr, store, trade(T0 + timedelta(hours=1), "-2000")) == []  # 19.05 %
    (st,) = [s for s in mgr.status() if s.name == "max_drawdown"]
    assert st.measure.startswith("drawdown 19.05% of 20% allowed over the last 2d")
    assert not st.tripped


def test_a_loss_outside_the_lookback_is_ignored(store, clock):
    mgr = ProtectionManager(settings(MDD, only="max_drawdown"), store, clock)
    insert_closed_trade(store, trade(T0, "-3000"))  # closed before the run started
    clock.advance_to(T0 + timedelta(days=3))
    mgr.start()
    assert mgr.active_locks() == []
    # A further -500 from 7,000 is only 7 % below the window's opening equity.
    assert close_trade(mgr, store, trade(clock.now() + timedelta(minutes=1), "-500")) == []
    mgr.stop()


def test_a_later_winning_trade_never_extends_a_drawdown_lock(store, clock):
    mgr = ProtectionManager(settings(MDD, only="max_drawdown"), store, clock)
    (lock,) = close_trade(mgr, store, trade(T0, "-3000"))
    assert close_trade(mgr, store, trade(T0 + timedelta(hours=2), "100", reason="signal")) == []
    assert [lk.end for lk in mgr.active_locks()] == [lock.end]
    clock.advance_to(lock.end)
    assert mgr.evaluate() == []
    assert mgr.is_locked("AAPL", "long") is None


def test_broker_equity_samples_drive_the_drawdown_when_given(store, clock):
    mgr = ProtectionManager(settings(MDD, only="max_drawdown"), store, clock)
    assert mgr.evaluate(equity=Decimal("50000")) == []
    clock.advance(timedelta(minutes=30))
    assert mgr.evaluate(equity=Decimal("45000")) == []  # 10 %
    clock.advance(timedelta(minutes=30))
    (lock,) = mgr.evaluate(equity=Decimal("39000"))  # 22 %
    assert lock.evidence["equity_source"] == "broker"
    assert lock.evidence["peak_equity"] == "50000"


# -- Cooldown ------------------------------------------------------------------------------------

CD = """
[protections.cooldown]
loss_threshold = "500"
stop_duration = "30m"
"""


def test_cooldown_only_after_a_loss_at_least_the_threshold(store, clock):
    mgr = ProtectionManager(settings(CD, only="cooldown"), store, clock)
    assert close_trade(mgr, store, trade(T0, "-499.99")) == []
    assert close_trade(mgr, store, trade(T0 + timedelta(minutes=1), "900", symbol="MSFT")) == []
    (lock,) = close_trade(mgr, store, trade(T0 + timedelta(minutes=2), "-500"))
    assert (lock.scope, lock.symbol) == ("symbol", "AAPL")
    assert lock.end == T0 + timedelta(minutes=32)
    assert mgr.is_locked("MSFT", "long") is None
    assert mgr.is_locked("AAPL", "short") is not None


def test_cooldown_after_any_exit_pauses_on_a_winner_too(store, clock):
    toml = CD + "after_any_exit = true\nonly_per_symbol = false\n"
    mgr = ProtectionManager(settings(toml, only="cooldown"), store, clock)
    (lock,) = close_trade(mgr, store, trade(T0, "10", reason="take_profit"))
    assert lock.scope == "global"


# -- LowProfit -----------------------------------------------------------------------------------

LP = """
[protections.low_profit]
enabled = true
trade_limit = 2
lookback = "1d"
required_profit = 0.0
stop_duration = "1h"
"""


def test_low_profit_is_stake_weighted_small_loser_and_large_winner_net_positive(store, clock):
    mgr = ProtectionManager(settings(LP, only="low_profit"), store, clock)
    close_trade(mgr, store, trade(T0, "100", stake="10000", reason="signal"))  # +1 %
    # -10 % on 100: a sum of ratios says -9 %, the account made +90.
    assert close_trade(mgr, store, trade(T0 + timedelta(minutes=1), "-10", stake="100")) == []
    (st,) = [s for s in mgr.status() if s.name == "low_profit"]
    assert not st.tripped and st.value > 0


def test_low_profit_locks_the_symbol_when_stake_weighted_profit_is_negative(store, clock):
    mgr = ProtectionManager(settings(LP, only="low_profit"), store, clock)
    assert close_trade(mgr, store, trade(T0, "-50", stake="1000")) == []  # 1 trade: too few
    # Net -30 over 2 trades, but a winner never anchors a lock.
    assert close_trade(mgr, store, trade(T0 + timedelta(minutes=1), "20", stake="1000")) == []
    (lock,) = close_trade(mgr, store, trade(T0 + timedelta(minutes=2), "-1", stake="1000"))
    assert (lock.scope, lock.symbol) == ("symbol", "AAPL")
    assert lock.end == T0 + timedelta(minutes=2, hours=1)
    assert mgr.is_locked("MSFT", "long") is None


# -- manager: timer, restart, unlock, events --------------------------------------------------


def test_timer_places_a_lock_without_any_new_trade_and_notifies(store, clock):
    events = []
    slg = settings(SLG, only="stoploss_guard")
    mgr = ProtectionManager(slg, store, clock, notify=events.append)
    mgr.start()
    # The tracker stored the trades but nobody called on_trade_closed.
    for i in range(3):
        insert_closed_trade(store, trade(T0 + timedelta(seconds=i), "-5"))
    assert mgr.is_locked("AAPL", "long") is None
    clock.advance(timedelta(minutes=1))  # the check_interval timer fires
    lock = mgr.is_locked("AAPL", "long")
    assert lock is not None and lock.end == T0 + timedelta(seconds=2, hours=1)
    assert [e.kind for e in events] == ["locked"]
    assert "stoploss_guard" in events[0].message
    clock.advance_to(lock.end)  # the expiry timer announces the end
    assert [e.kind for e in events] == ["locked", "expired"]
    mgr.stop()


def test_locks_survive_a_restart(tmp_path, clock):
    path = tmp_path / "mqd.db"
    store = Store.open(path)
    mgr = ProtectionManager(settings(CD, only="cooldown"), store, clock)
    (lock,) = close_trade(mgr, store, trade(T0, "-800"))
    store.close()

    store2 = Store.open(path)
    clock.advance(timedelta(minutes=10))
    mgr2 = ProtectionManager(settings(CD, only="cooldown"), store2, clock)
    assert mgr2.start() == []  # restored, not duplicated
    restored = mgr2.is_locked("AAPL", "long")
    assert restored is not None and restored.id == lock.id and restored.end == lock.end
    assert restored.reason == lock.reason
    mgr2.stop()
    store2.close()


def test_unlock_records_who_and_why_and_the_same_evidence_never_relocks(store, clock):
    events = []
    mgr = ProtectionManager(settings(CD, only="cooldown"), store, clock, notify=events.append)
    close_trade(mgr, store, trade(T0, "-800"))
    clock.advance(timedelta(minutes=5))
    (lifted,) = mgr.unlock("AAPL", False, "feed glitch, checked", "alice")
    assert (lifted.unlocked_by, lifted.unlock_reason) == ("alice", "feed glitch, checked")
    assert lifted.unlocked_at == clock.now()
    assert mgr.is_locked("AAPL", "long") is None
    assert mgr.evaluate() == []  # same trade, same end: stays unlocked
    assert [e.kind for e in events] == ["locked", "unlocked"]
    # A new large loss is new evidence.
    assert close_trade(mgr, store, trade(clock.now(), "-900"))
    assert mgr.history()[1].unlocked_by == "alice"


def test_unlock_needs_a_symbol_or_all_and_a_reason(store, clock):
    mgr = ProtectionManager(settings(), store, clock)
    with pytest.raises(UsageError):
        mgr.unlock(None, False, "why", "bob")
    with pytest.raises(UsageError):
        mgr.unlock("AAPL", False, "  ", "bob")


def test_unlock_all_ends_global_and_symbol_locks(store, clock):
    mgr = ProtectionManager(settings(MDD + CD), store, clock)
    close_trade(mgr, store, trade(T0, "-3000"))
    assert {lk.protection for lk in mgr.active_locks()} == {"max_drawdown", "cooldown"}
    assert len(mgr.unlock(None, True, "reset", "bob")) == 2
    assert mgr.active_locks() == []


def test_is_locked_rejects_an_unknown_side(store, clock):
    with pytest.raises(ValueError, match="side"):
        ProtectionManager(settings(), store, clock).is_locked("AAPL", "buy")


def test_a_failing_notify_does_not_lose_the_lock(store, clock):
    def boom(event):
        raise RuntimeError("discord down")

    mgr = ProtectionManager(settings(CD, only="cooldown"), store, clock, notify=boom)
    assert close_trade(mgr, store, trade(T0, "-800"))
    assert mgr.is_locked("AAPL", "long") is not None


# -- unlock_at -----------------------------------------------------------------------------------


def test_unlock_at_friday_exit_unlocks_monday_across_the_weekend(store, clock):
    toml = CD + 'unlock_at = "09:25"\n'
    mgr = ProtectionManager(settings(toml, only="cooldown"), store, clock)
    friday = datetime(2026, 1, 9, 15, 0, tzinfo=EXCHANGE_TZ)
    (lock,) = close_trade(mgr, store, trade(friday.astimezone(UTC), "-800"))
    assert lock.end == datetime(2026, 1, 12, 9, 25, tzinfo=EXCHANGE_TZ)
    clock.advance_to(datetime(2026, 1, 12, 9, 24, 59, tzinfo=EXCHANGE_TZ))
    assert mgr.is_locked("AAPL", "long") is not None
    clock.advance_to(datetime(2026, 1, 12, 9, 25, tzinfo=EXCHANGE_TZ))
    assert mgr.is_locked("AAPL", "long") is None


def test_unlock_at_skips_good_friday_and_the_weekend():
    thursday = datetime(2026, 4, 2, 15, 30, tzinfo=EXCHANGE_TZ)
    end = lock_end(thursday.astimezone(UTC), timedelta(hours=1), parse_unlock_at("09:25"))
    assert end == datetime(2026, 4, 6, 9, 25, tzinfo=EXCHANGE_TZ)
    # Wednesday before Thanksgiving -> Friday (an early-close day is still a trading day).
    wed = datetime(2026, 11, 25, 11, 0, tzinfo=EXCHANGE_TZ)
    assert lock_end(wed, timedelta(0), parse_unlock_at("09:25")) == datetime(
        2026, 11, 27, 9, 25, tzinfo=EXCHANGE_TZ
    )


def test_unlock_at_is_new_york_wall_time_across_the_dst_change():
    friday = datetime(2026, 3, 6, 20, 0, tzinfo=UTC)  # DST starts Sunday March 8
    end = lock_end(friday, timedelta(0), parse_unlock_at("09:25"))
    assert end == datetime(2026, 3, 9, 13, 25, tzinfo=UTC)  # 09:25 EDT


# -- config ----------------------------------------------------------------------------------


def test_unknown_protection_key_is_an_error_naming_its_path():
    with pytest.raises(ConfigError) as err:
        loads('[protections.stoploss_guard]\nlookback_period = "60m"\n')
    (line,) = err.value.lines()
    assert line.startswith("protections.stoploss_guard.lookback_period: unknown key")
    assert "did you mean 'protections.stoploss_guard.lookback'" in line


def test_unknown_protection_table_is_an_error_naming_its_path():
    with pytest.raises(ConfigError, match="protections.profit_limit: unknown key"):
        loads("[protections.profit_limit]\nenabled = true\n")


@pytest.mark.parametrize("bad", ["55:102", "9:25", "24:00", "noon"])
def test_bad_unlock_at_is_an_error_naming_its_path(bad):
    with pytest.raises(ConfigError, match="protections.cooldown.unlock_at: expected HH:MM"):
        loads(f'[protections.cooldown]\nunlock_at = "{bad}"\n')


def test_out_of_range_drawdown_is_an_error():
    with pytest.raises(ConfigError, match="protections.max_drawdown.max_drawdown: must be at most"):
        loads("[protections.max_drawdown]\nmax_drawdown = 15\n")


# -- trades and their store --------------------------------------------------------------------


def test_closed_trade_stake_and_profit_ratio():
    t = trade(T0, "-10", stake="100")
    assert t.stake == Decimal("100")
    assert t.profit_ratio == Decimal("-0.1")


def test_closed_trade_refuses_naive_times_and_floats():
    t = trade(T0, "1")
    with pytest.raises(ValueError, match="aware"):
        dataclasses.replace(t, closed_at=datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="Decimal"):
        dataclasses.replace(t, pnl=1.5)
    with pytest.raises(ValueError, match="side"):
        dataclasses.replace(t, side="buy")


def test_insert_closed_trade_is_idempotent_and_queries_filter(store):
    a = trade(T0, "-1.005", symbol="AAPL")
    b = trade(T0 + timedelta(hours=1), "2", symbol="MSFT", side="short")
    assert insert_closed_trade(store, a) is True
    assert insert_closed_trade(store, a) is False
    insert_closed_trade(store, b)
    assert closed_trades(store) == [a, b]
    assert closed_trades(store, since=T0 + timedelta(minutes=1)) == [b]
    assert closed_trades(store, symbol="AAPL") == [a]
    assert closed_trades(store)[0].pnl == Decimal("-1.005")  # exact Decimal round trip


def test_format_remaining():
    assert format_remaining(0) == "0s"
    assert format_remaining(3725) == "1h 2m 5s"
    assert format_remaining(90061) == "1d 1h 1m 1s"


@given(
    st.lists(st.tuples(st.integers(0, 600), st.integers(1, 20_000)), min_size=1, max_size=40),
    st.integers(1, 300),
)
def test_window_peaks_match_a_brute_force_peak_per_window(raw, lookback_min):
    from mqd_cli.protections.base import EquityPoint
    from mqd_cli.protections.max_drawdown import window_peaks

    pts = [EquityPoint(T0 + timedelta(minutes=m), Decimal(eq), "trades") for m, eq in sorted(raw)]
    lookback = timedelta(minutes=lookback_min)
    for i, peak in enumerate(window_peaks(pts, lookback)):
        opener = max([j for j in range(i + 1) if pts[j].at <= pts[i].at - lookback], default=0)
        assert peak.equity == max(p.equity for p in pts[opener : i + 1])


def test_equity_samples_are_pruned_but_the_window_opener_is_kept(store, clock):
    from mqd_cli.store.protections import equity_samples, prune_equity, record_equity

    for h in range(5):
        record_equity(store, T0 + timedelta(hours=h), Decimal(1000 + h))
    assert prune_equity(store, T0 + timedelta(hours=2, minutes=30)) == 2
    assert [eq for _, eq in equity_samples(store, T0)] == [
        Decimal(1002),
        Decimal(1003),
        Decimal(1004),
    ]
    assert equity_samples(store, T0 + timedelta(hours=3, minutes=1))[0][1] == Decimal(1003)


# -- the incremental evaluation window -----------------------------------------------------------


def _ctx(ctx):
    return ([t.trade_id for t in ctx.trades], [(p.at, p.equity) for p in ctx.equity])


@settings_h(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6 * 24 * 60),  # closed_at, minutes after T0
            st.integers(-900, 600),  # pnl
            st.booleans(),  # told through on_trade_closed (else stored by another path)
            st.integers(0, 12 * 60),  # clock step before it, minutes
        ),
        max_size=25,
    )
)
def test_incremental_context_equals_one_rebuilt_from_the_store(tmp_path_factory, events):
    store = Store.open(tmp_path_factory.mktemp("w") / "mqd.db")
    clock = BacktestClock(T0)
    mgr = ProtectionManager(settings(), store, clock)
    newest = 0
    for minute, pnl, told, step in events:
        clock.advance(timedelta(minutes=step))
        if not told:  # other paths store in time order (late ones: next test)
            minute = max(minute, newest)
        newest = max(newest, minute)
        t = trade(T0 + timedelta(minutes=minute), str(pnl))
        insert_closed_trade(store, t)
        if told:
            mgr.on_trade_closed(t)
        else:
            mgr.evaluate()
        fresh = ProtectionManager(settings(), store, clock)
        assert _ctx(mgr.context(clock.now(), mgr.enabled)) == _ctx(
            fresh.context(clock.now(), fresh.enabled)
        )
    store.close()


def test_evaluating_a_closed_trade_reads_only_new_trades_not_the_history(store, clock, monkeypatch):
    from mqd_cli.store import trades as trades_db

    mgr = ProtectionManager(settings(), store, clock)
    read = []
    real = trades_db.closed_trade_rows
    monkeypatch.setattr(
        trades_db, "closed_trade_rows", lambda *a, **kw: read.append(n := real(*a, **kw)) or n
    )
    rebuilds = []
    real_before = trades_db.realized_pnl_before
    monkeypatch.setattr(
        trades_db,
        "realized_pnl_before",
        lambda *a: rebuilds.append(1) or real_before(*a),
    )
    for i in range(300):
        close_trade(mgr, store, trade(T0 + timedelta(minutes=30 * i), "-5"))
    assert len(rebuilds) == 1  # the window was built once, then kept up to date
    assert len(read) == 300 and max(len(rows) for rows in read[1:]) <= 2  # new and newest
    ctx = mgr.context(clock.now(), mgr.enabled)
    assert ctx.equity[0].equity == Decimal("100000") - 5 * (300 - len(ctx.trades))


def test_a_small_winner_below_the_required_profit_still_anchors_a_low_profit_lock(store, clock):
    toml = LP.replace("required_profit = 0.0", "required_profit = 0.05")
    mgr = ProtectionManager(settings(toml, only="low_profit"), store, clock)
    assert close_trade(mgr, store, trade(T0, "1")) == []  # +0.1 %, one trade: too few
    (lock,) = close_trade(mgr, store, trade(T0 + timedelta(minutes=1), "1"))
    assert lock.end == T0 + timedelta(minutes=1, hours=1)


def test_a_winner_is_taken_into_the_window_without_an_evaluation(store, clock, monkeypatch):
    mgr = ProtectionManager(settings(), store, clock)
    close_trade(mgr, store, trade(T0, "-10"))
    monkeypatch.setattr(mgr, "evaluate", lambda **kw: pytest.fail("evaluated a winner"))
    close_trade(mgr, store, trade(T0 + timedelta(minutes=1), "25"))
    assert [t.pnl for t in mgr.window.trades] == [-10, 25]


def test_trade_stored_out_of_time_order_by_another_path_counts_at_the_next_check(store, clock):
    mgr = ProtectionManager(settings(CD, only="cooldown"), store, clock)
    mgr.start()
    close_trade(mgr, store, trade(T0 + timedelta(minutes=5), "10"))
    insert_closed_trade(store, trade(T0 + timedelta(minutes=1), "-800"))  # reconcile, later
    clock.advance(timedelta(minutes=2))  # the periodic check rebuilds from the store
    lock = mgr.is_locked("AAPL", "long")
    assert lock is not None and lock.end == T0 + timedelta(minutes=31)
    mgr.stop()
