"""The order tracker: mqd's memory of what it asked the broker and what happened.

* The state machine is the table in ``order_states`` (``TRANSITIONS``): a pair that is not in
  it is illegal, journaled with ``outcome=illegal`` as evidence, and changes nothing.
* Fills are folded into each ``TrackedOrder`` (``tracked_orders``): deduplicated by
  ``execution_id``, falling back to the cumulative ``filled_qty`` with deterministic synthetic
  fills, so every delivery order converges to the same state.
* Every event is journaled before it changes state, in the same short transaction that writes
  the orders, fills and positions it changed (``order_journal``, ``store/orders.py``);
  ``OrderTracker.restore`` rebuilds from the store, so a ``kill -9`` at any moment loses nothing
  that was committed and never half-applies.
* Positions per symbol use the average-cost method (``positions``); a round trip becomes a
  ``ClosedTrade`` stored through ``store/trades.py``.
* The legs of a bracket, oco or oto order (the ``legs`` of its report: the submit's answer, a
  stream event, a nested lookup) are tracked as orders of their own, linked to their parent
  (``TrackedOrder.parent``) and ours exactly when the parent is. A nested leg gives its
  identity and status only; its fills are counted from its own reports, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mqd_cli.model import (
    FillActivity,
    FillReport,
    OrderIntent,
    OrderReport,
    OrderStatus,
    Side,
    TradeEvent,
    TradeUpdate,
)
from mqd_cli.orders.positions import TrackedPosition
from mqd_cli.orders.states import (
    FROM_TRADE_EVENT,
    OPEN,
    OPEN_SET,
    PENDING,
    PENDING_SET,
    PRE,
    PREVIOUS,
    SAME,
    STATES,
    STATUS_EVENT,
    STEPS,
    TERMINAL,
    TERMINAL_SET,
    TRANSITIONS,
    WORKING,
    OrderEvent,
    event_of,
    next_status,
)
from mqd_cli.orders.tracked import (
    ApplyResult,
    Fill,
    TrackedOrder,
    intent_key,
    new_result,
    slug,
    synthetic_fill_id,
)
from mqd_cli.orders.trades import STOP_LOSS, TAKE_PROFIT, ClosedTrade
from mqd_cli.symbols.spelling import canonical_symbol

if TYPE_CHECKING:
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store

__all__ = [
    "OPEN",
    "OPEN_SET",
    "PENDING",
    "PENDING_SET",
    "PRE",
    "PREVIOUS",
    "SAME",
    "STATES",
    "STATUS_EVENT",
    "TERMINAL",
    "TERMINAL_SET",
    "TRANSITIONS",
    "WORKING",
    "ApplyResult",
    "Fill",
    "OrderEvent",
    "OrderTracker",
    "TrackedOrder",
    "TrackedPosition",
    "event_of",
    "intent_key",
    "next_status",
    "synthetic_fill_id",
]

log = logging.getLogger(__name__)
ZERO = Decimal(0)
S = OrderStatus
E = OrderEvent
# Module constants for the hot path (an enum attribute lookup costs several dict lookups).
_NEW = S.NEW
_TRADE_BUST = E.TRADE_BUST
_UNKNOWN = E.UNKNOWN
_SELL = Side.SELL


# -- the tracker ----------------------------------------------------------------------------------


class OrderTracker:
    """Tracks orders from intent to completion; journals every event before applying it.

    ``store=None`` keeps everything in memory (backtests, benchmarks). Not thread-safe: one
    owner (the run loop or the stream task) calls it. Open orders are indexed on their own, so
    the per-order work (``start``, ``open_orders``) grows with the open orders, not with
    history; ``forget_closed`` lets a long session drop finished orders from memory.
    """

    def __init__(
        self,
        store: Store | None,
        clock: Clock,
        *,
        strategy: str = "",
        on_trade_closed: Callable[[ClosedTrade], None] | None = None,
        namespace: str | None = None,
    ):
        self.store = store
        self.clock = clock
        self.strategy = strategy
        self.on_trade_closed = on_trade_closed
        self._orders: dict[str, TrackedOrder] = {}
        self._open: dict[str, TrackedOrder] = {}  # the orders whose status is in OPEN_SET
        self._by_broker_id: dict[str, str] = {}
        self._forgotten_net = ZERO  # net_traded() of the orders forget_closed dropped
        self._positions: dict[str, TrackedPosition] = {}
        self._sequences: dict[tuple[str, str], int] = {}
        self._last_event_at: datetime | None = None
        self._journal_id = 0
        self._batch_depth = 0
        self._j: Any = None  # the journal module, when there is a store (imported lazily)
        if store is not None:
            from mqd_cli.orders import journal as order_journal

            self._j = order_journal
        self._pending = self._new_pending()
        if namespace is None:
            namespace = self._j.q.namespace(store) if store is not None else "mem"
        self.namespace = namespace

    def _new_pending(self) -> Any:
        if self._j is not None:
            return self._j.Pending()
        return _MemPending()

    # -- restore -----------------------------------------------------------------------------

    @classmethod
    def restore(cls, store: Store, clock: Clock, **kw: Any) -> OrderTracker:
        """Rebuild from the store (after a crash or in another process)."""
        tracker = cls(store, clock, **kw)
        tracker._load()
        tracker._flush_outbox()
        return tracker

    def _load(self) -> None:
        assert self.store is not None
        state = self._j.load(self.store)
        self._orders = state.orders
        self._open = {c: o for c, o in self._orders.items() if o.status in OPEN_SET}
        self._forgotten_net = ZERO  # the store holds every order: nothing is forgotten now
        self._positions = state.positions
        self._sequences = state.sequences
        self._journal_id = state.journal_id
        self._by_broker_id = {o.broker_id: c for c, o in self._orders.items() if o.broker_id}
        times = [o.last_event_at for o in self._orders.values() if o.last_event_at]
        if times and (self._last_event_at is None or max(times) > self._last_event_at):
            self._last_event_at = max(times)

    def refresh(self) -> bool:
        """Reload when another process (``mqd reconcile --apply``) journaled events since."""
        if self.store is None or self._j.q.last_event_id(self.store) == self._journal_id:
            return False
        self._load()
        return True

    def _flush_outbox(self) -> None:
        from mqd_cli.store.trades import insert_closed_trade

        assert self.store is not None
        q = self._j.q
        done = []
        for trade_id, text in q.outbox(self.store):
            trade = self._j.trade_from_json(text)
            insert_closed_trade(self.store, trade)
            done.append(trade_id)
            self._notify(trade)
        q.clear_outbox(self.store, done)

    # -- queries -----------------------------------------------------------------------------

    def order(self, client_order_id: str) -> TrackedOrder | None:
        return self._orders.get(client_order_id)

    def order_by_broker_id(self, broker_id: str) -> TrackedOrder | None:
        cid = self._by_broker_id.get(broker_id)
        return self._orders.get(cid) if cid else None

    def orders(self) -> list[TrackedOrder]:
        return list(self._orders.values())

    def open_orders(self, symbol: str | None = None) -> list[TrackedOrder]:
        if symbol is None:
            return list(self._open.values())
        return [o for o in self._open.values() if o.symbol == symbol]

    def position_qty(self, symbol: str) -> Decimal:
        """The signed quantity our fills hold in ``symbol`` (0 when flat)."""
        p = self._positions.get(symbol)
        return p.qty if p is not None else ZERO

    def positions(self) -> dict[str, TrackedPosition]:
        return {s: p for s, p in self._positions.items() if p.qty}

    def all_positions(self) -> dict[str, TrackedPosition]:
        return dict(self._positions)

    def last_event_time(self) -> datetime | None:
        return self._last_event_at

    def net_traded(self) -> Decimal:
        """Cash our fills moved: sell proceeds minus buy costs minus fees, all orders."""
        total = self._forgotten_net
        for o in self._orders.values():
            total += _net_of(o)
        return total

    def forget_closed(self, before: datetime | None = None) -> int:
        """Drop finished orders (status not open) from memory; returns how many.

        With ``before``, only those last updated before it. Positions, sequences and
        ``net_traded`` are unchanged, and the store keeps every order, so ``restore`` and
        ``refresh`` bring them back. For a long session (a backtest) whose broker says nothing
        more about a finished order: an event that still arrives for a forgotten one (a fill
        after a cancel) is treated as one for an order mqd never placed, so live sessions
        should pass a ``before`` well past the broker's late reports.
        """
        pending = self._pending.orders  # not yet written: keep until flushed
        drop = [
            o
            for cid, o in self._orders.items()
            if cid not in self._open
            and cid not in pending
            and (before is None or (o.updated_at is not None and o.updated_at < before))
        ]
        for o in drop:
            del self._orders[o.client_order_id]
            if o.broker_id and self._by_broker_id.get(o.broker_id) == o.client_order_id:
                del self._by_broker_id[o.broker_id]
            self._forgotten_net += _net_of(o)
        return len(drop)

    # -- submit lifecycle --------------------------------------------------------------------

    def start(self, intent: OrderIntent) -> OrderIntent:
        """Assign the deterministic client_order_id and record the order as pending_new.

        The id is ``mqd-<store tag>-<strategy>-<symbol>-<sequence>`` with the per
        (strategy, symbol) sequence persisted in the store. An identical intent whose submit
        was never answered (the process died in between) gets its id back, so re-sending it
        hits the broker's client_order_id uniqueness check instead of doubling the order.
        """
        strategy = intent.strategy or self.strategy
        intent = replace(intent, strategy=strategy)
        key = intent_key(intent)
        for o in self._open.values():  # an unanswered submit is pending_new, hence open
            if (
                o.intent_key == key
                and o.submit_state in ("pending", "uncertain")
                and o.status is S.PENDING_NEW
                and not o.external
            ):
                return replace(intent, client_order_id=o.client_order_id)
        seq_key = (strategy, intent.symbol)
        seq = self._sequences.get(seq_key, 0) + 1
        cid = f"mqd-{self.namespace}-{slug(strategy, 16)}-{slug(intent.symbol, 12)}-{seq}"
        now = self.clock.now()
        o = TrackedOrder(
            client_order_id=cid,
            symbol=intent.symbol,
            side=intent.side,
            qty=intent.qty,
            notional=intent.notional,
            type=intent.type,
            time_in_force=intent.time_in_force,
            limit_price=intent.limit_price,
            stop_price=intent.stop_price,
            strategy=strategy,
            reason=intent.reason,
            seq=seq,
            intent_key=key,
            created_at=now,
            updated_at=now,
        )
        self._sequences[seq_key] = seq
        self._orders[cid] = o
        self._open[cid] = o
        if self._j is not None:
            self._pending.sequences.append((strategy, intent.symbol, seq))
            payload = self._j.intent_payload(intent, cid)
            self._journal("start", "local", o, "recorded", "", payload, None)
            self._pending.orders[cid] = o
        self._flush()
        return replace(intent, client_order_id=cid)

    def on_submitted(self, report: OrderReport) -> ApplyResult:
        """The broker's answer to the submit: links its id and applies its status."""
        o = self._orders.get(report.client_order_id)
        if o is not None:
            o.submit_state = "acked"
        return self.apply_order_report(report, source="submit")

    def on_submit_failed(
        self, client_order_id: str, error: Exception, *, definitely_rejected: bool
    ) -> ApplyResult:
        """A submit that failed. Definite refusals reject the order; anything ambiguous
        (timeout, network error, 5xx, 429) leaves it pending_new for a lookup by
        client_order_id, because the broker may well have it."""
        o = self._orders.get(client_order_id)
        if o is None:
            return ApplyResult(
                client_order_id=client_order_id,
                event="submit_failed",
                status_before=None,
                status=None,
            )
        detail = f"{type(error).__name__}: {error}"
        if not definitely_rejected:
            o.submit_state = "uncertain"
            self._journal("submit_uncertain", "local", o, "recorded", detail, "{}", None)
            self._pending.orders[client_order_id] = o
            self._flush()
            return ApplyResult(
                client_order_id=client_order_id,
                event="submit_uncertain",
                status_before=o.status,
                status=o.status,
            )
        o.submit_state = "refused"
        result = self._transition(o, E.SUBMIT_REJECTED, "local", detail, "{}", None)
        self._flush()
        return result

    # -- events ------------------------------------------------------------------------------

    def apply(self, update: TradeUpdate, *, source: str = "stream") -> ApplyResult:
        """Apply one trade_updates event: journal first, then apply; idempotent."""
        result = self._apply(update, FROM_TRADE_EVENT.get(update.event, _UNKNOWN), source, None)
        if not self._batch_depth:
            self._flush()
        return result

    def apply_many(
        self, updates: Iterable[TradeUpdate], *, source: str = "stream"
    ) -> list[ApplyResult]:
        """Apply several events in one transaction (same guarantees, fewer commits)."""
        events = FROM_TRADE_EVENT
        unknown = _UNKNOWN
        with self.batch():
            return [self._apply(u, events.get(u.event, unknown), source, None) for u in updates]

    def apply_order_report(
        self,
        report: OrderReport,
        *,
        source: str = "rest",
        executions: Sequence[FillActivity] = (),
    ) -> ApplyResult:
        """Apply a REST snapshot of an order (gap fill, reconcile). Its status is the event;
        a rise of its cumulative filled_qty becomes a synthetic fill, or one per execution when
        ``executions`` (the order's FILL activities) cover the rise exactly."""
        event = STATUS_EVENT.get(report.status, E.UNKNOWN)
        update = TradeUpdate(
            event=TradeEvent.UNKNOWN,
            timestamp=report.updated_at or report.created_at,
            order=report,
            event_raw=event.value,
        )
        payload = self._j.report_payload(report) if self._j is not None else ""
        result = self._apply(update, event, source, payload, executions)
        self._flush()
        return result

    def apply_fill(self, fill: FillReport, *, source: str = "rest") -> ApplyResult:
        """Apply an execution from another source (account activities): deduplicated by
        execution_id against the stream's."""
        o = self._orders.get(fill.client_order_id)
        if o is None and fill.order_id:
            o = self.order_by_broker_id(fill.order_id)
        if o is None:
            return ApplyResult(
                client_order_id=fill.client_order_id,
                event="fill",
                status_before=None,
                status=None,
                illegal="fill for an order we do not track",
            )
        payload = self._j.fill_payload(fill) if self._j is not None else ""
        result = self._apply_fill_only(o, fill, source, payload)
        self._flush()
        return result

    def mark_not_found(self, client_order_id: str, *, source: str = "reconcile") -> ApplyResult:
        """Reconcile's targeted lookup answered 404: resolve the order locally."""
        o = self._orders[client_order_id]
        result = self._transition(o, E.NOT_FOUND, source, "broker lookup: not found", "{}", None)
        self._flush()
        return result

    def note(
        self, client_order_id: str, event: str, detail: str = "", *, source: str = "local"
    ) -> None:
        """Journal a request mqd made about an order (``cancel_requested``) or what came of it
        (``cancel_failed``) as evidence, changing no state. The order may be one mqd does not
        track (an external order an operator cancels)."""
        if self._j is None:
            return
        now = self.clock.now()
        row = (self._j.ts(now), source, client_order_id, event, "recorded", detail, "{}")
        self._pending.events.append(row)
        self._flush()

    def adopt(self, report: OrderReport, *, source: str = "reconcile") -> ApplyResult:
        """Track an order placed outside mqd (marked external) and apply its report."""
        return self.apply_order_report(report, source=source)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several calls into one transaction."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if not self._batch_depth:
                self._flush()

    # -- internals ---------------------------------------------------------------------------

    def _find_or_adopt(self, report: OrderReport) -> tuple[TrackedOrder, bool]:
        o = self.order_by_broker_id(report.id) if report.id else None
        if o is not None:
            return o, False
        # Unknown: an order placed outside mqd, or the successor of a replace.
        parent = self.order_by_broker_id(report.replaces) if report.replaces else None
        o = TrackedOrder(
            client_order_id=report.client_order_id,
            symbol=canonical_symbol(report.symbol, report.asset_class),
            side=report.side,
            qty=report.qty,
            notional=report.notional,
            type=report.type,
            time_in_force=report.time_in_force,
            limit_price=report.limit_price,
            stop_price=report.stop_price,
            strategy=parent.strategy if parent else "",
            reason=parent.reason if parent else "",
            external=parent.external if parent else True,
            submit_state="acked",
            created_at=report.created_at,
            updated_at=report.created_at,
            replaces=parent.client_order_id if parent else None,
            parent=parent.parent if parent else None,  # a replaced leg's successor is a leg
        )
        self._orders[o.client_order_id] = o
        self._open[o.client_order_id] = o
        return o, True

    def _adopt_legs(self, parent: TrackedOrder, report: OrderReport, source: str) -> None:
        """Track the legs of ``parent`` not known yet: same strategy, ours when it is ours.

        Only their status is applied from the nested report (journaled as evidence); fills are
        counted from each leg's own events and reports, so none is counted twice."""
        for leg in report.legs:
            if (leg.id and leg.id in self._by_broker_id) or leg.client_order_id in self._orders:
                continue
            o = TrackedOrder(
                client_order_id=leg.client_order_id,
                symbol=parent.symbol,
                side=leg.side,
                qty=leg.qty,
                notional=leg.notional,
                type=leg.type,
                time_in_force=leg.time_in_force,
                limit_price=leg.limit_price,
                stop_price=leg.stop_price,
                strategy=parent.strategy,
                reason=STOP_LOSS if leg.stop_price is not None else TAKE_PROFIT,
                external=parent.external,
                submit_state="acked",
                created_at=leg.created_at,
                updated_at=leg.created_at,
                parent=parent.client_order_id,
            )
            self._orders[o.client_order_id] = o
            self._open[o.client_order_id] = o
            if leg.id:
                o.broker_id = leg.id
                self._by_broker_id[leg.id] = o.client_order_id
            payload = self._j.report_payload(leg) if self._j is not None else ""
            event = STATUS_EVENT.get(leg.status, E.UNKNOWN)
            self._transition(o, event, source, "leg", payload, None, adopted=True)

    def _apply(
        self,
        update: TradeUpdate,
        event: OrderEvent,
        source: str,
        payload: str | None,
        executions: Sequence[FillActivity] = (),
    ) -> ApplyResult:
        report = update.order
        o = self._orders.get(report.client_order_id)
        adopted = False
        if o is None:
            o, adopted = self._find_or_adopt(report)
        if payload is None:
            payload = self._j.update_payload(update) if self._j is not None else ""
        rid = report.id
        if rid and o.broker_id != rid:
            o.broker_id = rid
            self._by_broker_id[rid] = o.client_order_id
        if report.replaced_by:
            o.replaced_by = report.replaced_by
        result = self._transition(o, event, source, "", payload, update, adopted, executions)
        if report.legs:
            self._adopt_legs(o, report, source)
        return result

    def _transition(
        self,
        o: TrackedOrder,
        event: OrderEvent,
        source: str,
        detail: str,
        payload: str,
        update: TradeUpdate | None,
        adopted: bool = False,
        executions: Sequence[FillActivity] = (),
    ) -> ApplyResult:
        before = o.status
        name = event._value_
        cid = o.client_order_id
        step = STEPS.get((before, event))
        when = update.timestamp if update is not None else self.clock.now()
        pending = self._pending
        if step is None:
            o.illegal += 1
            evidence = f"illegal transition {before._value_} --{name}-->"
            self._journal(name, source, o, "illegal", evidence, payload, when)
            pending.orders[cid] = o  # the count and any new broker id
            return new_result(
                cid, name, before, before, (), ZERO, False, adopted, False, evidence, ()
            )
        nxt, enters_pending, completed = step
        if nxt is None:
            nxt = o.previous_status or _NEW
        new_fills: list[Fill] = []
        totals = None
        if update is not None:
            totals = o.fold(update, source, new_fills, pending.fills, executions)
            o.last_event_at = when
            last = self._last_event_at
            if last is None or when > last:
                self._last_event_at = when
        if event is _TRADE_BUST and "trade_bust" not in o.flags:
            o.flags.append("trade_bust")
        if enters_pending:
            o.previous_status = before
        o.status = nxt
        if nxt in OPEN_SET:
            self._open[cid] = o
        else:
            self._open.pop(cid, None)
        o.updated_at = when
        if totals is None:
            dq = ZERO
            closed: tuple[ClosedTrade, ...] = ()
        else:
            q0, n0, f0 = totals
            dq = o.filled_qty - q0
            closed = self._position_delta(o, dq, o.filled_notional - n0, o.fees - f0, when)
        changed = nxt is not before or dq or adopted or new_fills
        if self._j is not None:
            self._journal(
                name, source, o, "applied" if changed else "unchanged", detail, payload, when
            )
        pending.orders[cid] = o
        return new_result(
            cid,
            name,
            before,
            nxt,
            tuple(new_fills),
            dq,
            completed,
            adopted,
            not changed,
            "",
            closed,
        )

    def _apply_fill_only(
        self, o: TrackedOrder, fill: FillReport, source: str, payload: str
    ) -> ApplyResult:
        q0, n0, f0 = o.filled_qty, o.filled_notional, o.fees
        if not fill.execution_id or fill.execution_id in o.real:
            self._journal("fill", source, o, "duplicate", "", payload, fill.timestamp)
            return ApplyResult(
                client_order_id=o.client_order_id,
                event="fill",
                status_before=o.status,
                status=o.status,
                duplicate=True,
            )
        f = Fill(
            fill_id=fill.execution_id,
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            side=o.side,
            qty=fill.qty,
            price=fill.price,
            timestamp=fill.timestamp,
            fee=fill.fee,
            synthetic=False,
            source=source,
        )
        o.add_real(f)
        self._pending.fills.append(f)
        dn, dfee = o.filled_notional - n0, o.fees - f0
        closed = self._position_delta(o, o.filled_qty - q0, dn, dfee, fill.timestamp)
        self._journal("fill", source, o, "applied", "", payload, fill.timestamp)
        self._pending.orders[o.client_order_id] = o
        # Delivered: only what the execution adds above the quantity already counted (a
        # synthetic fill may have stood for it), so deliveries sum to the filled quantity.
        dq = o.filled_qty - q0
        new = () if dq <= 0 else (f,) if dq >= f.qty else (replace(f, qty=dq),)
        return ApplyResult(
            client_order_id=o.client_order_id,
            event="fill",
            status_before=o.status,
            status=o.status,
            new_fills=new,
            filled_qty_delta=dq,
            closed_trades=closed,
        )

    def _position_delta(
        self, o: TrackedOrder, dq: Decimal, dn: Decimal, dfee: Decimal, when: datetime
    ) -> tuple[ClosedTrade, ...]:
        """Move the symbol's position by an order's change of (filled qty, notional, fees)."""
        if not (dq or dn or dfee):
            return ()
        p = self._positions.get(o.symbol)
        if p is None:
            p = self._positions[o.symbol] = TrackedPosition(symbol=o.symbol)
        trade = p.apply(o, dq, dn, dfee, when)
        self._pending.positions[o.symbol] = p
        if trade is None:
            return ()
        self._pending.trades.append(trade)
        return (trade,)

    def _journal(
        self,
        event: str,
        source: str,
        o: TrackedOrder | None,
        outcome: str,
        detail: str,
        payload: str,
        when: datetime | None,
    ) -> None:
        if self._j is None:
            return
        self._pending.events.append(
            (
                self._j.ts(when),
                source,
                o.client_order_id if o else None,
                event,
                outcome,
                detail,
                payload,
            )
        )

    def _flush(self) -> None:
        if self._batch_depth:
            return
        if self._j is None:  # in memory: nothing to write, reuse the buffers
            p = self._pending
            p.orders.clear()
            p.fills.clear()
            p.positions.clear()
            if p.trades:
                trades, p.trades = p.trades, []
                for trade in trades:
                    self._notify(trade)
            return
        pending, self._pending = self._pending, self._j.Pending()
        if not (pending.events or pending.orders or pending.sequences):
            return
        q = self._j.q
        try:
            last = q.write_changes(self.store, pending.changes(), q.ts(self.clock.now()) or "")
        except Exception:
            # Memory ran ahead of a failed write: reload the committed truth, then report.
            log.exception("order journal write failed; reloading state from the store")
            self._load()
            raise
        if last is not None:
            self._journal_id = last
        if pending.trades:
            from mqd_cli.store.trades import insert_closed_trade

            assert self.store is not None  # a journal (self._j) implies a store
            for trade in pending.trades:
                insert_closed_trade(self.store, trade)
                self._notify(trade)
            q.clear_outbox(self.store, [t.trade_id for t in pending.trades])

    def _notify(self, trade: ClosedTrade) -> None:
        if self.on_trade_closed is None:
            return
        try:
            self.on_trade_closed(trade)
        except Exception:
            log.exception("on_trade_closed callback failed for %s", trade.trade_id)


def _net_of(o: TrackedOrder) -> Decimal:
    """Cash an order's fills moved: sell proceeds or minus buy costs, minus fees."""
    n = o.filled_notional
    return (n if o.side is _SELL else -n) - o.fees


class _MemPending:
    """The in-memory tracker's buffers: only closed trades are kept (for the callback)."""

    __slots__ = ("orders", "fills", "positions", "trades")

    def __init__(self) -> None:
        self.orders: dict[str, TrackedOrder] = {}
        self.fills: list[Fill] = []
        self.positions: dict[str, TrackedPosition] = {}
        self.trades: list[ClosedTrade] = []
