"""The order tracker's hot path (issue 17) computes what the straightforward code computed.

``TrackedOrder.fold`` returns early for an event that carries no execution and no rise of the
cumulative quantity, and the tracker builds its ``Fill`` and ``ApplyResult`` values without a
keyword call of the dataclasses' ``__init__``. The straightforward ``fold`` is kept here as the
reference: property tests drive random event sequences (fills with and without execution ids,
duplicates, out-of-order cumulative reports, gap-fill snapshots with executions, direct fills,
cancels, stale events) through the tracker with each and compare every result and the whole
state. The journaled tracker and one restored from its store must agree with the in-memory one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orders_support import T0, D, report, update

from mqd_cli.clock import BacktestClock
from mqd_cli.model import FillActivity, FillReport, OrderStatus, Side, TradeUpdate
from mqd_cli.orders.tracked import (
    ApplyResult,
    Fill,
    TrackedOrder,
    _pieces,
    new_fill,
    new_result,
    synthetic_fill_id,
)
from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.store import Store

ZERO = Decimal(0)


# -- the builders ---------------------------------------------------------------------------------

_decimals = st.decimals(min_value=-1000, max_value=1000, allow_nan=False, places=3)
_times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@given(
    fill_id=st.text(max_size=8),
    qty=_decimals,
    price=_decimals,
    at=_times,
    synthetic=st.booleans(),
    side=st.sampled_from(list(Side)),
)
def test_new_fill_builds_the_fill_the_constructor_builds(fill_id, qty, price, at, synthetic, side):
    made = new_fill(fill_id, "c1", "AAPL", side, qty, price, at, synthetic, "stream")
    expected = Fill(
        fill_id=fill_id,
        client_order_id="c1",
        symbol="AAPL",
        side=side,
        qty=qty,
        price=price,
        timestamp=at,
        fee=ZERO,
        synthetic=synthetic,
        source="stream",
    )
    assert made == expected and hash(made) == hash(expected)
    assert dataclasses.asdict(made) == dataclasses.asdict(expected)  # every field is set
    try:
        made.qty = D(1)
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("a fill built by new_fill must stay frozen")


def test_new_result_sets_every_field_the_constructor_sets():
    names = [f.name for f in dataclasses.fields(ApplyResult)]
    values = {name: object() for name in names}  # one distinct marker per field
    made = new_result(*(values[name] for name in names))
    assert {name: getattr(made, name) for name in names} == values
    expected = ApplyResult(
        client_order_id="c1",
        event="fill",
        status_before=OrderStatus.NEW,
        status=OrderStatus.FILLED,
        new_fills=(),
        filled_qty_delta=D(3),
        completed=True,
        adopted=False,
        duplicate=False,
        illegal="",
        closed_trades=(),
    )
    assert new_result(*(getattr(expected, name) for name in names)) == expected


def test_an_event_without_an_execution_or_a_rise_folds_nothing():
    t = OrderTracker(None, BacktestClock(T0))
    t.apply(update("partial_fill", filled="10", avg="5", exec_id="x1", price="5", fill_qty="10"))
    o = t.order("c1")
    before = (o.cum_qty, o.cum_avg, o.real_qty, o.real_notional, o.fallback_price, o.fills)
    r = t.apply(update("pending_cancel", filled="10", avg="5"))
    assert r.new_fills == () and r.filled_qty_delta == 0 and not r.duplicate  # status moved
    r = t.apply(update("pending_cancel", filled="4", avg="5"))  # a stale, lower cumulative
    assert r.duplicate and r.filled_qty_delta == 0
    assert (o.cum_qty, o.cum_avg, o.real_qty, o.real_notional, o.fallback_price, o.fills) == before
    # An equal cumulative quantity still counts when the broker's average was never seen.
    t.apply(update("new", "c2"))
    t.apply_order_report(report("c2", status="partially_filled", filled="3"))
    assert t.order("c2").cum_avg is None and t.position_qty("AAPL") == 13
    r = t.apply(update("pending_cancel", "c2", filled="3", avg="12"))
    assert t.order("c2").cum_avg == 12 and t.order("c2").avg_price == 12
    assert r.filled_qty_delta == 0 and t.positions()["AAPL"].cost == 10 * 5 + 3 * 12


# -- the reference: TrackedOrder.fold as it was before the fast path ----------------------------


def reference_fold(
    self: TrackedOrder,
    update: TradeUpdate,
    source: str,
    new: list[Fill],
    stored: list[Fill],
    executions: Sequence[FillActivity] = (),
) -> tuple[Decimal, Decimal, Decimal] | None:
    report = update.order
    q0 = self.filled_qty
    totals = None
    real: Fill | None = None
    if update.event.is_fill and update.price is not None:
        if update.qty is not None and update.execution_id:
            if update.execution_id not in self.real:
                real = Fill(
                    fill_id=update.execution_id,
                    client_order_id=self.client_order_id,
                    symbol=self.symbol,
                    side=self.side,
                    qty=update.qty,
                    price=update.price,
                    timestamp=update.timestamp,
                    fee=ZERO,
                    synthetic=False,
                    source=source,
                )
                totals = (q0, self.filled_notional, self.fees)
                self.add_real(real)
                stored.append(real)
        elif self.fallback_price is None:
            totals = (q0, self.filled_notional, self.fees)
            self.fallback_price = update.price
    cum = report.filled_qty
    if cum > self.cum_qty or (cum == self.cum_qty and cum and self.cum_avg is None):
        if totals is None:
            totals = (q0, self.filled_notional, self.fees)
        if self.fallback_price is None:
            self.fallback_price = report.filled_avg_price or report.limit_price
        self.cum_qty = cum
        if report.filled_avg_price is not None:
            self.cum_avg = report.filled_avg_price
    if totals is None:
        return None
    delta = self.filled_qty - q0
    if delta <= 0:
        return totals
    part = ZERO
    if real is not None:
        top = cum if cum >= real.qty else q0 + real.qty
        part = min(real.qty, delta, max(ZERO, top - q0))
        if part > 0:
            new.append(real if part == real.qty else replace(real, qty=part))
    rest = delta - part
    if rest > 0:
        pieces = _pieces(executions, self.filled_qty - rest, self.filled_qty)
        if not pieces:
            moved = self.filled_notional - totals[1] - (part * real.price if real else ZERO)
            pieces = [(rest, moved / rest, update.timestamp, self.filled_qty)]
        for qty, price, at, top in pieces:
            f = Fill(
                fill_id=synthetic_fill_id(self.client_order_id, top),
                client_order_id=self.client_order_id,
                symbol=self.symbol,
                side=self.side,
                qty=qty,
                price=price,
                timestamp=at,
                fee=ZERO,
                synthetic=True,
                source=source,
            )
            self.synthetic.append(f)
            new.append(f)
            stored.append(f)
    return totals


# -- random sessions ------------------------------------------------------------------------------

_EVENTS = (
    "new",
    "partial_fill",
    "fill",
    "canceled",
    "pending_cancel",
    "order_cancel_rejected",
    "expired",
    "replaced",
    "trade_bust",
    "restated",
)


@st.composite
def _operations(draw) -> list[tuple]:
    """Calls on a tracker: stream events (with or without an execution, duplicated, stale),
    REST snapshots (some with their FILL activities), fills from account activities."""
    ops: list[tuple] = []
    for _ in range(draw(st.integers(1, 25))):
        cid = draw(st.sampled_from(("c1", "c2", "c3")))
        side = "buy" if cid != "c2" else "sell"
        symbol = "MSFT" if cid == "c3" else "AAPL"
        cum = draw(st.integers(0, 10))
        avg = draw(st.sampled_from((None, "10", "10.5", "11.25")))
        seconds = draw(st.integers(0, 30))
        kind = draw(st.sampled_from(("event", "event", "event", "snapshot", "activity")))
        if kind == "event":
            event = draw(st.sampled_from(_EVENTS))
            execution = draw(st.sampled_from((None, "x1", "x2", "x3", "x4")))
            execution = execution and f"{cid}-{execution}"  # the broker's ids are unique
            price = draw(st.sampled_from((None, "10", "11", "10.75")))
            qty = draw(st.sampled_from((None, "1", "2", "3")))
            ops.append(
                ("event", cid, side, symbol, event, cum, avg, execution, price, qty, seconds)
            )
        elif kind == "snapshot":
            status = draw(st.sampled_from(("new", "partially_filled", "filled", "canceled")))
            executions = []
            if draw(st.booleans()):
                total = Decimal(0)
                for n in range(draw(st.integers(1, 3))):
                    step = Decimal(draw(st.integers(1, 4)))
                    total += step
                    executions.append((f"a{n}", step, total, n))
            ops.append(("snapshot", cid, side, symbol, status, cum, avg, executions, seconds))
        else:
            execution = draw(st.sampled_from(("", "x1", "x2", "x5")))
            execution = execution and f"{cid}-{execution}"
            ops.append(("activity", cid, side, symbol, execution, seconds))
    return ops


def _run(t: OrderTracker, ops: list[tuple], batched: bool = False) -> list[tuple]:
    results: list[ApplyResult] = []
    for op in ops:
        kind, cid, side, symbol = op[:4]
        if kind == "event":
            event, cum, avg, execution, price, qty, seconds = op[4:]
            u = update(
                event,
                cid,
                status={"trade_bust": "filled", "order_cancel_rejected": "new"}.get(event),
                filled=str(cum),
                avg=avg,
                exec_id=execution,
                price=price,
                fill_qty=qty,
                side=side,
                symbol=symbol,
                seconds=seconds,
            )
            results.extend(t.apply_many([u, u]) if batched else [t.apply(u)])
        elif kind == "snapshot":
            status, cum, avg, executions, seconds = op[4:]
            r = report(
                cid,
                status=status,
                filled=str(cum),
                avg=avg,
                side=side,
                symbol=symbol,
                at=T0 + timedelta(seconds=seconds),
            )
            activities = [
                FillActivity(
                    id=i,
                    order_id=r.id,
                    symbol=symbol,
                    side=Side(side),
                    qty=q,
                    price=D("10.1"),
                    cum_qty=c,
                    leaves_qty=None,
                    transaction_time=T0 + timedelta(seconds=n),
                )
                for i, q, c, n in executions
            ]
            results.append(t.apply_order_report(r, executions=activities))
        else:
            execution, seconds = op[4:]
            f = FillReport(
                order_id=f"id-{cid}",
                client_order_id=cid,
                symbol=symbol,
                side=Side(side),
                qty=D(2),
                price=D("10.2"),
                timestamp=T0 + timedelta(seconds=seconds),
                execution_id=execution or None,
                fee=D("0.01"),
            )
            results.append(t.apply_fill(f))
    return [_result(r) for r in results]


def _result(r: ApplyResult) -> tuple:
    fills = tuple(dataclasses.astuple(f) for f in r.new_fills)
    return (*dataclasses.astuple(r)[:4], fills, *dataclasses.astuple(r)[5:])


def _state(t: OrderTracker, *, restored: bool = False) -> tuple:
    """Everything the tracker holds. ``restored``: without the newest event time, which a
    restore takes from the orders' last events (a stale event can move an order's back)."""
    orders = tuple(
        (
            o.client_order_id,
            o.status,
            o.previous_status,
            o.cum_qty,
            o.cum_avg,
            o.fallback_price,
            o.real_qty,
            o.real_notional,
            o.fees,
            o.filled_qty,
            o.avg_price,
            o.first_fill_at,
            o.last_fill_at,
            o.updated_at,
            o.last_event_at,
            o.illegal,
            tuple(o.flags),
            tuple(dataclasses.astuple(f) for f in o.fills),
        )
        for o in sorted(t.orders(), key=lambda o: o.client_order_id)
    )
    positions = tuple(sorted((s, dataclasses.astuple(p)) for s, p in t.all_positions().items()))
    return (
        orders,
        positions,
        t.net_traded(),
        None if restored else t.last_event_time(),
        sorted(o.client_order_id for o in t.open_orders()),
    )


@settings(max_examples=300, deadline=None)
@given(ops=_operations())
def test_the_fast_fold_gives_the_reference_results_and_state(ops):
    fast = OrderTracker(None, BacktestClock(T0))
    fast_results = _run(fast, ops)
    closed: list = []
    with mock.patch.object(TrackedOrder, "fold", reference_fold):
        ref = OrderTracker(None, BacktestClock(T0), on_trade_closed=closed.append)
        ref_results = _run(ref, ops)
    assert fast_results == ref_results
    assert _state(fast) == _state(ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_operations())
def test_journaled_batches_and_a_restore_agree_with_the_tracker_in_memory(ops, tmp_path_factory):
    path = tmp_path_factory.mktemp("speedups") / "j.db"
    memory = OrderTracker(None, BacktestClock(T0))
    in_memory = _run(memory, ops, batched=True)
    store = Store.open(path)
    journaled = OrderTracker(store, BacktestClock(T0))
    assert _run(journaled, ops, batched=True) == in_memory
    assert _state(journaled) == _state(memory)
    restored = OrderTracker.restore(Store.open(path), BacktestClock(T0))
    assert _state(restored, restored=True) == _state(memory, restored=True)
