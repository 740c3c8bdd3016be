"""The order tracker and reconcile with bracket, oco and oto legs: a leg is ours when its parent
is (legs get broker-made ids), its fills count once into the position, and reconcile sees no
orphan among our legs. Real SQLite files; the simulated exchange on a backtest clock.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.brokers.sim.prices import CsvPrices, SyntheticPrices
from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import SimSettings
from mqd_cli.model import OrderClass, OrderIntent, OrderStatus, OrderType, Side, TimeInForce
from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.reconcile import collect as rc_collect
from mqd_cli.reconcile import diff as rc_diff
from mqd_cli.store import Store
from tests.support import T0, scripted

D = Decimal
S = OrderStatus
FLAT = ("100", "100.5", "99.5", "100")
UP = ("100", "106", "99.9", "105.5")  # reaches a 105 take-profit
DOWN = ("100", "100.1", "94", "94.5")  # reaches a 95 stop


class World:
    """mqd (tracker + store, fed by the broker's events) beside the simulated exchange."""

    def __init__(self, tmp_path, *bars, listen=True):
        self.clock = BacktestClock(T0)
        self.store = Store.open(tmp_path / "mqd.db")
        self.tracker = OrderTracker(self.store, self.clock, strategy="brk")
        settings = SimSettings(partial_fill_probability=0.0, liquidity=D(0))
        prices = CsvPrices(scripted("AAPL", [FLAT, *bars, FLAT, FLAT]), SyntheticPrices(0))
        self.broker = SimBroker(settings, self.clock, prices=prices)
        self.events = []
        self.broker.subscribe(self.events.append)
        self.unsubscribe = self.broker.subscribe(self.tracker.apply) if listen else None

    def submit(self, intent: OrderIntent) -> str:
        sent = self.tracker.start(intent)
        self.tracker.on_submitted(self.broker.submit_order(sent))
        return sent.client_order_id

    def minutes(self, n: int) -> None:
        for _ in range(n):
            self.clock.advance(timedelta(minutes=1))
            self.broker.step()

    def legs(self, cid: str):
        """Our tracked legs of the order ``cid``: (take-profit, stop-loss)."""
        legs = [o for o in self.tracker.orders() if o.parent == cid]
        tp = next((o for o in legs if o.type is OrderType.LIMIT), None)
        sl = next((o for o in legs if o.type in (OrderType.STOP, OrderType.STOP_LIMIT)), None)
        return tp, sl

    def reconcile(self):
        local, snapshot, lookups = rc_collect.collect(self.tracker, self.broker, self.clock)
        return rc_diff.diff(local, snapshot, lookups, now=self.clock.now())

    def broker_qty(self) -> Decimal:
        return sum((p.qty for p in self.broker.list_positions()), D(0))


def bracket(**kw) -> OrderIntent:
    values = {
        "symbol": "AAPL",
        "side": Side.BUY,
        "qty": D(10),
        "time_in_force": TimeInForce.GTC,
        "order_class": OrderClass.BRACKET,
        "take_profit_limit_price": D("105"),
        "stop_loss_stop_price": D("95"),
        "reason": "entry",
    }
    values.update(kw)
    return OrderIntent(**values)


def test_the_tracker_adopts_the_legs_of_our_bracket_as_ours_from_the_first_report(tmp_path):
    w = World(tmp_path)
    cid = w.submit(bracket(type=OrderType.LIMIT, limit_price=D("90"), stop_loss_stop_price=D("85")))
    tp, sl = w.legs(cid)
    assert tp is not None and sl is not None
    assert (tp.status, sl.status) == (S.HELD, S.HELD)
    assert not tp.external and not sl.external and tp.strategy == sl.strategy == "brk"
    assert (tp.reason, sl.reason) == ("take_profit", "stop_loss")
    broker_legs = w.broker.get_order_by_client_id(cid).legs
    assert {tp.broker_id, sl.broker_id} == {leg.id for leg in broker_legs}
    assert {tp.client_order_id, sl.client_order_id} == {leg.client_order_id for leg in broker_legs}


def test_a_take_profit_fill_counts_once_and_closes_the_trade_as_take_profit(tmp_path):
    w = World(tmp_path, UP)
    closed = []
    w.tracker.on_trade_closed = closed.append
    cid = w.submit(bracket())
    w.minutes(3)
    tp, sl = w.legs(cid)
    assert (tp.status, sl.status) == (S.FILLED, S.CANCELED)
    # the stream again, then a gap fill of every order's REST report, flat and nested
    w.tracker.apply_many(w.events)
    for report in w.broker.list_orders("all") + w.broker.list_orders("all", nested=True):
        w.tracker.apply_order_report(report, source="gap_fill")
    assert w.tracker.position_qty("AAPL") == w.broker_qty() == 0
    assert [f.qty for f in tp.fills] == [10] and not any(f.synthetic for f in tp.fills)
    assert sl.filled_qty == 0
    assert [(t.exit_reason, t.qty, t.exit_price) for t in closed] == [("take_profit", 10, 105)]


def test_a_stop_loss_fill_closes_the_trade_as_a_stop_loss(tmp_path):
    w = World(tmp_path, DOWN)
    closed = []
    w.tracker.on_trade_closed = closed.append
    cid = w.submit(bracket())
    w.minutes(3)
    tp, sl = w.legs(cid)
    assert (tp.status, sl.status) == (S.CANCELED, S.FILLED)
    assert w.tracker.position_qty("AAPL") == w.broker_qty() == 0
    assert [t.exit_reason for t in closed] == ["stop_loss"]


def test_legs_known_only_from_rest_reports_still_count_each_fill_once(tmp_path):
    # mqd was down while it all happened: the gap fill reads the orders flat, the legs after
    # their parent, and then the stream's events arrive late.
    w = World(tmp_path, UP, listen=False)
    cid = w.submit(bracket())
    w.minutes(3)
    for report in reversed(w.broker.list_orders("all")):  # oldest first
        w.tracker.apply_order_report(report, source="gap_fill")
    w.tracker.apply_many(w.events)
    tp, sl = w.legs(cid)
    assert tp.filled_qty == 10 and sl.filled_qty == 0
    assert w.tracker.position_qty("AAPL") == w.broker_qty() == 0


def test_restore_keeps_each_leg_linked_to_its_parent(tmp_path):
    w = World(tmp_path)
    cid = w.submit(bracket())
    tp, sl = w.legs(cid)
    again = OrderTracker.restore(w.store, w.clock, strategy="brk")
    assert {o.client_order_id for o in again.orders() if o.parent == cid} == {
        tp.client_order_id,
        sl.client_order_id,
    }
    assert again.position_qty("AAPL") == 10


def test_reconcile_with_our_legs_working_is_in_sync(tmp_path):
    w = World(tmp_path, FLAT, UP)
    w.submit(bracket())
    w.minutes(1)
    assert {o.status for o in w.broker.list_orders("open")} == {S.NEW, S.HELD}
    report = w.reconcile()
    assert report.in_sync, report.findings
    w.minutes(2)  # the take-profit fills, the stop is canceled
    assert w.reconcile().in_sync


def test_reconcile_in_another_process_reads_the_legs_from_the_store(tmp_path):
    w = World(tmp_path)
    w.submit(bracket())
    cron = OrderTracker.restore(w.store, w.clock, strategy="brk")
    local, snapshot, lookups = rc_collect.collect(cron, w.broker, w.clock)
    assert rc_diff.diff(local, snapshot, lookups, now=w.clock.now()).in_sync


def test_legs_of_a_bracket_placed_by_hand_are_orphans(tmp_path):
    w = World(tmp_path)
    w.unsubscribe()  # not running: nothing told mqd about this order
    w.broker.submit_order(bracket(client_order_id="by-hand"))
    report = w.reconcile()
    legs = {leg.id for leg in w.broker.get_order_by_client_id("by-hand").legs}
    assert {f.broker_id for f in report.orphans} == legs


def test_the_successor_of_a_replaced_leg_is_a_leg_of_the_same_parent(tmp_path):
    w = World(tmp_path)
    cid = w.submit(bracket())
    _, sl = w.legs(cid)
    new = w.broker.replace_order(sl.broker_id, stop_price=D("97"))
    successor = w.tracker.order_by_broker_id(new.id)
    assert successor is not None and successor.parent == cid and not successor.external
    assert successor.status is S.HELD and successor.replaces == sl.client_order_id
    assert w.reconcile().in_sync
