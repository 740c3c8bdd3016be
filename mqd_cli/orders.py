"""The order tracker: mqd's memory of what it asked the broker and what happened.

* ``TRANSITIONS`` is the order state machine as an explicit table ``(state, event) -> next``.
  A pair that is not in the table is illegal: the event is journaled with ``outcome=illegal``
  as evidence and changes nothing.
* Fills are aggregated per order (filled quantity, Decimal average, fees, first/last time),
  deduplicated by ``execution_id``. When an event carries no execution id the order's
  cumulative ``filled_qty`` is the truth: a rise creates a *synthetic* fill with a
  deterministic id for the difference, priced so the average matches the broker's. A real fill
  arriving later replaces synthetic quantity instead of adding to it, so every order's filled
  quantity is ``max(highest cumulative seen, sum of real fills)`` whatever the arrival order.
* Every event is journaled before it changes state, in the same short transaction that writes
  the orders, fills and positions it changed; ``OrderTracker.restore`` rebuilds from the store,
  so a ``kill -9`` at any moment loses nothing that was committed and never half-applies.
* Positions per symbol use the **average-cost** method: same-direction fills add to the cost
  basis, reducing fills realize ``(exit - average) * qty``. A round trip (flat to flat, or to a
  flip through zero) becomes a ``ClosedTrade`` stored through ``store/trades.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from mqd_cli.model import (
    FillReport,
    OrderIntent,
    OrderReport,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradeEvent,
    TradeUpdate,
)
from mqd_cli.trades import ClosedTrade, make_trade_id

if TYPE_CHECKING:
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store

log = logging.getLogger(__name__)
ZERO = Decimal(0)
S = OrderStatus


class OrderEvent(StrEnum):
    """Everything that can move an order: every trade_updates event, the statuses a REST report
    can show that have no stream event (held, accepted_for_bidding, pending_review), and two
    local events (the broker definitely refused the submit; reconcile confirmed not found)."""

    NEW = "new"
    FILL = "fill"
    PARTIAL_FILL = "partial_fill"
    CANCELED = "canceled"
    EXPIRED = "expired"
    DONE_FOR_DAY = "done_for_day"
    REPLACED = "replaced"
    REJECTED = "rejected"
    PENDING_NEW = "pending_new"
    STOPPED = "stopped"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    CALCULATED = "calculated"
    SUSPENDED = "suspended"
    ORDER_REPLACE_REJECTED = "order_replace_rejected"
    ORDER_CANCEL_REJECTED = "order_cancel_rejected"
    ACCEPTED = "accepted"
    RESTATED = "restated"
    TRADE_BUST = "trade_bust"
    UNKNOWN = "unknown"
    HELD = "held"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    PENDING_REVIEW = "pending_review"
    SUBMIT_REJECTED = "submit_rejected"
    NOT_FOUND = "not_found"


E = OrderEvent


class _Keep(Enum):
    SAME = "same"  # legal, the status does not change (fills may still apply)
    PREVIOUS = "previous"  # back to the status before pending_cancel / pending_replace


SAME = _Keep.SAME
PREVIOUS = _Keep.PREVIOUS

# State groups. done_for_day is in Alpaca's `closed` listing but the order resumes the next day,
# so for the state machine it is open.
PRE = (S.PENDING_NEW, S.ACCEPTED, S.ACCEPTED_FOR_BIDDING, S.PENDING_REVIEW, S.HELD)
WORKING = (S.NEW, S.PARTIALLY_FILLED, S.DONE_FOR_DAY, S.STOPPED, S.SUSPENDED, S.CALCULATED)
PENDING = (S.PENDING_CANCEL, S.PENDING_REPLACE)
OPEN = PRE + WORKING + PENDING
TERMINAL = (S.FILLED, S.CANCELED, S.EXPIRED, S.REPLACED, S.REJECTED)
STATES = OPEN + TERMINAL
OPEN_SET = frozenset(OPEN)
PENDING_SET = frozenset(PENDING)
TERMINAL_SET = frozenset(TERMINAL)


def _table() -> dict[tuple[OrderStatus, OrderEvent], OrderStatus | _Keep]:
    t: dict[tuple[OrderStatus, OrderEvent], OrderStatus | _Keep] = {}

    def rule(event: OrderEvent, sources: Iterable[OrderStatus], nxt: OrderStatus | _Keep):
        for s in sources:
            t[(s, event)] = nxt

    before_routing = (S.PENDING_NEW, S.ACCEPTED, S.ACCEPTED_FOR_BIDDING, S.PENDING_REVIEW)
    rule(E.PENDING_NEW, before_routing, S.PENDING_NEW)  # accepted -> pending_new -> new
    rule(E.ACCEPTED, before_routing, S.ACCEPTED)
    rule(E.ACCEPTED_FOR_BIDDING, before_routing, S.ACCEPTED_FOR_BIDDING)
    rule(E.PENDING_REVIEW, before_routing, S.PENDING_REVIEW)
    # held: a bracket leg waiting for its sibling; it becomes new when activated.
    rule(E.HELD, (*before_routing, S.HELD), S.HELD)
    # new: routed. Also the next-day resumption of a done_for_day order, or a suspension lifted.
    # A stale `new` after a fill is illegal: filled quantity never goes back.
    rule(E.NEW, (*PRE, S.NEW, S.DONE_FOR_DAY, S.SUSPENDED), S.NEW)
    rule(E.PARTIAL_FILL, PRE + WORKING, S.PARTIALLY_FILLED)
    # A fill racing a cancel or replace request: the fill counts, the request stays pending.
    rule(E.PARTIAL_FILL, PENDING, SAME)
    # Late partial fill after the order is already done (stream and REST race, or a fill after
    # the cancel was processed): only the missing quantity is added, the status stays.
    rule(E.PARTIAL_FILL, (S.FILLED, S.CANCELED, S.EXPIRED, S.REPLACED), SAME)
    rule(E.FILL, OPEN, S.FILLED)
    rule(E.FILL, (S.FILLED,), SAME)
    # A complete fill reported after cancel/expire/replace: the exchange executed the order
    # before the cancel took effect. Completion wins, so every delivery order converges.
    rule(E.FILL, (S.CANCELED, S.EXPIRED, S.REPLACED), S.FILLED)
    rule(E.CANCELED, OPEN, S.CANCELED)
    rule(E.CANCELED, (S.CANCELED,), SAME)
    rule(E.EXPIRED, OPEN, S.EXPIRED)
    rule(E.EXPIRED, (S.EXPIRED,), SAME)
    rule(E.DONE_FOR_DAY, PRE + WORKING, S.DONE_FOR_DAY)
    rule(E.CALCULATED, WORKING, S.CALCULATED)
    rule(E.CALCULATED, (S.FILLED,), SAME)  # settlement calculation after the last fill
    # replaced: the event is on the old order (it carries replaced_by); the successor arrives
    # as its own order whose `replaces` links back. Legal from any open state because the
    # pending_replace event may have been missed.
    rule(E.REPLACED, OPEN, S.REPLACED)
    rule(E.REPLACED, (S.REPLACED,), SAME)
    # Rejected before trading, or a stop-limit rejected on trigger. Never after a partial fill
    # (nautilus PR #4479: partially_filled -> rejected looped forever).
    rule(E.REJECTED, (*PRE, S.NEW, S.SUSPENDED, S.STOPPED), S.REJECTED)
    rule(E.REJECTED, (S.REJECTED,), SAME)
    rule(E.PENDING_CANCEL, (*PRE, *WORKING, S.PENDING_REPLACE), S.PENDING_CANCEL)
    rule(E.PENDING_CANCEL, (S.PENDING_CANCEL,), SAME)
    rule(E.PENDING_REPLACE, PRE + WORKING, S.PENDING_REPLACE)
    rule(E.PENDING_REPLACE, (S.PENDING_REPLACE,), SAME)
    rule(E.STOPPED, (*PRE, S.NEW, S.PARTIALLY_FILLED, S.STOPPED), S.STOPPED)
    rule(E.SUSPENDED, (*PRE, S.NEW, S.PARTIALLY_FILLED, S.DONE_FOR_DAY, S.SUSPENDED), S.SUSPENDED)
    # A refused cancel/replace returns to where the order was. Outside the pending state it is
    # a no-op: typically "too late to cancel" arriving after the fill that made it too late.
    rule(E.ORDER_CANCEL_REJECTED, STATES, SAME)
    rule(E.ORDER_CANCEL_REJECTED, (S.PENDING_CANCEL,), PREVIOUS)
    rule(E.ORDER_REPLACE_REJECTED, STATES, SAME)
    rule(E.ORDER_REPLACE_REJECTED, (S.PENDING_REPLACE,), PREVIOUS)
    rule(E.RESTATED, STATES, SAME)
    # A busted fill: legal, the status stays; the event is flagged and reconcile reports the
    # broker's lower filled_qty as fill drift for an operator to review.
    rule(E.TRADE_BUST, STATES, SAME)
    # Local: the submit was definitely refused (a 4xx, not a timeout).
    rule(E.SUBMIT_REJECTED, (S.PENDING_NEW,), S.REJECTED)
    # Local: reconcile's targeted lookup answered 404. Never reached the venue -> rejected;
    # was working -> canceled (its fills are kept).
    rule(E.NOT_FOUND, PRE, S.REJECTED)
    rule(E.NOT_FOUND, WORKING + PENDING, S.CANCELED)
    # E.UNKNOWN has no rule: an event we do not understand is evidence, never applied.
    return t


TRANSITIONS = _table()

STATUS_EVENT: dict[OrderStatus, OrderEvent] = {
    S.NEW: E.NEW,
    S.PARTIALLY_FILLED: E.PARTIAL_FILL,
    S.FILLED: E.FILL,
    S.DONE_FOR_DAY: E.DONE_FOR_DAY,
    S.CANCELED: E.CANCELED,
    S.EXPIRED: E.EXPIRED,
    S.REPLACED: E.REPLACED,
    S.PENDING_CANCEL: E.PENDING_CANCEL,
    S.PENDING_REPLACE: E.PENDING_REPLACE,
    S.PENDING_REVIEW: E.PENDING_REVIEW,
    S.ACCEPTED: E.ACCEPTED,
    S.PENDING_NEW: E.PENDING_NEW,
    S.ACCEPTED_FOR_BIDDING: E.ACCEPTED_FOR_BIDDING,
    S.STOPPED: E.STOPPED,
    S.REJECTED: E.REJECTED,
    S.SUSPENDED: E.SUSPENDED,
    S.CALCULATED: E.CALCULATED,
    S.HELD: E.HELD,
    S.UNKNOWN: E.UNKNOWN,
}


def next_status(
    state: OrderStatus, event: OrderEvent, previous: OrderStatus | None = None
) -> OrderStatus | None:
    """The status after ``event``, or None when the transition is illegal."""
    nxt = TRANSITIONS.get((state, event))
    if nxt is None:
        return None
    if nxt is SAME:
        return state
    if nxt is PREVIOUS:
        return previous or S.NEW
    return nxt


_FROM_TRADE_EVENT = {ev: OrderEvent(ev.value) for ev in TradeEvent}


def event_of(update: TradeUpdate) -> OrderEvent:
    return _FROM_TRADE_EVENT.get(update.event, E.UNKNOWN)


# -- fills and orders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """One execution (real: the broker's execution id; synthetic: derived from cumulative qty)."""

    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    timestamp: datetime
    fee: Decimal = ZERO
    synthetic: bool = False
    source: str = "stream"


def synthetic_fill_id(client_order_id: str, cumulative_qty: Decimal) -> str:
    """Deterministic: the same order reaching the same cumulative quantity, the same id."""
    raw = f"{client_order_id}|{cumulative_qty.normalize():f}"
    return "syn-" + hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass
class TrackedOrder:
    """What we believe about one order. Mutated only by the tracker."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal | None
    notional: Decimal | None = None
    type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    strategy: str = ""
    reason: str = ""
    seq: int = 0
    intent_key: str = ""
    status: OrderStatus = S.PENDING_NEW
    previous_status: OrderStatus | None = None
    broker_id: str | None = None
    external: bool = False
    submit_state: str = "pending"  # pending (not yet answered) | acked | uncertain | refused
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_event_at: datetime | None = None
    replaces: str | None = None  # client_order_id of the order this one replaced
    replaced_by: str | None = None  # broker id of the successor (from the `replaced` event)
    cum_qty: Decimal = ZERO  # highest cumulative filled_qty the broker reported
    cum_avg: Decimal | None = None  # the broker's average at cum_qty
    fallback_price: Decimal | None = None
    illegal: int = 0
    flags: list[str] = field(default_factory=list)
    real: dict[str, Fill] = field(default_factory=dict)
    synthetic: list[Fill] = field(default_factory=list)
    real_qty: Decimal = ZERO
    real_notional: Decimal = ZERO
    fees: Decimal = ZERO
    first_fill_at: datetime | None = None
    last_fill_at: datetime | None = None

    # -- aggregates (pure functions of the fill set and the highest cumulative report) ---------

    @property
    def filled_qty(self) -> Decimal:
        return self.cum_qty if self.cum_qty > self.real_qty else self.real_qty

    @property
    def synthetic_qty(self) -> Decimal:
        return self.cum_qty - self.real_qty if self.cum_qty > self.real_qty else ZERO

    @property
    def filled_notional(self) -> Decimal:
        gap = self.synthetic_qty
        if not gap:
            return self.real_notional
        if self.cum_avg is not None:
            return self.cum_avg * self.cum_qty
        return self.real_notional + gap * (self.fallback_price or ZERO)

    @property
    def avg_price(self) -> Decimal | None:
        q = self.filled_qty
        return self.filled_notional / q if q else None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_SET

    @property
    def fills(self) -> list[Fill]:
        """Effective fills: real ones, then what synthetic quantity real fills have not replaced
        (real fills replace the oldest synthetic quantity first)."""
        out = sorted(self.real.values(), key=lambda f: (f.timestamp, f.fill_id))
        remaining = self.synthetic_qty
        kept: list[Fill] = []
        for f in reversed(self.synthetic):
            if remaining <= 0:
                break
            q = min(f.qty, remaining)
            kept.append(f if q == f.qty else replace(f, qty=q))
            remaining -= q
        return out + kept[::-1]

    def to_state(self) -> dict[str, Any]:
        s = {k: getattr(self, k) for k in _ORDER_FIELDS}
        s["synthetic_fill_ids"] = [f.fill_id for f in self.synthetic]
        return {k: _enc(v) for k, v in s.items()}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TrackedOrder:
        kw = {}
        for k in _ORDER_FIELDS:
            v = d.get(k)
            kw[k] = _DECODERS.get(k, lambda x: x)(v) if v is not None else None
        kw["flags"] = list(d.get("flags") or [])
        return cls(**{k: v for k, v in kw.items() if v is not None or k in _NULLABLE})


_ORDER_FIELDS = (
    "client_order_id",
    "symbol",
    "side",
    "qty",
    "notional",
    "type",
    "time_in_force",
    "limit_price",
    "stop_price",
    "strategy",
    "reason",
    "seq",
    "intent_key",
    "status",
    "previous_status",
    "broker_id",
    "external",
    "submit_state",
    "created_at",
    "updated_at",
    "last_event_at",
    "replaces",
    "replaced_by",
    "cum_qty",
    "cum_avg",
    "fallback_price",
    "illegal",
    "flags",
)
_NULLABLE = {
    "qty",
    "notional",
    "limit_price",
    "stop_price",
    "previous_status",
    "broker_id",
    "created_at",
    "updated_at",
    "last_event_at",
    "replaces",
    "replaced_by",
    "cum_avg",
    "fallback_price",
}
_DEC = Decimal
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "side": Side,
    "type": OrderType,
    "time_in_force": TimeInForce,
    "status": OrderStatus,
    "previous_status": OrderStatus,
    "qty": _DEC,
    "notional": _DEC,
    "limit_price": _DEC,
    "stop_price": _DEC,
    "cum_qty": _DEC,
    "cum_avg": _DEC,
    "fallback_price": _DEC,
    "created_at": datetime.fromisoformat,
    "updated_at": datetime.fromisoformat,
    "last_event_at": datetime.fromisoformat,
}


def _enc(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, Enum):
        return v.value
    return v


# -- positions ------------------------------------------------------------------------------------


@dataclass
class TrackedPosition:
    """A symbol's position from our fills (average cost). ``qty`` is signed (short < 0)."""

    symbol: str
    qty: Decimal = ZERO
    cost: Decimal = ZERO  # average cost basis of the open quantity (positive)
    realized_pnl: Decimal = ZERO  # all round trips so far, gross of fees
    fees: Decimal = ZERO
    # the round trip in progress
    opened_at: datetime | None = None
    entry_key: str = ""
    strategy: str = ""
    rt_entry_qty: Decimal = ZERO
    rt_entry_notional: Decimal = ZERO
    rt_exit_qty: Decimal = ZERO
    rt_exit_notional: Decimal = ZERO
    rt_realized: Decimal = ZERO
    rt_fees: Decimal = ZERO

    @property
    def avg_price(self) -> Decimal | None:
        return self.cost / abs(self.qty) if self.qty else None

    def to_state(self) -> dict[str, Any]:
        return {k: _enc(getattr(self, k)) for k in _POSITION_FIELDS}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TrackedPosition:
        kw: dict[str, Any] = {}
        for k in _POSITION_FIELDS:
            v = d.get(k)
            if v is None:
                continue
            if k == "opened_at":
                v = datetime.fromisoformat(v)
            elif k not in ("symbol", "entry_key", "strategy"):
                v = Decimal(v)
            kw[k] = v
        return cls(**kw)

    def apply(
        self, order: TrackedOrder, dq: Decimal, dn: Decimal, dfee: Decimal, when: datetime
    ) -> ClosedTrade | None:
        """Apply an order's change of (filled qty, filled notional, fees); maybe close a trade."""
        sign = 1 if order.side is Side.BUY else -1
        self.fees += dfee
        self.rt_fees += dfee
        if not dq:
            # Only the price changed (a real fill replaced synthetic quantity at another price).
            if self.qty and (self.qty > 0) == (sign > 0):
                self.cost += dn
            elif self.qty:
                adj = dn if sign < 0 else -dn
                self.realized_pnl += adj
                self.rt_realized += adj
            return None
        if dq < 0:
            # Never expected (filled quantity only rises); kept consistent rather than guessed.
            sign, dq, dn = -sign, -dq, -dn
        price = dn / dq
        closed = None
        if not self.qty or (self.qty > 0) == (sign > 0):
            self._open_more(order, sign, dq, dn, when)
            return None
        close_q = min(dq, abs(self.qty))
        avg = self.cost / abs(self.qty)
        direction = 1 if self.qty > 0 else -1
        pnl = (price - avg) * close_q * direction
        self.cost -= avg * close_q
        self.qty += sign * close_q
        self.realized_pnl += pnl
        self.rt_realized += pnl
        self.rt_exit_qty += close_q
        self.rt_exit_notional += price * close_q
        if not self.qty:
            self.cost = ZERO
            closed = self._close(order, when, direction)
        rest = dq - close_q
        if rest > 0:
            self._open_more(order, sign, rest, price * rest, when)
        return closed

    def _open_more(
        self, order: TrackedOrder, sign: int, dq: Decimal, dn: Decimal, when: datetime
    ) -> None:
        if not self.qty:
            self.opened_at = when
            self.entry_key = order.client_order_id
            self.strategy = order.strategy
            self.rt_entry_qty = self.rt_entry_notional = ZERO
            self.rt_exit_qty = self.rt_exit_notional = self.rt_realized = ZERO
        self.qty += sign * dq
        self.cost += dn
        self.rt_entry_qty += dq
        self.rt_entry_notional += dn

    def _close(self, order: TrackedOrder, when: datetime, direction: int) -> ClosedTrade:
        side = "long" if direction > 0 else "short"
        opened = self.opened_at or when
        trade = ClosedTrade(
            trade_id=make_trade_id(self.symbol, side, opened, self.entry_key),
            symbol=self.symbol,
            side=side,
            qty=self.rt_entry_qty,
            entry_price=self.rt_entry_notional / self.rt_entry_qty,
            exit_price=self.rt_exit_notional / self.rt_exit_qty,
            opened_at=opened,
            closed_at=when,
            pnl=self.rt_realized - self.rt_fees,
            fees=self.rt_fees,
            exit_reason=order.reason or ("external" if order.external else "signal"),
            strategy=self.strategy or order.strategy,
        )
        self.opened_at = None
        self.entry_key = ""
        self.rt_fees = ZERO
        return trade


_POSITION_FIELDS = (
    "symbol",
    "qty",
    "cost",
    "realized_pnl",
    "fees",
    "opened_at",
    "entry_key",
    "strategy",
    "rt_entry_qty",
    "rt_entry_notional",
    "rt_exit_qty",
    "rt_exit_notional",
    "rt_realized",
    "rt_fees",
)


@dataclass(slots=True)
class ApplyResult:
    """What one event changed (a value: do not mutate). ``illegal`` carries the rejected
    transition as evidence."""

    client_order_id: str | None
    event: str
    status_before: OrderStatus | None
    status: OrderStatus | None
    new_fills: tuple[Fill, ...] = ()
    filled_qty_delta: Decimal = ZERO
    completed: bool = False
    adopted: bool = False
    duplicate: bool = False
    illegal: str = ""
    closed_trades: tuple[ClosedTrade, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(
            self.status != self.status_before
            or self.new_fills
            or self.adopted
            or self.filled_qty_delta
        )


_SLUG = re.compile(r"[^A-Za-z0-9]+")


def _slug(text: str, limit: int) -> str:
    return _SLUG.sub("", text)[:limit] or "x"


def intent_key(intent: OrderIntent) -> str:
    """A fingerprint of what an intent asks for (without its id)."""
    parts = (
        intent.strategy,
        intent.symbol,
        intent.side.value,
        intent.qty,
        intent.notional,
        intent.type.value,
        intent.time_in_force.value,
        intent.limit_price,
        intent.stop_price,
        intent.trail_price,
        intent.trail_percent,
        intent.extended_hours,
        intent.reason,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


# -- the tracker ----------------------------------------------------------------------------------


class OrderTracker:
    """Tracks orders from intent to completion; journals every event before applying it.

    ``store=None`` keeps everything in memory (backtests, benchmarks). Not thread-safe: one
    owner (the run loop or the stream task) calls it.
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
        self._by_broker_id: dict[str, str] = {}
        self._positions: dict[str, TrackedPosition] = {}
        self._sequences: dict[tuple[str, str], int] = {}
        self._last_event_at: datetime | None = None
        self._journal_id = 0
        self._batch_depth = 0
        self._pending = _Pending()
        if namespace is None:
            from mqd_cli.store import orders as q

            namespace = q.namespace(store) if store is not None else "mem"
        self.namespace = namespace

    # -- restore -----------------------------------------------------------------------------

    @classmethod
    def restore(cls, store: Store, clock: Clock, **kw: Any) -> OrderTracker:
        """Rebuild from the store (after a crash or in another process)."""
        tracker = cls(store, clock, **kw)
        tracker._load()
        tracker._flush_outbox()
        return tracker

    def _load(self) -> None:
        from mqd_cli.store import orders as q

        assert self.store is not None
        self._orders.clear()
        self._by_broker_id.clear()
        self._positions.clear()
        self._journal_id = q.last_event_id(self.store)
        self._sequences = q.sequences(self.store)
        for state in q.order_states(self.store):
            o = TrackedOrder.from_state(state)
            self._orders[o.client_order_id] = o
            if o.broker_id:
                self._by_broker_id[o.broker_id] = o.client_order_id
            if o.last_event_at and (
                self._last_event_at is None or o.last_event_at > self._last_event_at
            ):
                self._last_event_at = o.last_event_at
        for r in q.fill_rows(self.store):
            o = self._orders.get(r["client_order_id"])
            if o is None:
                continue
            f = Fill(
                r["fill_id"],
                r["client_order_id"],
                r["symbol"],
                Side(r["side"]),
                Decimal(r["qty"]),
                Decimal(r["price"]),
                datetime.fromisoformat(r["timestamp"]),
                Decimal(r["fee"]),
                bool(r["synthetic"]),
                r["source"],
            )
            if f.synthetic:
                o.synthetic.append(f)
            else:
                self._add_real(o, f)
        for state in q.position_states(self.store):
            p = TrackedPosition.from_state(state)
            self._positions[p.symbol] = p

    def refresh(self) -> bool:
        """Reload when another process (``mqd reconcile --apply``) journaled events since."""
        from mqd_cli.store import orders as q

        if self.store is None or q.last_event_id(self.store) == self._journal_id:
            return False
        self._load()
        return True

    def _flush_outbox(self) -> None:
        from mqd_cli.store import orders as q
        from mqd_cli.store.trades import insert_closed_trade

        assert self.store is not None
        done = []
        for trade_id, text in q.outbox(self.store):
            trade = _trade_from_json(text)
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

    def open_orders(self) -> list[TrackedOrder]:
        return [o for o in self._orders.values() if o.status in OPEN_SET]

    def positions(self) -> dict[str, TrackedPosition]:
        return {s: p for s, p in self._positions.items() if p.qty}

    def all_positions(self) -> dict[str, TrackedPosition]:
        return dict(self._positions)

    def last_event_time(self) -> datetime | None:
        return self._last_event_at

    def net_traded(self) -> Decimal:
        """Cash our fills moved: sell proceeds minus buy costs minus fees, all orders."""
        total = ZERO
        for o in self._orders.values():
            n = o.filled_notional
            total += (n if o.side is Side.SELL else -n) - o.fees
        return total

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
        for o in self._orders.values():
            if (
                o.intent_key == key
                and o.submit_state in ("pending", "uncertain")
                and o.status is S.PENDING_NEW
                and not o.external
            ):
                return replace(intent, client_order_id=o.client_order_id)
        seq_key = (strategy, intent.symbol)
        seq = self._sequences.get(seq_key, 0) + 1
        cid = f"mqd-{self.namespace}-{_slug(strategy, 16)}-{_slug(intent.symbol, 12)}-{seq}"
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
        self._pending.sequences.append((strategy, intent.symbol, seq))
        self._journal(
            "start", "local", o, "recorded", "", {"intent": _intent_doc(intent, cid)}, None
        )
        self._touch(o)
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
            return ApplyResult(client_order_id, "submit_failed", None, None)
        detail = f"{type(error).__name__}: {error}"
        if not definitely_rejected:
            o.submit_state = "uncertain"
            self._journal("submit_uncertain", "local", o, "recorded", detail, {}, None)
            self._touch(o)
            self._flush()
            return ApplyResult(client_order_id, "submit_uncertain", o.status, o.status)
        o.submit_state = "refused"
        return self._transition(o, E.SUBMIT_REJECTED, "local", detail, {}, None)

    # -- events ------------------------------------------------------------------------------

    def apply(self, update: TradeUpdate, *, source: str = "stream") -> ApplyResult:
        """Apply one trade_updates event: journal first, then apply; idempotent."""
        result = self._apply_update(update, source)
        self._flush()
        return result

    def apply_many(
        self, updates: Iterable[TradeUpdate], *, source: str = "stream"
    ) -> list[ApplyResult]:
        """Apply several events in one transaction (same guarantees, fewer commits)."""
        with self.batch():
            return [self._apply_update(u, source) for u in updates]

    def apply_order_report(self, report: OrderReport, *, source: str = "rest") -> ApplyResult:
        """Apply a REST snapshot of an order (gap fill, reconcile). Its status is the event;
        a rise of its cumulative filled_qty becomes a synthetic fill."""
        update = TradeUpdate(
            event=TradeEvent.UNKNOWN,
            timestamp=report.updated_at or report.created_at,
            order=report,
            event_raw=STATUS_EVENT.get(report.status, E.UNKNOWN).value,
        )
        payload = _report_doc(report) if self.store is not None else _NO_PAYLOAD
        result = self._apply(update, STATUS_EVENT.get(report.status, E.UNKNOWN), source, payload)
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
                fill.client_order_id,
                "fill",
                None,
                None,
                illegal="fill for an order we do not track",
            )
        payload = {"fill": {k: _enc(v) for k, v in fill.__dict__.items()}}
        result = self._apply_fill_only(o, fill, source, payload)
        self._flush()
        return result

    def mark_not_found(self, client_order_id: str, *, source: str = "reconcile") -> ApplyResult:
        """Reconcile's targeted lookup answered 404: resolve the order locally."""
        o = self._orders[client_order_id]
        result = self._transition(o, E.NOT_FOUND, source, "broker lookup: not found", {}, None)
        self._flush()
        return result

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

    def _apply_update(self, update: TradeUpdate, source: str) -> ApplyResult:
        return self._apply(update, event_of(update), source, None)

    def _find_or_adopt(self, report: OrderReport) -> tuple[TrackedOrder, bool]:
        o = self._orders.get(report.client_order_id)
        if o is None and report.id:
            o = self.order_by_broker_id(report.id)
        if o is not None:
            return o, False
        # Unknown: an order placed outside mqd, or the successor of a replace.
        parent = self.order_by_broker_id(report.replaces) if report.replaces else None
        o = TrackedOrder(
            client_order_id=report.client_order_id,
            symbol=report.symbol,
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
        )
        self._orders[o.client_order_id] = o
        return o, True

    def _apply(
        self, update: TradeUpdate, event: OrderEvent, source: str, payload: dict[str, Any] | None
    ) -> ApplyResult:
        report = update.order
        o, adopted = self._find_or_adopt(report)
        if payload is None:
            payload = _update_doc(update) if self.store is not None else _NO_PAYLOAD
        if report.id and o.broker_id != report.id:
            o.broker_id = report.id
            self._by_broker_id[report.id] = o.client_order_id
        if report.replaced_by:
            o.replaced_by = report.replaced_by
        return self._transition(o, event, source, "", payload, update, adopted=adopted)

    def _transition(
        self,
        o: TrackedOrder,
        event: OrderEvent,
        source: str,
        detail: str,
        payload: dict[str, Any],
        update: TradeUpdate | None,
        *,
        adopted: bool = False,
    ) -> ApplyResult:
        before = o.status
        name = event._value_
        nxt = next_status(before, event, o.previous_status)
        when = update.timestamp if update is not None else self.clock.now()
        if nxt is None:
            o.illegal += 1
            evidence = f"illegal transition {before._value_} --{name}-->"
            self._journal(name, source, o, "illegal", evidence, payload, when)
            if adopted:
                self._touch(o)
            return ApplyResult(
                o.client_order_id, name, before, before, adopted=adopted, illegal=evidence
            )
        q0, n0, f0 = o.filled_qty, o.filled_notional, o.fees
        new_fills: list[Fill] = []
        if update is not None:
            self._apply_fill_data(o, update, source, new_fills)
        if event is E.TRADE_BUST and "trade_bust" not in o.flags:
            o.flags.append("trade_bust")
        if nxt in PENDING_SET and before not in PENDING_SET:
            o.previous_status = before
        o.status = nxt
        if update is not None:
            o.last_event_at = update.timestamp
            if self._last_event_at is None or update.timestamp > self._last_event_at:
                self._last_event_at = update.timestamp
        o.updated_at = when
        closed = self._position_delta(o, q0, n0, f0, when)
        completed = before not in TERMINAL_SET and nxt in TERMINAL_SET
        changed = nxt != before or o.filled_qty != q0 or adopted or new_fills
        outcome = "applied" if changed else "unchanged"
        self._journal(name, source, o, outcome, detail, payload, when)
        self._touch(o)
        return ApplyResult(
            o.client_order_id,
            name,
            before,
            nxt,
            tuple(new_fills),
            o.filled_qty - q0,
            completed,
            adopted,
            not changed,
            "",
            tuple(closed),
        )

    def _apply_fill_data(
        self, o: TrackedOrder, update: TradeUpdate, source: str, new_fills: list[Fill]
    ) -> None:
        """Fold an event's execution and cumulative quantity into the order."""
        report = update.order
        ev = update.event
        is_fill = ev is TradeEvent.FILL or ev is TradeEvent.PARTIAL_FILL
        if is_fill and update.price is not None and update.qty is not None and update.execution_id:
            if update.execution_id not in o.real:
                f = Fill(
                    update.execution_id,
                    o.client_order_id,
                    o.symbol,
                    o.side,
                    update.qty,
                    update.price,
                    update.timestamp,
                    ZERO,
                    False,
                    source,
                )
                filled_before = o.filled_qty
                self._add_real(o, f)
                # A real fill that only replaces synthetic quantity is not a new fill.
                if o.filled_qty > filled_before:
                    new_fills.append(f)
                self._pending.fills.append(f)
        elif is_fill and update.price is not None and o.fallback_price is None:
            o.fallback_price = update.price
        cum = report.filled_qty
        if cum > o.cum_qty or (cum == o.cum_qty and cum and o.cum_avg is None):
            if o.fallback_price is None:
                o.fallback_price = report.filled_avg_price or report.limit_price
            before_qty, before_notional = o.filled_qty, o.filled_notional
            o.cum_qty = cum
            if report.filled_avg_price is not None:
                o.cum_avg = report.filled_avg_price
            delta = o.filled_qty - before_qty
            if delta > 0:
                price = (o.filled_notional - before_notional) / delta
                f = Fill(
                    synthetic_fill_id(o.client_order_id, cum),
                    o.client_order_id,
                    o.symbol,
                    o.side,
                    delta,
                    price,
                    update.timestamp,
                    ZERO,
                    True,
                    source,
                )
                o.synthetic.append(f)
                new_fills.append(f)
                self._pending.fills.append(f)

    def _apply_fill_only(
        self, o: TrackedOrder, fill: FillReport, source: str, payload: dict[str, Any]
    ) -> ApplyResult:
        q0, n0, f0 = o.filled_qty, o.filled_notional, o.fees
        if not fill.execution_id or fill.execution_id in o.real:
            self._journal("fill", source, o, "duplicate", "", payload, fill.timestamp)
            return ApplyResult(o.client_order_id, "fill", o.status, o.status, duplicate=True)
        f = Fill(
            fill.execution_id,
            o.client_order_id,
            o.symbol,
            o.side,
            fill.qty,
            fill.price,
            fill.timestamp,
            fill.fee,
            False,
            source,
        )
        self._add_real(o, f)
        self._pending.fills.append(f)
        closed = self._position_delta(o, q0, n0, f0, fill.timestamp)
        self._journal("fill", source, o, "applied", "", payload, fill.timestamp)
        self._touch(o)
        new = (f,) if o.filled_qty > q0 else ()
        return ApplyResult(
            o.client_order_id,
            "fill",
            o.status,
            o.status,
            new,
            o.filled_qty - q0,
            closed_trades=tuple(closed),
        )

    @staticmethod
    def _add_real(o: TrackedOrder, f: Fill) -> None:
        o.real[f.fill_id] = f
        o.real_qty += f.qty
        o.real_notional += f.qty * f.price
        o.fees += f.fee
        if o.first_fill_at is None or f.timestamp < o.first_fill_at:
            o.first_fill_at = f.timestamp
        if o.last_fill_at is None or f.timestamp > o.last_fill_at:
            o.last_fill_at = f.timestamp

    def _position_delta(
        self, o: TrackedOrder, q0: Decimal, n0: Decimal, f0: Decimal, when: datetime
    ) -> list[ClosedTrade]:
        dq, dn, dfee = o.filled_qty - q0, o.filled_notional - n0, o.fees - f0
        if not (dq or dn or dfee):
            return []
        p = self._positions.get(o.symbol)
        if p is None:
            p = self._positions[o.symbol] = TrackedPosition(o.symbol)
        trade = p.apply(o, dq, dn, dfee, when)
        self._pending.positions[o.symbol] = p
        if trade is None:
            return []
        self._pending.trades.append(trade)
        return [trade]

    def _touch(self, o: TrackedOrder) -> None:
        self._pending.orders[o.client_order_id] = o

    def _journal(
        self,
        event: str,
        source: str,
        o: TrackedOrder | None,
        outcome: str,
        detail: str,
        payload: dict[str, Any],
        when: datetime | None,
    ) -> None:
        if self.store is None:
            return
        from mqd_cli.store.orders import EventRow, dumps, ts

        self._pending.events.append(
            EventRow(
                ts(when),
                source,
                o.client_order_id if o else None,
                event,
                outcome,
                detail,
                dumps(payload),
            )
        )

    def _flush(self) -> None:
        if self._batch_depth:
            return
        if self.store is None:  # in memory: nothing to write, reuse the buffers
            p = self._pending
            p.orders.clear()
            p.fills.clear()
            p.positions.clear()
            p.sequences.clear()
            if p.trades:
                trades, p.trades = p.trades, []
                for trade in trades:
                    self._notify(trade)
            return
        pending, self._pending = self._pending, _Pending()
        if not (pending.events or pending.orders or pending.sequences):
            return
        from mqd_cli.store import orders as q
        from mqd_cli.store.trades import insert_closed_trade

        ch = q.Changes(
            events=pending.events,
            orders=[_order_row(o) for o in pending.orders.values()],
            fills=[_fill_row(f) for f in pending.fills],
            positions=[_position_row(p) for p in pending.positions.values()],
            sequences=pending.sequences,
            outbox=[(t.trade_id, _trade_json(t)) for t in pending.trades],
        )
        try:
            last = q.write_changes(self.store, ch, q.ts(self.clock.now()) or "")
        except Exception:
            # Memory ran ahead of a failed write: reload the committed truth, then report.
            log.exception("order journal write failed; reloading state from the store")
            self._load()
            raise
        if last is not None:
            self._journal_id = last
        if pending.trades:
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


@dataclass
class _Pending:
    events: list[Any] = field(default_factory=list)
    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    positions: dict[str, TrackedPosition] = field(default_factory=dict)
    sequences: list[tuple[str, str, int]] = field(default_factory=list)
    trades: list[ClosedTrade] = field(default_factory=list)


# -- serialisation helpers ------------------------------------------------------------------------


def _order_row(o: TrackedOrder):
    from mqd_cli.store.orders import OrderRow, dumps, ts

    avg = o.avg_price
    return OrderRow(
        o.client_order_id,
        o.broker_id,
        o.symbol,
        o.side.value,
        o.status.value,
        o.strategy,
        o.external,
        str(o.filled_qty),
        None if avg is None else str(avg),
        ts(o.created_at) or "",
        ts(o.updated_at) or "",
        dumps(o.to_state()),
    )


def _fill_row(f: Fill):
    from mqd_cli.store.orders import FillRow, ts

    return FillRow(
        f.fill_id,
        f.client_order_id,
        f.symbol,
        f.side.value,
        str(f.qty),
        str(f.price),
        str(f.fee),
        ts(f.timestamp) or "",
        f.synthetic,
        f.source,
    )


def _position_row(p: TrackedPosition):
    from mqd_cli.store.orders import PositionRow, dumps

    avg = p.avg_price
    return PositionRow(
        p.symbol,
        str(p.qty),
        None if avg is None else str(avg),
        str(p.realized_pnl),
        dumps(p.to_state()),
    )


def _trade_json(t: ClosedTrade) -> str:
    return json.dumps({k: _enc(v) for k, v in t.__dict__.items()})


def _trade_from_json(text: str) -> ClosedTrade:
    d = json.loads(text)
    for k in ("qty", "entry_price", "exit_price", "pnl", "fees"):
        d[k] = Decimal(d[k])
    for k in ("opened_at", "closed_at"):
        d[k] = datetime.fromisoformat(d[k])
    return ClosedTrade(**d)


def _intent_doc(intent: OrderIntent, cid: str) -> dict[str, Any]:
    d = {k: _enc(v) for k, v in intent.__dict__.items()}
    d["client_order_id"] = cid
    return d


_NO_PAYLOAD: dict[str, Any] = {}


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


def _report_doc(report: OrderReport) -> dict[str, Any]:
    """The broker's words as evidence: the raw payload when parsed from the wire, else the
    fields that matter (enough for ``wire.parse_order``)."""
    if report.raw:
        return {"order": dict(report.raw)}
    r = report
    return {
        "order": {
            "id": r.id,
            "client_order_id": r.client_order_id,
            "symbol": r.symbol,
            "side": r.side._value_,
            "type": r.type._value_,
            "time_in_force": r.time_in_force._value_,
            "status": r.status._value_,
            "qty": _text(r.qty),
            "notional": _text(r.notional),
            "filled_qty": str(r.filled_qty),
            "filled_avg_price": _text(r.filled_avg_price),
            "limit_price": _text(r.limit_price),
            "stop_price": _text(r.stop_price),
            "created_at": r.created_at.isoformat(),
            "updated_at": None if r.updated_at is None else r.updated_at.isoformat(),
            "replaces": r.replaces,
            "replaced_by": r.replaced_by,
        }
    }


def _update_doc(u: TradeUpdate) -> dict[str, Any]:
    doc = _report_doc(u.order)
    doc["event"] = u.event_raw or u.event._value_
    if u.execution_id is not None or u.price is not None:
        doc["execution_id"] = u.execution_id
        doc["price"] = None if u.price is None else str(u.price)
        doc["qty"] = None if u.qty is None else str(u.qty)
        doc["position_qty"] = None if u.position_qty is None else str(u.position_qty)
    return doc
