"""Acting from the terminal: cancel orders and flatten positions (``mqd cancel``, ``mqd flatten``).

Both act on the broker's truth (its open orders and positions), through the broker the factory
builds (so through the shared throttle budget), and are journaled like any order:

* a cancel is journaled as ``cancel_requested`` before it is sent (``cancel_failed`` when it
  does not end in a cancel), and the order's final report is applied to the tracker, whose
  ``canceled`` transition is the journaled result; an order mqd does not track (placed outside
  it) gets the journal notes only;
* a closing order is an intent of strategy ``flatten``: the tracker journals it with its
  deterministic ``client_order_id`` before the one submit, and a submit whose outcome is unknown
  is left for a lookup by that id, never resent.

``flatten`` cancels every open order on the position's symbol first: the protective stop legs of
bracket and OTO orders hold the shares (Alpaca refuses to sell shares held for orders), and an
entry left working could open the position again. It waits until the broker reports every one
of them closed, reads the position again (a leg may have filled meanwhile) and sends one market
order for exactly what is left, on the closing side: never twice, never past zero. A symbol
whose orders are not all closed within the wait is not closed.

Waiting polls the broker (one listing of the open orders per round, then one lookup per order
that left it) on the injected clock, backing off from ``poll`` to one second, until ``wait``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mqd_cli.brokers.errors import (
    BrokerCallError,
    DuplicateClientOrderId,
    NotFound,
    OrderRejected,
)
from mqd_cli.errors import StateError
from mqd_cli.model import (
    AssetClass,
    OrderIntent,
    OrderReport,
    OrderStatus,
    OrderType,
    PositionReport,
    Side,
    TimeInForce,
)

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.clock import Clock
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.store.stream import Lease
    from mqd_cli.stream.lease import StreamLease

FLATTEN = "flatten"  # the strategy and the exit reason of a closing order
ZERO = Decimal(0)
# Final statuses that mean "it will not trade": what a cancel asks for.
GONE = frozenset({OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})
_MAX_POLL = 1.0  # seconds between two looks at the broker, at most


def symbol_key(symbol: str) -> str:
    """One key for both of Alpaca's spellings of a crypto pair (``BTC/USD``, ``BTCUSD``)."""
    return symbol.strip().upper().replace("/", "")


def _num(value: Decimal | None) -> str:
    return "-" if value is None else format(value.normalize(), "f")


# -- what the operator sees before confirming ----------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    """An open order as the plan shows it: the broker's report and what the journal knows."""

    report: OrderReport
    ours: bool = False  # tracked by mqd (not an order placed outside it)
    parent: str | None = None  # a leg of this order (client_order_id) of ours

    @property
    def id(self) -> str:
        return self.report.id

    @property
    def client_order_id(self) -> str:
        return self.report.client_order_id

    @property
    def symbol(self) -> str:
        return self.report.symbol

    def terms(self) -> str:
        """``stop sell 10 @ 185.30``: what the order does."""
        r = self.report
        size = _num(r.remaining_qty) if r.qty is not None else f"${_num(r.notional)}"
        text = f"{r.raw_value('type')} {r.side.value} {size}"
        prices = [p for p in (r.stop_price, r.limit_price) if p is not None]
        if prices:
            text += " @ " + "/".join(_num(p) for p in prices)
        return text

    def role(self) -> str:
        """Whose order it is: ``mqd``, ``protective leg of <id>``, or ``external``."""
        if self.parent is not None:
            return f"leg of {self.parent}"
        return "mqd" if self.ours else "external"

    def as_dict(self) -> dict[str, Any]:
        r = self.report
        return {
            "id": r.id,
            "client_order_id": r.client_order_id,
            "symbol": r.symbol,
            "side": r.side,
            "type": r.raw_value("type"),
            "qty": r.qty,
            "notional": r.notional,
            "filled_qty": r.filled_qty,
            "limit_price": r.limit_price,
            "stop_price": r.stop_price,
            "status": r.raw_status,
            "ours": self.ours,
            "parent": self.parent,
        }


@dataclass
class CancelOutcome:
    """What became of one cancel: the order's last report and whether it is gone."""

    order: OrderLine
    report: OrderReport | None  # the broker's last word on it (None: not found)
    ok: bool
    detail: str = ""

    @property
    def status(self) -> OrderStatus | None:
        return self.report.status if self.report is not None else None

    @property
    def closed(self) -> bool:
        """The order can no longer trade (canceled, or filled before the cancel)."""
        return self.report is None or self.report.status.is_terminal

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.order.as_dict(),
            "status": self.report.raw_status if self.report is not None else "not_found",
            "filled_qty": self.report.filled_qty
            if self.report is not None
            else self.order.report.filled_qty,
            "ok": self.ok,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Missing:
    """An ORDER or SYMBOL the operator named that there is nothing to act on for."""

    target: str
    reason: str
    ok: bool  # nothing to do is fine (already canceled); not found or filled is not

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "reason": self.reason, "ok": self.ok}


@dataclass(frozen=True)
class ClosePlan:
    """One position to close and the open orders on its symbol, canceled first."""

    position: PositionReport
    orders: tuple[OrderLine, ...] = ()

    @property
    def symbol(self) -> str:
        return self.position.symbol

    @property
    def side(self) -> Side:
        """The closing side: sell a long, buy back a short."""
        return Side.SELL if self.position.qty > 0 else Side.BUY

    def as_dict(self) -> dict[str, Any]:
        p = self.position
        return {
            "symbol": p.symbol,
            "qty": p.qty,
            "avg_entry_price": p.avg_entry_price,
            "current_price": p.current_price,
            "unrealized_pl": p.unrealized_pl,
            "cancel_first": [o.as_dict() for o in self.orders],
            "close": {"side": self.side, "qty": abs(p.qty), "type": "market"},
        }


@dataclass
class CloseOutcome:
    """What became of one position: the cancels, the closing order, the position after."""

    plan: ClosePlan
    canceled: list[CancelOutcome] = field(default_factory=list)
    client_order_id: str | None = None
    order: OrderReport | None = None  # the closing order's last report
    qty_after: Decimal | None = None  # the broker's position afterwards (None: not read)
    ok: bool = False
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        o = self.order
        return {
            "symbol": self.plan.symbol,
            "qty_before": self.plan.position.qty,
            "canceled": [c.as_dict() for c in self.canceled],
            "closing_order": None
            if self.client_order_id is None
            else {
                "client_order_id": self.client_order_id,
                "id": o.id if o is not None else None,
                "side": self.plan.side,
                "status": o.raw_status if o is not None else "unknown",
                "qty": o.qty if o is not None else None,
                "filled_qty": o.filled_qty if o is not None else ZERO,
                "filled_avg_price": o.filled_avg_price if o is not None else None,
            },
            "qty_after": self.qty_after,
            "ok": self.ok,
            "detail": self.detail,
        }


# -- the run's lease ------------------------------------------------------------------------------


def live_holder(lease: StreamLease) -> Lease | None:
    """The live holder of the account's stream lease (a running ``mqd run``), if any."""
    from mqd_cli.store import stream as q

    return q.live_lease(lease.store, lease.account, lease.clock.now())


def refuse_while_running(lease: StreamLease, what: str, *, force: bool) -> Lease | None:
    """``StateError`` while another process holds the run (its lease is live), unless
    ``force``; returns that holder (None when there is none)."""
    holder = live_holder(lease)
    if holder is None or force:
        return holder
    age = (lease.clock.now() - holder.heartbeat_at).total_seconds()
    raise StateError(
        f"{holder.holder} is running this account (mqd run holds its stream lease, heartbeat"
        f" {age:.0f}s ago); {what} now would act behind its back",
        "stop that `mqd run` first (it cancels its orders with --cancel-on-exit), or add"
        " --force to act anyway",
    )


# -- acting ---------------------------------------------------------------------------------------


class Desk:
    """Cancels orders and flattens positions at ``broker``; ``tracker`` journals it all.

    ``wait`` bounds each wait for the broker (cancels to be confirmed, closing orders to fill);
    ``poll`` is the first pause between two looks.
    """

    def __init__(
        self,
        broker: Broker,
        tracker: OrderTracker,
        clock: Clock,
        *,
        wait: timedelta = timedelta(seconds=10),
        poll: float = 0.1,
    ):
        self.broker = broker
        self.tracker = tracker
        self.clock = clock
        self.wait = wait
        self.poll = poll
        self._synced = False

    # -- what is there ---------------------------------------------------------------------------

    def open_orders(self) -> list[OrderLine]:
        """Every open order at the broker, oldest first, as the plan shows it. The first call
        also brings the journal up to date with the broker for the orders mqd tracks."""
        reports = list(reversed(self.broker.list_orders("open")))
        if not self._synced:
            self._synced = True
            self._sync(reports)
        return [self._line(r) for r in reports]

    def _tracked(self, report: OrderReport) -> Any:
        t = self.tracker
        o = t.order(report.client_order_id)
        if o is None and report.id:
            o = t.order_by_broker_id(report.id)
        return o

    def _line(self, report: OrderReport) -> OrderLine:
        o = self._tracked(report)
        if o is None:
            return OrderLine(report)
        return OrderLine(report, ours=not o.external, parent=o.parent)

    def _sync(self, open_reports: Sequence[OrderReport]) -> None:
        """Apply what the broker says of the orders mqd tracks: changed open ones, and those
        the journal holds open that the broker no longer lists (filled or canceled while no
        run was watching)."""
        listed = set()
        for r in open_reports:
            o = self._tracked(r)
            if o is None:
                continue
            listed.add(o.client_order_id)
            if o.status is not r.status or o.filled_qty != r.filled_qty:
                self.tracker.apply_order_report(r, source="rest")
        for o in self.tracker.open_orders():
            if o.client_order_id in listed or not o.broker_id:
                continue  # never sent or unanswered: its own lookup (reconcile) resolves it
            try:
                report = self.broker.get_order(o.broker_id)
            except NotFound:
                continue
            self.tracker.apply_order_report(report, source="rest")

    def resolve(self, targets: Sequence[str]) -> tuple[list[OrderLine], list[Missing]]:
        """The open orders named by ``targets`` (client_order_ids or broker ids), and what
        was named but is not open (not found, already canceled or filled)."""
        lines = self.open_orders()
        by_name: dict[str, OrderLine] = {}
        for line in lines:
            by_name[line.id] = line
            by_name[line.client_order_id] = line
        chosen: dict[str, OrderLine] = {}
        missing: list[Missing] = []
        for target in dict.fromkeys(t.strip() for t in targets if t.strip()):
            found = by_name.get(target)
            if found is None:
                report = self._lookup(target)
                if report is None:
                    missing.append(Missing(target, "not found at the broker", ok=False))
                    continue
                if report.status.is_terminal:
                    gone = report.status in GONE
                    missing.append(Missing(target, f"already {report.raw_status}", ok=gone))
                    continue
                found = self._line(report)
            chosen.setdefault(found.id, found)
        return list(chosen.values()), missing

    def _lookup(self, target: str) -> OrderReport | None:
        for find in (self.broker.get_order, self.broker.get_order_by_client_id):
            try:
                return find(target)
            except NotFound:
                continue
        return None

    def plan_flatten(self, symbols: Sequence[str] | None) -> tuple[list[ClosePlan], list[Missing]]:
        """A plan per position (every one, or those of ``symbols``) with the open orders on
        its symbol; symbols named without a position are returned as missing."""
        positions = [p for p in self.broker.list_positions() if p.qty != 0]
        orders = self.open_orders()
        by_key = {symbol_key(p.symbol): p for p in positions}
        missing: list[Missing] = []
        if symbols is None:
            chosen = positions
        else:
            chosen = []
            for name in dict.fromkeys(s.strip() for s in symbols if s.strip()):
                p = by_key.get(symbol_key(name))
                if p is None:
                    missing.append(Missing(name.upper(), "no position", ok=True))
                elif p not in chosen:
                    chosen.append(p)
        plans = [
            ClosePlan(p, tuple(o for o in orders if symbol_key(o.symbol) == symbol_key(p.symbol)))
            for p in chosen
        ]
        return plans, missing

    # -- cancel ----------------------------------------------------------------------------------

    def cancel(self, lines: Sequence[OrderLine]) -> list[CancelOutcome]:
        """Ask the broker to cancel each order (journaled first), then wait until each is
        closed or ``wait`` runs out; an outcome is ok when the order ended canceled."""
        refused: dict[str, str] = {}
        for line in lines:
            self.tracker.note(
                line.client_order_id,
                "cancel_requested",
                f"broker id {line.id}; {line.terms()} {line.symbol}",
                source="cancel",
            )
            try:
                self.broker.cancel_order(line.id)
            except (NotFound, OrderRejected) as exc:
                # Not cancelable (filled, or canceled with its group): its final state says.
                refused[line.id] = exc.message
            except BrokerCallError as exc:
                refused[line.id] = exc.message
        last = self._await_closed([line.id for line in lines])
        outcomes = []
        for line in lines:
            report = last.get(line.id)
            if report is not None and self._tracked(report) is not None:
                self.tracker.apply_order_report(report, source="cancel")
            outcome = self._judge(line, report, refused.get(line.id))
            if not outcome.ok:
                self.tracker.note(
                    line.client_order_id, "cancel_failed", outcome.detail, source="cancel"
                )
            elif self._tracked(line.report) is None:  # external: the result as a note
                self.tracker.note(
                    line.client_order_id,
                    "cancel_confirmed",
                    f"broker: {outcome.report.raw_status if outcome.report else '?'}",
                    source="cancel",
                )
            outcomes.append(outcome)
        return outcomes

    def _judge(
        self, line: OrderLine, report: OrderReport | None, refusal: str | None
    ) -> CancelOutcome:
        if report is None:
            why = refusal or "the broker no longer knows it"
            return CancelOutcome(line, None, False, f"not found: {why}")
        status = report.status
        if status in GONE:
            partly = f" after {_num(report.filled_qty)} filled" if report.filled_qty else ""
            return CancelOutcome(line, report, True, f"{report.raw_status}{partly}")
        if status is OrderStatus.FILLED:
            return CancelOutcome(
                line, report, False, f"filled before the cancel ({_num(report.filled_qty)})"
            )
        if status.is_terminal:
            return CancelOutcome(line, report, False, f"{report.raw_status}, not canceled")
        why = f" (the broker said: {refusal})" if refusal else ""
        return CancelOutcome(
            line,
            report,
            False,
            f"still {report.raw_status} after {_seconds(self.wait)}{why}",
        )

    def _await_closed(self, ids: Iterable[str]) -> dict[str, OrderReport | None]:
        """Poll until every order of ``ids`` is closed or ``wait`` ran out: the last report of
        each (None when the broker does not know it)."""
        pending = list(dict.fromkeys(ids))
        last: dict[str, OrderReport | None] = {}
        if not pending:
            return last
        deadline = self.clock.monotonic() + self.wait.total_seconds()
        pause = self.poll
        while True:
            still = {r.id: r for r in self.broker.list_orders("open") if r.id in pending}
            for order_id in pending:
                if order_id in still:
                    last[order_id] = still[order_id]
                    continue
                try:
                    last[order_id] = self.broker.get_order(order_id)
                except NotFound:
                    last[order_id] = None
            pending = [
                i for i in pending if (r := last[i]) is not None and not r.status.is_terminal
            ]
            left = deadline - self.clock.monotonic()
            if not pending or left <= 0:
                return last
            self.clock.sleep(min(pause, left))
            pause = min(pause * 2, _MAX_POLL)

    # -- flatten ---------------------------------------------------------------------------------

    def flatten(self, plans: Sequence[ClosePlan]) -> list[CloseOutcome]:
        """Close each planned position: cancel the orders on its symbol, wait for them to be
        closed, read the position again, send one market order for what is left, wait for
        it to fill; every outcome says whether the position is flat at the end."""
        outcomes = {plan.symbol: CloseOutcome(plan) for plan in plans}
        cancels = self.cancel([o for plan in plans for o in plan.orders])
        for c in cancels:
            outcomes[_plan_of(plans, c.order.symbol).symbol].canceled.append(c)
        now = {symbol_key(p.symbol): p.qty for p in self.broker.list_positions()}
        sent: list[CloseOutcome] = []
        for out in outcomes.values():
            plan = out.plan
            open_left = [c for c in out.canceled if not c.closed]
            qty = now.get(symbol_key(plan.symbol), ZERO)
            out.qty_after = qty
            if open_left:
                names = ", ".join(c.order.client_order_id for c in open_left)
                out.detail = (
                    f"not closed: {names} still open after {_seconds(self.wait)} (closing now"
                    " could close twice)"
                )
                continue
            if qty == 0:
                out.ok = True
                out.detail = "flat once its orders were canceled (one of them filled)"
                continue
            if (qty > 0) != (plan.position.qty > 0):
                out.detail = (
                    f"not closed: the position is now {_num(qty)}, the other side of"
                    f" {_num(plan.position.qty)}; review it"
                )
                continue
            if self._submit(out, qty):
                sent.append(out)
        last = self._await_closed([o.order.id for o in sent if o.order is not None])
        for out in sent:
            assert out.order is not None
            report = last.get(out.order.id)
            if report is not None:
                self.tracker.apply_order_report(report, source=FLATTEN)
                out.order = report
        after = {symbol_key(p.symbol): p.qty for p in self.broker.list_positions()}
        for out in sent:
            qty = after.get(symbol_key(out.plan.symbol), ZERO)
            out.qty_after = qty
            o = out.order
            assert o is not None
            if qty == 0:
                out.ok = True
                verb = "sold" if o.side is Side.SELL else "bought"
                out.detail = (
                    f"{verb} {_num(o.filled_qty)} @ {_num(o.filled_avg_price)}"
                    f" with {o.client_order_id}"
                )
            else:
                out.detail = (
                    f"not flat: closing order {o.client_order_id} {o.raw_status},"
                    f" {_num(o.filled_qty)} filled within {_seconds(self.wait)}"
                    + ("; it stays open at the broker" if o.status.is_open else "")
                )
        return list(outcomes.values())

    def _submit(self, out: CloseOutcome, qty: Decimal) -> bool:
        """Send the closing order for ``qty`` (signed position) once; True when the broker has
        it. Journaled before the send; an unknown outcome is never resent."""
        plan = out.plan
        crypto = plan.position.asset_class in (AssetClass.CRYPTO, AssetClass.CRYPTO_PERP)
        intent = self.tracker.start(
            OrderIntent(
                symbol=plan.symbol,
                side=Side.SELL if qty > 0 else Side.BUY,
                qty=abs(qty),
                type=OrderType.MARKET,
                time_in_force=TimeInForce.GTC if crypto else TimeInForce.DAY,
                strategy=FLATTEN,
                reason=FLATTEN,
            )
        )
        cid = intent.client_order_id
        assert cid is not None, "the tracker names every order it starts"
        out.client_order_id = cid
        try:
            report = self.broker.submit_order(intent)
        except DuplicateClientOrderId as exc:
            # An earlier flatten sent this very order and died before the answer: adopt it.
            try:
                report = self.broker.get_order_by_client_id(cid)
            except BrokerCallError:
                self.tracker.on_submit_failed(cid, exc, definitely_rejected=False)
                out.detail = f"not closed: {cid} outcome unknown ({exc.message})"
                return False
        except OrderRejected as exc:
            self.tracker.on_submit_failed(cid, exc, definitely_rejected=True)
            out.detail = f"not closed: the broker rejected {cid}: {exc.message}"
            return False
        except BrokerCallError as exc:
            self.tracker.on_submit_failed(cid, exc, definitely_rejected=False)
            out.detail = (
                f"not closed: {cid} outcome unknown ({exc.message}); journaled as uncertain:"
                " `mqd reconcile` looks it up, a new flatten reuses its id"
            )
            return False
        self.tracker.on_submitted(report)
        out.order = report
        return True


def _plan_of(plans: Sequence[ClosePlan], symbol: str) -> ClosePlan:
    key = symbol_key(symbol)
    return next(p for p in plans if symbol_key(p.symbol) == key)


def _seconds(span: timedelta) -> str:
    from mqd_cli.durations import format_duration

    return format_duration(span)
