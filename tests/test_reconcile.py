"""Reconciliation: pure diff helpers on synthetic snapshots, then scenarios against SimBroker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from orders_support import T0, D, intent, report

from mqd_cli.brokers.errors import BrokerUnavailable, NotFound, RateLimited
from mqd_cli.clock import BacktestClock
from mqd_cli.model import (
    AccountReport,
    OrderIntent,
    OrderStatus,
    OrderType,
    PositionReport,
    PositionSide,
    Side,
)
from mqd_cli.orders.tracker import OrderTracker, synthetic_fill_id
from mqd_cli.reconcile import apply as rc_apply
from mqd_cli.reconcile import collect as rc_collect
from mqd_cli.reconcile import diff as rc_diff
from mqd_cli.reconcile import model as rc_model
from mqd_cli.store import Store

S = OrderStatus
NOW = T0 + timedelta(hours=1)


def local(
    cid="c1",
    status=S.NEW,
    filled="0",
    avg=None,
    *,
    side=Side.BUY,
    symbol="AAPL",
    broker_id=None,
    age=timedelta(hours=1),
) -> rc_model.LocalOrder:
    at = NOW - age
    return rc_model.LocalOrder(
        client_order_id=cid,
        broker_id=broker_id or f"id-{cid}",
        symbol=symbol,
        side=side,
        status=status,
        filled_qty=D(filled),
        avg_price=None if avg is None else D(avg),
        created_at=at,
        updated_at=at,
        is_open=status.is_open,
    )


def state(*orders, positions=None, baseline=None, since="0") -> rc_model.LocalState:
    return rc_model.LocalState(
        orders=tuple(orders),
        positions=positions or {},
        cash_baseline=baseline,
        net_traded_since_baseline=D(since),
    )


def snap(*orders, positions=(), account=None) -> rc_model.BrokerSnapshot:
    return rc_model.BrokerSnapshot(
        orders=tuple(orders), positions=tuple(positions), account=account, taken_at=NOW
    )


def pos(symbol, qty) -> PositionReport:
    return PositionReport(
        symbol, D(qty), D(10), PositionSide.LONG if D(qty) > 0 else PositionSide.SHORT
    )


def account(cash="1000", equity="1000", long="0") -> AccountReport:
    return AccountReport(
        "a", "PA1", "ACTIVE", cash=D(cash), equity=D(equity), long_market_value=D(long)
    )


# -- helpers --------------------------------------------------------------------------------------


def test_synthetic_fill_price_makes_the_average_match():
    assert rc_diff.synthetic_fill_price(D(40), D("178.48"), D(100), D("178.492")) == D("178.5")
    assert rc_diff.synthetic_fill_price(D(0), None, D(10), D(5)) == 5
    assert rc_diff.synthetic_fill_price(D(10), D(5), D(10), D(5)) is None
    assert rc_diff.synthetic_fill_price(D(0), None, D(10), None) is None


def test_within_grace_uses_the_last_change():
    assert rc_diff.within_grace(local(age=timedelta(seconds=30)), NOW, timedelta(seconds=60))
    assert not rc_diff.within_grace(local(age=timedelta(seconds=90)), NOW, timedelta(seconds=60))


def test_index_keeps_the_newest_report_of_an_order():
    old = report("c1", status="new", at=T0)
    new = report("c1", status="filled", filled="100", avg="1", at=T0 + timedelta(seconds=1))
    by_cid, by_id = rc_diff.index_broker_orders([new, old])
    assert by_cid["c1"] is new and by_id["id-c1"] is new


def test_cash_tolerance_is_a_dollar_or_five_basis_points_of_equity():
    assert rc_diff.cash_tolerance(account(equity="100")) == 1
    assert rc_diff.cash_tolerance(account(equity="100000")) == 50


# -- findings -------------------------------------------------------------------------------------


def test_unknown_open_broker_order_is_an_orphan():
    r = rc_diff.diff(state(), snap(report("ext", status="new")))
    (f,) = r.findings
    assert (f.kind, f.subject, f.local, f.broker) == ("orphan", "ext", "unknown", "new")
    assert "adopt" in f.action


def test_broker_open_order_we_know_as_closed_is_an_orphan():
    r = rc_diff.diff(state(local(status=S.CANCELED)), snap(report("c1", status="new")))
    assert [(f.kind, f.local) for f in r.findings] == [
        ("orphan", "canceled"),
        ("status_drift", "canceled"),
    ]


def test_closed_unknown_broker_order_is_not_an_orphan():
    assert (
        rc_diff.diff(
            state(),
            snap(report("old", status="filled", filled="100"), positions=[pos("AAPL", 100)]),
        ).of("orphan")
        == []
    )


def test_missing_order_is_a_shadow_only_after_a_lookup_answers_not_found():
    lo = state(local("c1"))
    assert [f.kind for f in rc_diff.diff(lo, snap()).findings] == ["unverified"]
    lk = {"c1": rc_model.Lookup("c1", "not_found")}
    (f,) = rc_diff.diff(lo, snap(), lk).findings
    assert f.kind == "shadow" and "canceled" in f.action


def test_failed_lookup_never_makes_a_shadow():
    lk = {"c1": rc_model.Lookup("c1", "error", error="BrokerUnavailable: timeout")}
    r = rc_diff.diff(state(local("c1")), snap(), lk)
    assert [f.kind for f in r.findings] == ["unverified"] and r.unverified and not r.drift


def test_young_orders_are_never_shadows():
    r = rc_diff.diff(
        state(local("c1", age=timedelta(seconds=5))),
        snap(),
        {"c1": rc_model.Lookup("c1", "not_found")},
    )
    assert r.in_sync


def test_pending_new_not_found_resolves_to_rejected():
    (f,) = rc_diff.diff(
        state(local("c1", S.PENDING_NEW)), snap(), {"c1": rc_model.Lookup("c1", "not_found")}
    ).findings
    assert f.action.startswith("mark rejected")


def test_lookup_that_finds_the_order_checks_it_like_a_listed_one():
    lk = {
        "c1": rc_model.Lookup("c1", "found", report("c1", status="filled", filled="100", avg="10"))
    }
    r = rc_diff.diff(state(local("c1")), snap(positions=[pos("AAPL", 100)]), lk)
    assert [f.kind for f in r.findings] == ["fill_drift", "status_drift"]


def test_fill_drift_has_a_deterministic_id_and_the_matching_price():
    lo = state(local("c1", S.PARTIALLY_FILLED, "40", "178.48"), positions={"AAPL": D(40)})
    br = snap(
        report("c1", status="filled", filled="100", avg="178.492"), positions=[pos("AAPL", 100)]
    )
    r1, r2 = rc_diff.diff(lo, br), rc_diff.diff(lo, br)
    assert r1 == r2
    f = r1.of("fill_drift")[0]
    assert f.data["fill_id"] == synthetic_fill_id("c1", D(100)) and f.data["price"] == D("178.5")
    assert r1.of("position_drift") == []  # explained by the fill drift


def test_broker_reporting_less_than_our_fills_is_for_review():
    r = rc_diff.diff(
        state(local("c1", S.FILLED, "100", "10"), positions={"AAPL": D(100)}),
        snap(report("c1", status="filled", filled="60", avg="10"), positions=[pos("AAPL", 100)]),
    )
    (f,) = r.findings
    assert f.kind == "fill_drift" and f.action == "review"


def test_unexplained_position_difference_is_position_drift():
    r = rc_diff.diff(
        state(positions={"AAPL": D(10)}), snap(positions=[pos("AAPL", 15), pos("MSFT", -3)])
    )
    assert [(f.subject, f.local, f.broker) for f in r.of("position_drift")] == [
        ("AAPL", "10", "15"),
        ("MSFT", "0", "-3"),
    ]


def test_cash_drift_beyond_tolerance_only():
    within = rc_diff.diff(
        state(baseline=D(1000), since="-100"), snap(account=account("900.50", "900.50"))
    )
    assert within.in_sync
    beyond = rc_diff.diff(
        state(baseline=D(1000), since="-100"), snap(account=account("850", "850"))
    )
    (f,) = beyond.findings
    assert f.kind == "cash_drift" and (f.local, f.broker) == ("900", "850")


def test_equity_that_does_not_add_up_is_equity_drift():
    r = rc_diff.diff(state(), snap(account=account("1000", "1500", long="100")))
    assert [f.kind for f in r.findings] == ["equity_drift"]


# -- scenarios against the simulated broker -------------------------------------------------------

OPEN = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)  # Monday 09:35 New York


class World:
    def __init__(self, tmp_path, **sim):
        from mqd_cli.brokers.sim.broker import SimBroker
        from mqd_cli.config.settings import SimSettings

        self.clock = BacktestClock(OPEN)
        self.path = tmp_path / "mqd.db"
        self.store = Store.open(self.path)
        self.tracker = OrderTracker(self.store, self.clock, strategy="t")
        self.broker = SimBroker(SimSettings(partial_fill_probability=0.0, **sim), self.clock)
        self.unsubscribe = self.broker.subscribe(lambda u: self.tracker.apply(u))

    def submit(self, it: OrderIntent):
        sent = self.tracker.start(it)
        self.tracker.on_submitted(self.broker.submit_order(sent))
        return sent.client_order_id

    def advance(self, seconds: float):
        self.clock.advance(timedelta(seconds=seconds))
        self.broker.step()

    def reconcile(self, broker=None, *, apply=False, cancel_orphans=False):
        local, snapshot, lookups = rc_collect.collect(
            self.tracker, broker or self.broker, self.clock
        )
        report = rc_diff.diff(local, snapshot, lookups, now=self.clock.now())
        actions = rc_apply.apply_findings(
            self.tracker, broker or self.broker, report, apply=apply, cancel_orphans=cancel_orphans
        )
        return report, actions


def resting_buy(symbol="AAPL", qty="5", price="1.00", cid=None) -> OrderIntent:
    return OrderIntent(
        symbol,
        Side.BUY,
        qty=D(qty),
        type=OrderType.LIMIT,
        limit_price=D(price),
        client_order_id=cid,
    )


def test_orders_filled_through_the_stream_are_in_sync(tmp_path):
    w = World(tmp_path)
    w.submit(intent(qty="10"))
    w.advance(60)
    report, _ = w.reconcile()
    assert report.in_sync, report.findings
    assert w.tracker.positions()["AAPL"].qty == 10


def test_unknown_open_order_at_the_broker_is_an_orphan_adopted_with_apply(tmp_path):
    w = World(tmp_path)
    w.unsubscribe()  # mqd was not running (a running stream adopts it on sight)
    w.broker.submit_order(resting_buy(cid="by-hand"))  # placed outside mqd
    w.advance(60)
    report, actions = w.reconcile()
    assert [f.kind for f in report.findings] == ["orphan"] and actions == []
    report, actions = w.reconcile(apply=True)
    assert [a.kind for a in actions] == ["adopt"]
    assert w.tracker.order("by-hand").external
    assert w.reconcile()[0].in_sync


def test_cancel_orphans_cancels_at_the_broker(tmp_path):
    w = World(tmp_path)
    w.unsubscribe()
    w.broker.submit_order(resting_buy(cid="by-hand"))
    _, actions = w.reconcile(cancel_orphans=True)
    assert [(a.kind, a.result) for a in actions] == [("cancel_orphan", "cancel requested")]
    w.advance(1)
    assert w.broker.get_order_by_client_id("by-hand").status is S.CANCELED


def test_order_the_broker_never_received_is_a_shadow_only_after_the_lookup(tmp_path):
    w = World(tmp_path)
    cid = w.tracker.start(intent()).client_order_id  # the process died before sending it
    report, _ = w.reconcile()
    assert report.in_sync  # within the grace period
    w.advance(120)
    report, actions = w.reconcile(apply=True)
    assert [(f.kind, f.subject) for f in report.findings] == [("shadow", cid)]
    assert report.lookups == 1
    assert [a.result for a in actions] == ["pending_new -> rejected"]
    assert w.reconcile()[0].in_sync


class Flaky:
    """The real broker, except that targeted lookups (or everything) fail like a network."""

    def __init__(self, broker, error, *, listings=False):
        self.broker, self.error, self.listings = broker, error, listings

    def __getattr__(self, name):
        return getattr(self.broker, name)

    def list_orders(self, *a, **kw):
        if self.listings:
            raise self.error
        return self.broker.list_orders(*a, **kw)

    def get_order(self, *_):
        raise self.error

    def get_order_by_client_id(self, *_):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [BrokerUnavailable("timeout"), RateLimited(), BrokerUnavailable("502 bad gateway", status=502)],
)
def test_network_errors_during_reconcile_never_create_shadows(tmp_path, error):
    w = World(tmp_path)
    cid = w.submit(resting_buy())
    w.advance(120)
    w.broker._orders.clear()  # the broker forgot it; only a lookup could tell
    w.broker._by_client_id.clear()
    report, actions = w.reconcile(Flaky(w.broker, error), apply=True)
    assert [f.kind for f in report.findings] == ["unverified"] and actions == []
    assert w.tracker.order(cid).status is S.NEW
    report, _ = w.reconcile()
    assert [f.kind for f in report.findings] == ["shadow"]


def test_unreachable_listing_raises_instead_of_reporting(tmp_path):
    w = World(tmp_path)
    with pytest.raises(BrokerUnavailable):
        w.reconcile(Flaky(w.broker, BrokerUnavailable("connection refused"), listings=True))


def test_partially_filled_order_canceled_at_the_broker_keeps_its_fills(tmp_path):
    w = World(tmp_path, liquidity=Decimal(10))
    cid = w.submit(intent(qty="100"))
    w.advance(60)
    w.unsubscribe()  # the stream is down from here
    w.advance(60)
    w.broker.cancel_order(w.tracker.order(cid).broker_id)
    w.advance(1)
    theirs = w.broker.get_order_by_client_id(cid)
    assert theirs.status is S.CANCELED and 0 < theirs.filled_qty < 100
    report, actions = w.reconcile(apply=True)
    assert {f.kind for f in report.findings} == {"fill_drift", "status_drift"}
    o = w.tracker.order(cid)
    assert o.status is S.CANCELED and o.filled_qty == theirs.filled_qty
    assert o.avg_price == theirs.filled_avg_price
    assert w.tracker.positions()["AAPL"].qty == theirs.filled_qty
    assert w.reconcile()[0].in_sync


def test_two_runs_in_a_row_give_identical_synthetic_ids_and_no_second_change(tmp_path):
    w = World(tmp_path, liquidity=Decimal(10))
    cid = w.submit(intent(qty="30"))
    w.unsubscribe()
    w.advance(180)
    first, _ = w.reconcile()
    second, _ = w.reconcile()
    assert first.findings == second.findings  # read-only runs are pure
    ids = [f.data["fill_id"] for f in first.of("fill_drift")]
    _, actions = w.reconcile(apply=True)
    assert any(ids[0] in a.result for a in actions)
    o = w.tracker.order(cid)
    assert [f.fill_id for f in o.fills if f.synthetic] == ids
    third, actions = w.reconcile(apply=True)
    assert third.in_sync and actions == []
    # A fresh process sees the same thing.
    again = OrderTracker.restore(Store.open(w.path), w.clock)
    assert [f.fill_id for f in again.order(cid).fills if f.synthetic] == ids


def test_lookup_not_found_is_the_only_proof(tmp_path):
    w = World(tmp_path)
    cid = w.submit(resting_buy())
    w.advance(120)

    class Gone(Flaky):
        def list_orders(self, *a, **kw):
            return []

    report, _ = w.reconcile(Gone(w.broker, NotFound("order not found", status=404)))
    assert [(f.kind, f.subject) for f in report.findings] == [("shadow", cid)]
