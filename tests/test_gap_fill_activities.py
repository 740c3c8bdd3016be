"""FILL activities make the gap fill exact: a rise of an order's filled quantity recovered over
REST is delivered as one fill per execution (its own quantity, price and time) when the
activities cover it, keyed by the cumulative quantity so that the stream delivering the same
executions later (whatever their ids) counts nothing twice."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from orders_support import T0, D, fill, intent, report, update

from mqd_cli.clock import BacktestClock
from mqd_cli.model import FillActivity, Side
from mqd_cli.orders.tracker import OrderTracker


def activity(cid: str, qty: str, price: str, cum: str, seconds: float = 0) -> FillActivity:
    return FillActivity(
        id=f"20260105143500000::act-{cid}-{cum}",
        order_id=f"id-{cid}",
        symbol="AAPL",
        side=Side.BUY,
        qty=D(qty),
        price=D(price),
        cum_qty=D(cum),
        leaves_qty=None,
        transaction_time=T0 + timedelta(seconds=seconds),
    )


def _tracker(qty: str = "3"):
    t = OrderTracker(None, BacktestClock(T0))
    cid = t.start(intent(qty=qty)).client_order_id
    t.apply(update("new", cid, qty=qty))
    return t, cid


def test_a_gap_filled_rise_is_delivered_as_the_executions_the_activities_name():
    t, cid = _tracker()
    acts = [activity(cid, "1", "176.90", "1", 1), activity(cid, "2", "177.05", "3", 2)]
    snap = report(cid, status="filled", filled="3", avg="177.00", qty="3")
    result = t.apply_order_report(snap, source="gap_fill", executions=acts)
    got = [(f.qty, f.price, f.timestamp, f.synthetic) for f in result.new_fills]
    assert got == [
        (D(1), D("176.90"), T0 + timedelta(seconds=1), True),
        (D(2), D("177.05"), T0 + timedelta(seconds=2), True),
    ]
    assert t.order(cid).filled_qty == 3 and t.position_qty("AAPL") == 3
    # the stream delivers the same executions late, under its own ids: nothing more
    late = t.apply(fill(cid, "exec-2", "2", "177.05", "3", "177.00", qty="3", seconds=3))
    assert late.new_fills == () and t.order(cid).filled_qty == 3


def test_only_the_missing_range_is_taken_from_the_activities():
    t, cid = _tracker()
    t.apply(fill(cid, "exec-1", "1", "176.90", "1", "176.90", qty="3", final=False))
    acts = [activity(cid, "1", "176.90", "1"), activity(cid, "2", "177.05", "3", 2)]
    snap = report(cid, status="filled", filled="3", avg="177.00", qty="3")
    result = t.apply_order_report(snap, source="gap_fill", executions=acts)
    assert [(f.qty, f.price) for f in result.new_fills] == [(D(2), D("177.05"))]


def test_activities_with_a_hole_fall_back_to_one_fill_at_the_average():
    t, cid = _tracker()
    acts = [activity(cid, "1", "176.90", "1")]  # the second execution's activity is missing
    snap = report(cid, status="filled", filled="3", avg="177.00", qty="3")
    result = t.apply_order_report(snap, source="gap_fill", executions=acts)
    assert [(f.qty, f.price) for f in result.new_fills] == [(D(3), D("177.00"))]


@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=6),
    st.data(),
)
def test_deliveries_sum_to_the_filled_quantity_however_stream_and_activities_interleave(
    sizes, data
):
    total = sum(sizes)
    t, cid = _tracker(str(total))
    cums = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    prices = [D(100) + i for i in range(len(sizes))]
    acts = [
        activity(cid, str(q), str(p), str(c), i)
        for i, (q, p, c) in enumerate(zip(sizes, prices, cums, strict=True))
    ]
    seen_before = data.draw(st.sets(st.sampled_from(range(len(sizes)))))
    delivered = D(0)
    for i in sorted(seen_before):  # some executions reached us on the stream first
        r = t.apply(
            fill(
                cid,
                f"s{i}",
                str(sizes[i]),
                str(prices[i]),
                str(cums[i]),
                "100",
                qty=str(total),
                seconds=i,
            )
        )
        delivered += sum((f.qty for f in r.new_fills), D(0))
    snap = report(cid, status="filled", filled=str(total), avg="101", qty=str(total))
    r = t.apply_order_report(snap, source="gap_fill", executions=acts)
    delivered += sum((f.qty for f in r.new_fills), D(0))
    # then the stream delivers every execution it owes, each under its own id (the ones seen
    # before come again as duplicates): the gap fill counted them already, by their range
    for i in data.draw(st.permutations(range(len(sizes)))):
        r = t.apply(
            fill(
                cid,
                f"s{i}",
                str(sizes[i]),
                str(prices[i]),
                str(cums[i]),
                "100",
                qty=str(total),
                seconds=10 + i,
            )
        )
        delivered += sum((f.qty for f in r.new_fills), D(0))
    assert delivered == total == t.order(cid).filled_qty == t.position_qty("AAPL")


def test_the_adapter_reads_fill_activities_from_the_emulator_in_execution_order(emulator):
    from mqd_cli.brokers.alpaca import AlpacaBroker
    from mqd_cli.config.settings import SimSettings
    from mqd_cli.model import OrderIntent

    srv = emulator(sim=SimSettings(partial_fill_probability=1.0))
    broker = AlpacaBroker(srv.alpaca_settings())
    try:
        start = broker.get_clock().timestamp
        order = broker.submit_order(OrderIntent("AAPL", Side.BUY, qty=D(40), client_order_id="a-1"))
        for _ in range(30):
            srv.advance(60)
            if broker.get_order(order.id).status.value == "filled":
                break
        done = broker.get_order(order.id)
        acts = [a for a in broker.fill_activities(start) if a.order_id == order.id]
    finally:
        broker.close()
    assert len(acts) >= 2  # filled in parts
    assert [a.cum_qty for a in acts] == sorted(a.cum_qty for a in acts)
    assert acts[-1].cum_qty == done.filled_qty == sum(a.qty for a in acts)
    notional = sum(a.qty * a.price for a in acts)
    assert abs(notional / done.filled_qty - done.filled_avg_price) < D("0.01")
