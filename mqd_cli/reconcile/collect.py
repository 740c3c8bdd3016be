"""Reading both sides, beside a running loop: the broker first, our store after."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.clock import Clock
    from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.reconcile.diff import (
    confirm,
    diff,
    in_flight_adjustment,
    index_broker_orders,
    readings,
    shadow_candidates,
)
from mqd_cli.reconcile.model import (
    DEFAULT_CONFIRM_PAUSE,
    DEFAULT_GRACE,
    DEFAULT_LOOKBACK,
    DEFAULT_LOOKS,
    MAX_CONFIRM_PAUSE,
    MAX_LOOKS,
    ZERO,
    BrokerSnapshot,
    LocalOrder,
    LocalState,
    Lookup,
    ReconcileReport,
)

# -- building the local snapshot ------------------------------------------------------------------


def local_state(
    tracker: OrderTracker,
    *,
    cash_baseline: Decimal | None = None,
    net_traded_baseline: Decimal | None = None,
) -> LocalState:
    orders = tuple(
        LocalOrder(
            client_order_id=o.client_order_id,
            broker_id=o.broker_id,
            symbol=o.symbol,
            side=o.side,
            status=o.status,
            filled_qty=o.filled_qty,
            avg_price=o.avg_price,
            created_at=o.created_at,
            updated_at=o.updated_at,
            is_open=o.is_open,
            external=o.external,
        )
        for o in tracker.orders()
    )
    positions = {s: p.qty for s, p in tracker.positions().items()}
    net = tracker.net_traded()
    since = ZERO
    if cash_baseline is not None and net_traded_baseline is not None:
        since = net - net_traded_baseline
    else:
        cash_baseline = None
    return LocalState(
        orders=orders,
        positions=positions,
        cash_baseline=cash_baseline,
        net_traded_since_baseline=since,
        net_traded=net,
    )


# -- orchestration (not pure) ---------------------------------------------------------------------


def collect(
    tracker: OrderTracker,
    broker: Broker,
    clock: Clock,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    grace: timedelta = DEFAULT_GRACE,
    cash_baseline: Decimal | None = None,
    net_traded_baseline: Decimal | None = None,
) -> tuple[LocalState, BrokerSnapshot, dict[str, Lookup]]:
    """Fetch the broker's snapshots, then look up each shadow candidate individually.

    A failing listing raises (the command exits 3: could not check). A failing lookup only
    makes that order ``unverified``: a network error, a timeout or a 429 never confirms a
    shadow; only ``NotFound`` does.
    """
    now = clock.now()
    open_orders = broker.list_orders("open")
    closed = broker.list_orders("closed", after=now - lookback)
    positions = broker.list_positions()
    account = broker.get_account()
    snapshot = BrokerSnapshot(
        orders=tuple(open_orders) + tuple(closed),
        positions=tuple(positions),
        account=account,
        taken_at=now,
    )
    local = local_state(
        tracker, cash_baseline=cash_baseline, net_traded_baseline=net_traded_baseline
    )
    lookups = look_up(broker, shadow_candidates(local, snapshot, now, grace))
    return local, snapshot, lookups


def look_up(broker: Broker, candidates: Iterable[LocalOrder]) -> dict[str, Lookup]:
    """A targeted lookup of each candidate: found, not_found (only a 404) or error."""
    from mqd_cli.brokers.errors import AuthFailed, BrokerCallError, NotFound

    lookups: dict[str, Lookup] = {}
    for o in candidates:
        try:
            if o.broker_id:
                report = broker.get_order(o.broker_id)
            else:
                report = broker.get_order_by_client_id(o.client_order_id)
            lookups[o.client_order_id] = Lookup(o.client_order_id, "found", report)
        except NotFound:
            lookups[o.client_order_id] = Lookup(o.client_order_id, "not_found")
        except AuthFailed:
            raise
        except BrokerCallError as exc:
            lookups[o.client_order_id] = Lookup(
                o.client_order_id, "error", error=f"{type(exc).__name__}: {exc}"
            )
    return lookups


# -- looks beside a running loop (not pure) -------------------------------------------------------


def broker_snapshot(
    broker: Broker, clock: Clock, *, lookback: timedelta = DEFAULT_LOOKBACK
) -> BrokerSnapshot:
    """The broker's orders, listed between two readings of its positions and account, and
    the open orders listed once more after the second reading.

    A fill while the orders are listed shows in one reading and not the other, and the
    listings may show its order before or after it; ``readings`` picks, per symbol, the one
    the orders in flight agree with.
    """
    now = clock.now()
    positions_before = tuple(broker.list_positions())
    account_before = broker.get_account()
    orders = tuple(broker.list_orders("open")) + tuple(
        broker.list_orders("closed", after=now - lookback)
    )
    positions = tuple(broker.list_positions())
    account = broker.get_account()
    open_after = tuple(broker.list_orders("open"))
    return BrokerSnapshot(
        orders=orders,
        positions=positions,
        account=account,
        taken_at=now,
        positions_before=positions_before,
        account_before=account_before,
        open_after=open_after,
    )


def read_local(
    tracker: OrderTracker,
    *,
    cash_baseline: Decimal | None = None,
    net_traded_baseline: Decimal | None = None,
) -> LocalState:
    """Our state from the store, consistent: orders, fills and positions of one moment.

    The tracker reloads what other processes journaled. When the journal grew during that
    read (a running loop writes every few milliseconds), the read is done again inside one
    short write transaction: writers wait for it (a few milliseconds), so the tables are read
    as of one moment.
    """
    store = tracker.store
    if store is not None:
        from mqd_cli.store import orders as q

        before = q.last_event_id(store)
        tracker.refresh()
        if q.last_event_id(store) != before:
            with store.write():
                tracker.refresh()
    return local_state(
        tracker, cash_baseline=cash_baseline, net_traded_baseline=net_traded_baseline
    )


def journal_id(tracker: OrderTracker) -> int:
    """The journal's last id (0 without a store)."""
    if tracker.store is None:
        return 0
    from mqd_cli.store import orders as q

    return q.last_event_id(tracker.store)


def journaled_since(tracker: OrderTracker, after_id: int) -> list[tuple[int, str]]:
    """(journal id, client_order_id) of the order events written after ``after_id``."""
    if tracker.store is None:
        return []
    from mqd_cli.store import orders as q

    return [
        (int(e["id"]), e["client_order_id"])
        for e in q.events(tracker.store, after_id=after_id)
        if e["client_order_id"]
    ]


@dataclass(frozen=True)
class Look:
    """One reading of both sides: the broker first, our store after."""

    local: LocalState
    snapshot: BrokerSnapshot
    lookups: Mapping[str, Lookup]
    journal_from: int  # the journal's last id before the broker was read

    def widened(self, events: Iterable[tuple[int, str]]) -> Look:
        """The look with every order journaled after its start marked in flight."""
        more = {cid for i, cid in events if i > self.journal_from}
        if more <= self.local.in_flight:
            return self
        return replace(self, local=replace(self.local, in_flight=self.local.in_flight | more))

    def report(self, grace: timedelta) -> ReconcileReport:
        return diff(
            self.local, self.snapshot, self.lookups, now=self.snapshot.taken_at, grace=grace
        )


def take_look(
    tracker: OrderTracker,
    broker: Broker,
    clock: Clock,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    grace: timedelta = DEFAULT_GRACE,
    cash_baseline: Decimal | None = None,
    net_traded_baseline: Decimal | None = None,
) -> Look:
    """Read the broker, then our store, then look up each shadow candidate.

    Orders journaled after the broker reading began are in flight. A failing listing raises
    (exit 3); a failing lookup only makes that order ``unverified``.
    """
    start = journal_id(tracker)
    snapshot = broker_snapshot(broker, clock, lookback=lookback)
    local = read_local(
        tracker, cash_baseline=cash_baseline, net_traded_baseline=net_traded_baseline
    )
    look = Look(local, snapshot, {}, start).widened(journaled_since(tracker, start))
    lookups = look_up(broker, shadow_candidates(look.local, snapshot, snapshot.taken_at, grace))
    return replace(look, lookups=lookups)


@dataclass(frozen=True)
class Checked:
    """What ``check`` saw: the confirmed report and each look with its own report."""

    report: ReconcileReport
    looks: tuple[Look, ...]
    reports: tuple[ReconcileReport, ...]

    def baseline(self, applied_net: Decimal = ZERO) -> tuple[Decimal, Decimal] | None:
        """(broker cash, our net traded) of one moment, the next run's cash baseline: the
        last look's cash with our net traded as of that reading (orders in flight at the
        broker's figure, plus what ``--apply`` added since). None when that look could not
        judge the cash (trading while it was read): the previous baseline stays in use."""
        look = self.looks[-1]
        if look.local.net_traded is None:
            return None
        found = [lk.report for lk in look.lookups.values() if lk.report is not None]
        by_cid, by_id = index_broker_orders((*look.snapshot.orders, *found))
        _, cash_adjust = in_flight_adjustment(look.local, by_cid, by_id)
        cash = readings(look.local, look.snapshot, by_cid, by_id).cash
        if cash is None or cash_adjust is None:
            return None
        return cash, look.local.net_traded + cash_adjust + applied_net


def check(
    tracker: OrderTracker,
    broker: Broker,
    clock: Clock,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    grace: timedelta = DEFAULT_GRACE,
    cash_baseline: Decimal | None = None,
    net_traded_baseline: Decimal | None = None,
    looks: int = DEFAULT_LOOKS,
    pause: timedelta = DEFAULT_CONFIRM_PAUSE,
) -> Checked:
    """Reconcile beside a running loop: look, and while findings remain, pause and look
    again (at most ``looks`` looks, ``pause`` apart on ``clock``); report only what every
    look found. A first look in sync ends at once. Orders journaled after any look began are
    in flight for that look; before findings are reported, one more pause lets the journal
    catch up with the last look (what the stream delivers late is in flight too).
    """
    looks = max(1, min(int(looks), MAX_LOOKS))
    wait = min(max(pause, timedelta(0)), MAX_CONFIRM_PAUSE).total_seconds()
    taken: list[Look] = []
    reports: list[ReconcileReport] = []
    report: ReconcileReport | None = None
    for n in range(looks):
        if n:
            clock.sleep(wait)
        taken.append(
            take_look(
                tracker,
                broker,
                clock,
                lookback=lookback,
                grace=grace,
                cash_baseline=cash_baseline,
                net_traded_baseline=net_traded_baseline,
            )
        )
        events = journaled_since(tracker, taken[0].journal_from)
        taken = [look.widened(events) for look in taken]
        reports = [look.report(grace) for look in taken]
        report = confirm(reports)
        if not report.findings:
            break
    assert report is not None
    if report.findings and looks > 1:
        clock.sleep(wait)
        events = journaled_since(tracker, taken[0].journal_from)
        taken = [look.widened(events) for look in taken]
        reports = [look.report(grace) for look in taken]
        report = confirm(reports)
    return Checked(report, tuple(taken), tuple(reports))
