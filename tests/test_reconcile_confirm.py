"""Reconcile beside a running loop: orders in flight, the choice of broker reading, and the
confirmation by a second look (pure parts first, then `check` over real SQLite files and the
simulated broker, with a stream that lags like a real one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from orders_support import T0, D, intent, report

from mqd_cli.clock import BacktestClock
from mqd_cli.model import AccountReport, OrderStatus, PositionReport, PositionSide, Side
from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.reconcile import apply as rc_apply
from mqd_cli.reconcile import collect as rc_collect
from mqd_cli.reconcile import diff as rc_diff
from mqd_cli.reconcile import model as rc_model
from mqd_cli.store import Store

S = OrderStatus
NOW = T0 + timedelta(hours=1)


def local(cid="c1", status=S.NEW, filled="0", avg=None, *, side=Side.BUY, symbol="AAPL"):
    at = NOW - timedelta(hours=1)
    return rc_model.LocalOrder(
        client_order_id=cid,
        broker_id=f"id-{cid}",
        symbol=symbol,
        side=side,
        status=status,
        filled_qty=D(filled),
        avg_price=None if avg is None else D(avg),
        created_at=at,
        updated_at=at,
        is_open=status.is_open,
    )


def pos(symbol, qty) -> PositionReport:
    return PositionReport(
        symbol, D(qty), D(10), PositionSide.LONG if D(qty) > 0 else PositionSide.SHORT
    )


def account(cash="1000") -> AccountReport:
    return AccountReport("a", "PA1", "ACTIVE", cash=D(cash), equity=D(cash))


def finding(kind, subject, local="l", broker="b", *, detail="", difference=None, tol=None):
    data = {}
    if difference is not None:
        data["difference"] = D(difference)
    if tol is not None:
        data["tolerance"] = D(tol)
    return rc_model.Finding(
        kind=kind,
        subject=subject,
        symbol="",
        local=local,
        broker=broker,
        action="review",
        detail=detail,
        data=data,
    )


def looked(*findings, unchecked=()) -> rc_model.ReconcileReport:
    return rc_model.ReconcileReport(
        checked_at=NOW,
        findings=tuple(findings),
        orders_checked=1,
        broker_orders=1,
        lookups=0,
        unchecked=tuple(unchecked),
    )


# -- same discrepancy ------------------------------------------------------------------------------


def test_same_discrepancy_needs_the_same_kind_subject_and_values():
    a = finding("status_drift", "c1", "new", "filled")
    assert rc_diff.same_discrepancy(a, finding("status_drift", "c1", "new", "filled"))
    assert not rc_diff.same_discrepancy(a, finding("status_drift", "c1", "new", "canceled"))
    assert not rc_diff.same_discrepancy(a, finding("status_drift", "c2", "new", "filled"))
    assert not rc_diff.same_discrepancy(a, finding("fill_drift", "c1", "new", "filled"))
    assert not rc_diff.same_discrepancy(a, finding("status_drift", "c1", "accepted", "filled"))


def test_positions_compare_by_difference_and_cash_within_its_tolerance():
    # The loop traded 1 share between the looks; 7 shares are still unexplained.
    assert rc_diff.same_discrepancy(
        finding("position_drift", "SPY", "0", "7", difference="7"),
        finding("position_drift", "SPY", "1", "8", difference="7"),
    )
    assert not rc_diff.same_discrepancy(
        finding("position_drift", "SPY", "0", "7", difference="7"),
        finding("position_drift", "SPY", "0", "6", difference="6"),
    )
    assert rc_diff.same_discrepancy(
        finding("cash_drift", "account", difference="500.40", tol="1"),
        finding("cash_drift", "account", difference="500.00", tol="1"),
    )
    assert not rc_diff.same_discrepancy(
        finding("cash_drift", "account", difference="500", tol="1"),
        finding("cash_drift", "account", difference="-500", tol="1"),
    )


# -- confirm ---------------------------------------------------------------------------------------


def test_one_look_is_its_own_verdict():
    r = looked(finding("orphan", "x"))
    assert rc_diff.confirm([r]) is r


def test_only_what_every_look_found_is_reported():
    real = finding("orphan", "by-hand", "unknown", "new")
    first = looked(real, finding("status_drift", "c7", "pending_new", "filled"))
    second = looked(finding("position_drift", "AAPL", "1", "0", difference="-1"), real)
    r = rc_diff.confirm([first, second])
    assert r.findings == (real,) and r.looks == 2 and r.unconfirmed == 2
    assert r.findings[0] is second.findings[1]  # the newest look's finding (for --apply)


def test_a_shadow_one_look_could_not_verify_stays_unverified():
    shadow = rc_model.Finding(
        kind="shadow",
        subject="c1",
        symbol="AAPL",
        local="new",
        broker="not found",
        action="mark canceled",
        detail="404",
    )
    unverified = rc_model.Finding(
        kind="unverified",
        subject="c1",
        symbol="AAPL",
        local="new",
        broker="lookup failed",
        action="run again",
    )
    (f,) = rc_diff.confirm([looked(shadow), looked(unverified)]).findings
    assert f.kind == "unverified"
    (f,) = rc_diff.confirm([looked(unverified), looked(shadow)]).findings
    assert f.kind == "unverified"
    (f,) = rc_diff.confirm([looked(shadow), looked(shadow)]).findings
    assert f.kind == "shadow"


def test_unchecked_items_of_every_look_are_kept():
    r = rc_diff.confirm([looked(unchecked=["position AAPL: x"]), looked(unchecked=["cash: y"])])
    assert r.unchecked == ("position AAPL: x", "cash: y") and r.in_sync


_STATUSES = ["new", "accepted", "partially_filled", "held"]


def _discrepancy(kind: str, subject: int, value: int, noise: int) -> rc_model.Finding:
    """One discrepancy, identified by (kind, subject, value); ``noise`` moves what two looks
    may legitimately see differently (for positions and cash: both sides, not their gap)."""
    cid = f"c{subject}"
    if kind == "orphan":
        return finding(kind, cid, "unknown", _STATUSES[value])
    if kind == "status_drift":
        return finding(kind, cid, "new", _STATUSES[value])
    if kind == "fill_drift":
        return finding(kind, cid, "0", str(value + 1), detail=f"missing {value + 1}")
    if kind == "shadow":
        return finding(kind, cid, _STATUSES[value], "not found")
    if kind == "position_drift":
        sym = f"S{subject}"
        return finding(kind, sym, str(noise), str(noise + value + 1), difference=value + 1)
    # cash_drift: differences 100 apart, moved by less than the tolerance ($1) between looks
    gap = 100 * (value + 1) + D(noise) / 10
    return finding(kind, "account", str(noise), str(noise + gap), difference=gap, tol=1)


_IDS = st.tuples(
    st.sampled_from(
        ["orphan", "status_drift", "fill_drift", "shadow", "position_drift", "cash_drift"]
    ),
    st.integers(0, 2),  # subject
    st.integers(0, 3),  # value
).map(lambda i: (i[0], 0, i[2]) if i[0] == "cash_drift" else i)  # one account
_LOOK = st.lists(st.tuples(_IDS, st.integers(0, 5)), max_size=12, unique_by=lambda x: x[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(_LOOK, min_size=2, max_size=3))
def test_property_reported_exactly_when_present_in_every_look(looks):
    reports = [looked(*(_discrepancy(*ident, noise) for ident, noise in look)) for look in looks]
    ids = [{ident for ident, _ in look} for look in looks]
    everywhere = set.intersection(*ids)
    r = rc_diff.confirm(reports)
    reported = []
    for f in r.findings:
        (ident,) = [i for i, n in looks[-1] if rc_diff.same_discrepancy(_discrepancy(*i, n), f)]
        reported.append(ident)
    # present in every look: always reported; in some looks only: never
    assert set(reported) == everywhere and len(reported) == len(everywhere)
    assert reported == [i for i, _ in looks[-1] if i in everywhere]  # the last look's order
    assert r.unconfirmed == len(set.union(*ids)) - len(everywhere)


# -- which broker reading orders in flight agree with ---------------------------------------------


def test_an_order_in_flight_agrees_with_the_reading_its_listing_proves():
    assert rc_diff.agrees_with(None) == {"before"}  # reached the broker after the listing
    assert rc_diff.agrees_with(report("c1", status="new")) == {"before"}
    assert rc_diff.agrees_with(report("c1", status="filled", filled="1", avg="1")) == {"after"}
    assert rc_diff.agrees_with(report("c1", status="canceled")) == {"after"}
    # listed open and unfilled, and still so after the second reading: both hold
    assert rc_diff.agrees_with(report("c1", status="new"), report("c1", status="new")) == {
        "before",
        "after",
    }
    partial = report("c1", status="partially_filled", filled="5", avg="1")
    assert rc_diff.agrees_with(partial) == set()
    assert rc_diff.agrees_with(partial, partial) == {"after"}
    assert (
        rc_diff.agrees_with(partial, report("c1", status="partially_filled", filled="6")) == set()
    )


def two_readings(orders, before, after, *, cash=("1000", "1000"), open_after=None):
    return rc_model.BrokerSnapshot(
        orders=tuple(orders),
        positions=tuple(after),
        account=account(cash[1]),
        taken_at=NOW,
        positions_before=tuple(before),
        account_before=account(cash[0]),
        open_after=None if open_after is None else tuple(open_after),
    )


def test_our_store_ahead_of_the_broker_listing_is_in_flight_not_drift():
    # The operator's case: the broker was read (order open, position 0), then the order
    # filled and the loop journaled it before we read the store (position 3).
    mine = rc_model.LocalState(
        orders=(local("c1", S.FILLED, "3", "100"),),
        positions={"AAPL": D(3)},
        cash_baseline=D(1300),
        net_traded_since_baseline=D(-300),
        in_flight=frozenset({"c1"}),
    )
    broker = two_readings([report("c1", status="new", qty="3")], [], [], cash=("1300", "1300"))
    r = rc_diff.diff(mine, broker)
    assert r.in_sync and r.in_flight == 1 and r.unchecked == ()
    # The same snapshot judged without knowing the order is in flight: all false alarms.
    r = rc_diff.diff(
        rc_model.LocalState(
            orders=mine.orders,
            positions=mine.positions,
            cash_baseline=D(1300),
            net_traded_since_baseline=D(-300),
        ),
        broker,
    )
    assert {f.kind for f in r.findings} == {
        "orphan",
        "status_drift",
        "fill_drift",
        "position_drift",
        "cash_drift",
    }


def test_the_broker_ahead_of_our_store_is_in_flight_not_drift():
    # Filled at the broker before the listing; the stream delivers it after our read.
    mine = rc_model.LocalState(
        orders=(local("c1", S.NEW),),
        positions={},
        cash_baseline=D(1300),
        net_traded_since_baseline=D(0),
        in_flight=frozenset({"c1"}),
    )
    filled = report("c1", status="filled", filled="3", avg="100", qty="3")
    broker = two_readings([filled], [], [pos("AAPL", 3)], cash=("1300", "1000"))
    r = rc_diff.diff(mine, broker)
    assert r.in_sync and r.unchecked == ()


def test_orders_in_flight_that_agree_with_neither_reading_leave_the_symbol_unchecked():
    mine = rc_model.LocalState(
        orders=(local("c1", S.FILLED, "1", "10"), local("c2", S.NEW, side=Side.SELL)),
        positions={"AAPL": D(1)},
        in_flight=frozenset({"c1", "c2"}),
    )
    broker = two_readings(
        [
            report("c1", status="filled", filled="1", avg="10", qty="1"),
            report("c2", status="new", side="sell", qty="1"),
        ],
        [pos("AAPL", 1)],
        [pos("AAPL", 50)],  # whatever it says, it cannot be judged
    )
    r = rc_diff.diff(mine, broker)
    assert r.in_sync and r.unchecked == (
        "position AAPL: trading while the broker was read",
        "cash: trading while the broker was read",
    )


def test_real_drift_beside_orders_in_flight_is_still_found():
    # AAPL trades (in flight); SPY moved in at the broker outside mqd; an order unknown to us
    # rests at the broker.
    mine = rc_model.LocalState(
        orders=(local("c1", S.FILLED, "1", "10"),),
        positions={"AAPL": D(1)},
        in_flight=frozenset({"c1"}),
    )
    broker = two_readings(
        [
            report("c1", status="filled", filled="1", avg="10", qty="1"),
            report("by-hand", status="new", symbol="MSFT", limit="1"),
        ],
        [pos("SPY", 7)],
        [pos("AAPL", 1), pos("SPY", 7)],
    )
    r = rc_diff.diff(mine, broker)
    assert [(f.kind, f.subject) for f in r.findings] == [
        ("orphan", "by-hand"),
        ("position_drift", "SPY"),
    ]


def test_a_position_that_moved_with_nothing_of_ours_in_flight_is_unchecked():
    # A fill the stream has not delivered yet: wait for the next look.
    r = rc_diff.diff(
        rc_model.LocalState(orders=(), positions={}), two_readings([], [], [pos("AAPL", 1)])
    )
    assert r.in_sync and r.unchecked[0].startswith("position AAPL")


def test_cash_counts_orders_in_flight_at_the_brokers_figure():
    mine = rc_model.LocalState(
        orders=(local("c1", S.FILLED, "2", "10"),),
        positions={"AAPL": D(2)},
        cash_baseline=D(1000),
        net_traded_since_baseline=D(-20),  # our fills: bought 2 @ 10
        in_flight=frozenset({"c1"}),
    )
    # The broker's readings predate the fill: its cash is still 1000.
    broker = two_readings([report("c1", status="new", qty="2")], [], [], cash=("1000", "1000"))
    assert rc_diff.diff(mine, broker).in_sync
    # 500 that no fill explains is cash drift all the same.
    broker = two_readings([report("c1", status="new", qty="2")], [], [], cash=("1500", "1500"))
    (f,) = rc_diff.diff(mine, broker).findings
    assert f.kind == "cash_drift" and f.data["difference"] == 500


# -- check: real SQLite files, the simulated broker, a stream that lags ----------------------------

OPEN = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)  # Monday 09:35 New York


class LaggingLoop:
    """The running loop in another process: its own tracker on the same database file, fed
    by a stream that delivers the broker's events only when ``deliver()`` is called."""

    def __init__(self, path, broker, clock):
        self.store = Store.open(path)
        self.tracker = OrderTracker(self.store, clock, strategy="t")
        self.broker = broker
        self.held: list = []
        broker.subscribe(self.held.append)

    def submit(self, it):
        sent = self.tracker.start(it)
        self.tracker.on_submitted(self.broker.submit_order(sent))
        return sent.client_order_id

    def deliver(self):
        held, self.held[:] = list(self.held), []
        for u in held:
            self.tracker.apply(u)


class CatchUpClock(BacktestClock):
    """A backtest clock whose sleep (the pause between looks) lets the loop catch up."""

    def __init__(self, start, on_sleep=None):
        super().__init__(start)
        self.on_sleep = on_sleep
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        super().sleep(seconds)
        if self.on_sleep is not None:
            self.on_sleep()


def world(tmp_path, *, catch_up: bool):
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.config.settings import SimSettings

    clock = CatchUpClock(OPEN)
    broker = SimBroker(SimSettings(partial_fill_probability=0.0), clock)
    loop = LaggingLoop(tmp_path / "mqd.db", broker, clock)
    if catch_up:
        clock.on_sleep = loop.deliver
    reader = OrderTracker.restore(Store.open(tmp_path / "mqd.db"), clock)  # `mqd reconcile`
    return clock, broker, loop, reader


def test_a_fill_the_stream_delivers_during_the_pause_is_never_reported(tmp_path):
    clock, broker, loop, reader = world(tmp_path, catch_up=True)
    cid = loop.submit(intent(qty="10"))
    clock.advance(timedelta(seconds=60))
    broker.step()  # filled at the broker; the event is still on its way
    one = rc_collect.check(reader, broker, clock, looks=1, grace=timedelta(0))
    assert {f.kind for f in one.report.findings} == {"fill_drift", "status_drift"}
    checked = rc_collect.check(
        reader, broker, clock, pause=timedelta(seconds=2), grace=timedelta(0)
    )
    assert checked.report.in_sync, checked.report.findings
    # Journaled after the first look began: in flight there (its findings are dropped).
    assert checked.report.looks == 2 and checked.report.in_flight == 1
    assert clock.slept == [2.0]  # the pause runs on the injected clock
    assert cid in checked.looks[0].local.in_flight  # widened: journaled after look 1 began
    assert reader.order(cid).filled_qty == 10


def test_real_drift_survives_the_second_look_and_apply_acts_on_it_only(tmp_path):
    from mqd_cli.model import OrderIntent, OrderType

    clock, broker, loop, reader = world(tmp_path, catch_up=False)
    loop.submit(intent(qty="10"))
    clock.advance(timedelta(seconds=60))
    broker.step()
    loop.deliver()
    broker.submit_order(  # outside mqd, and no stream of ours saw it
        OrderIntent(
            "MSFT",
            Side.BUY,
            qty=D(2),
            type=OrderType.LIMIT,
            limit_price=D("1.00"),
            client_order_id="by-hand",
        )
    )
    checked = rc_collect.check(
        reader, broker, clock, pause=timedelta(seconds=1), grace=timedelta(0)
    )
    assert [(f.kind, f.subject) for f in checked.report.findings] == [("orphan", "by-hand")]
    assert checked.report.looks == 2 and clock.slept == [1.0, 1.0]  # pause, then settle
    actions, net = rc_apply.apply_confirmed(
        reader, broker, checked, apply=True, cancel_orphans=False
    )
    assert [a.kind for a in actions] == ["adopt"] and net == 0
    clock.slept.clear()
    again = rc_collect.check(reader, broker, clock, grace=timedelta(0)).report
    assert again.in_sync and again.looks == 1 and clock.slept == []  # in sync: one look


def test_apply_leaves_alone_a_finding_whose_order_moved_since_the_last_look(tmp_path):
    clock, broker, loop, reader = world(tmp_path, catch_up=False)
    cid = loop.submit(intent(qty="10"))
    clock.advance(timedelta(seconds=60))
    broker.step()  # filled; the stream is down through both looks (a real lag)
    checked = rc_collect.check(reader, broker, clock, pause=timedelta(0), grace=timedelta(0))
    assert {f.kind for f in checked.report.findings} == {"fill_drift", "status_drift"}
    loop.deliver()  # the stream comes back before --apply acts
    actions, _ = rc_apply.apply_confirmed(reader, broker, checked, apply=True, cancel_orphans=False)
    assert actions == []
    assert [f.fill_id for f in reader.order(cid).fills if f.synthetic] == []


def test_the_baseline_pairs_cash_and_fills_of_one_moment(tmp_path):
    clock, broker, loop, reader = world(tmp_path, catch_up=False)
    loop.submit(intent(qty="10"))
    clock.advance(timedelta(seconds=60))
    broker.step()
    loop.deliver()
    checked = rc_collect.check(reader, broker, clock, grace=timedelta(0))
    cash, net = checked.baseline()
    assert cash == broker.get_account().cash and net == reader.net_traded()
    assert isinstance(cash, Decimal) and isinstance(net, Decimal)
