"""What the tracker believes about one order (its terms, status and fills), what one event
changed (``ApplyResult``), and the fingerprint of an intent.

Fills are aggregated per order (filled quantity, Decimal average, fees, first/last time),
deduplicated by ``execution_id``. When an event carries no execution id the order's cumulative
``filled_qty`` is the truth: a rise creates a *synthetic* fill with a deterministic id for the
difference, priced so the average matches the broker's. A real fill arriving later replaces
synthetic quantity instead of adding to it, so every order's filled quantity is
``max(highest cumulative seen, sum of real fills)`` whatever the arrival order, and the fills
an event delivers (``ApplyResult.new_fills``) always sum to the rise of that quantity: each
execution is delivered at most once, and never beside the synthetic fill that stood for it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from mqd_cli.model import (
    FillActivity,
    OrderClass,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradeEvent,
    TradeUpdate,
)
from mqd_cli.orders.states import OPEN_SET
from mqd_cli.orders.trades import ClosedTrade

ZERO = Decimal(0)
_FILL_EVENTS = frozenset((TradeEvent.FILL, TradeEvent.PARTIAL_FILL))  # TradeEvent.is_fill, faster


@dataclass(frozen=True, slots=True, kw_only=True)
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


_new = object.__new__
_set = object.__setattr__  # what a frozen dataclass's own __init__ assigns with


def new_fill(
    fill_id: str,
    client_order_id: str,
    symbol: str,
    side: Side,
    qty: Decimal,
    price: Decimal,
    timestamp: datetime,
    synthetic: bool,
    source: str,
) -> Fill:
    """``Fill(..., fee=ZERO)`` for the tracker's hot path: a keyword call of a frozen
    dataclass's ``__init__`` costs half as much again (``test_tracker_speedups`` checks that
    both build equal fills)."""
    f = _new(Fill)
    _set(f, "fill_id", fill_id)
    _set(f, "client_order_id", client_order_id)
    _set(f, "symbol", symbol)
    _set(f, "side", side)
    _set(f, "qty", qty)
    _set(f, "price", price)
    _set(f, "timestamp", timestamp)
    _set(f, "fee", ZERO)
    _set(f, "synthetic", synthetic)
    _set(f, "source", source)
    return f


@dataclass(slots=True, kw_only=True)
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
    status: OrderStatus = OrderStatus.PENDING_NEW
    previous_status: OrderStatus | None = None
    broker_id: str | None = None
    external: bool = False
    submit_state: str = "pending"  # pending (not yet answered) | acked | uncertain | refused
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_event_at: datetime | None = None
    replaces: str | None = None  # client_order_id of the order this one replaced
    # A bracket, oco or oto leg: the client_order_id of its parent order. The leg's own id is
    # the broker's, so it is ours (or external) exactly when its parent is.
    parent: str | None = None
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
    # The stored JSON of the fixed terms (``TERMS``), written with the order's first row.
    terms_json: str | None = field(default=None, repr=False, compare=False)

    # -- aggregates (pure functions of the fill set and the highest cumulative report) ---------

    @property
    def filled_qty(self) -> Decimal:
        return self.cum_qty if self.cum_qty > self.real_qty else self.real_qty

    @property
    def synthetic_qty(self) -> Decimal:
        return self.cum_qty - self.real_qty if self.cum_qty > self.real_qty else ZERO

    @property
    def filled_notional(self) -> Decimal:
        if self.cum_qty <= self.real_qty:
            return self.real_notional
        if self.cum_avg is not None:
            return self.cum_avg * self.cum_qty
        return self.real_notional + (self.cum_qty - self.real_qty) * (self.fallback_price or ZERO)

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

    # -- folding executions in (the tracker calls these) ----------------------------------------

    def add_real(self, f: Fill) -> None:
        self.real[f.fill_id] = f
        self.real_qty += f.qty
        self.real_notional += f.qty * f.price
        self.fees += f.fee
        if self.first_fill_at is None or f.timestamp < self.first_fill_at:
            self.first_fill_at = f.timestamp
        if self.last_fill_at is None or f.timestamp > self.last_fill_at:
            self.last_fill_at = f.timestamp

    def fold(
        self,
        update: TradeUpdate,
        source: str,
        new: list[Fill],
        stored: list[Fill],
        executions: Sequence[FillActivity] = (),
    ) -> tuple[Decimal, Decimal, Decimal] | None:
        """Fold an event's execution and cumulative quantity into the order.

        Every fill to record (a real execution in full, even one whose quantity a synthetic fill
        already stood for) goes to ``stored``. What the event *delivers* goes to ``new``, and it
        sums exactly to the rise of ``filled_qty``, so consumers (the strategy, positions, cash,
        alerts) never count a share twice:

        * a real execution covers the cumulative range ``(filled_qty - qty, filled_qty]`` of the
          order report it came with; only the part above what was already delivered is new
          (the rest was delivered earlier by the synthetic fill that stood for it);
        * a rise of the cumulative quantity beyond that (executions not seen, e.g. missed while
          the stream was away) is delivered as one synthetic fill with a deterministic id, or,
          when ``executions`` (FILL activities of this order) cover that range exactly, as one
          synthetic fill per execution with its own quantity, price and time. Each is keyed by
          the cumulative quantity it ends at, never by the activity's id, so an execution the
          stream delivers later is recognised by its range, whatever its id.

        Returns the (filled qty, filled notional, fees) from before the event when it changed
        any of them, else None (most events do not).
        """
        report = update.order
        cum = report.filled_qty
        cq = self.cum_qty
        price = update.price  # an execution's price; None: the event brings none
        if price is None or update.event not in _FILL_EVENTS:
            price = None
            if cum < cq or (cum == cq and (not cum or self.cum_avg is not None)):
                return None  # most events: no execution and no rise of the cumulative quantity
        rq = self.real_qty
        q0 = cq if cq > rq else rq  # filled_qty
        totals = None
        real: Fill | None = None
        if price is not None:
            if update.qty is not None and update.execution_id:
                if update.execution_id not in self.real:
                    real = new_fill(
                        update.execution_id,
                        self.client_order_id,
                        self.symbol,
                        self.side,
                        update.qty,
                        price,
                        update.timestamp,
                        False,
                        source,
                    )
                    totals = (q0, self.filled_notional, self.fees)
                    self.add_real(real)
                    stored.append(real)
            elif self.fallback_price is None:
                totals = (q0, self.filled_notional, self.fees)
                self.fallback_price = price
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
            # The execution's own range ends at the report's cumulative quantity (when the
            # report carries one that includes it); what lies below ``q0`` was delivered.
            top = cum if cum >= real.qty else q0 + real.qty
            part = min(real.qty, delta, max(ZERO, top - q0))
            if part > 0:
                new.append(real if part == real.qty else replace(real, qty=part))
        rest = delta - part
        if rest > 0:
            pieces = _pieces(executions, self.filled_qty - rest, self.filled_qty)
            if not pieces:  # one fill for the whole rise, at what it moved in notional
                moved = self.filled_notional - totals[1] - (part * real.price if real else ZERO)
                pieces = [(rest, moved / rest, update.timestamp, self.filled_qty)]
            for qty, price, at, top in pieces:
                f = new_fill(
                    synthetic_fill_id(self.client_order_id, top),
                    self.client_order_id,
                    self.symbol,
                    self.side,
                    qty,
                    price,
                    at,
                    True,
                    source,
                )
                self.synthetic.append(f)
                new.append(f)
                stored.append(f)
        return totals

    # -- stored form ------------------------------------------------------------------------

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TrackedOrder:
        """Rebuild from stored text values (``TERMS`` and ``PROGRESS`` keys); no fills."""
        kw: dict[str, Any] = {}
        for k in TERMS + PROGRESS:
            v = d.get(k)
            if v is not None:
                decode = _DECODERS.get(k)
                kw[k] = decode(v) if decode is not None else v
        kw["flags"] = list(d.get("flags") or [])
        kw["external"] = bool(kw.get("external"))
        return cls(**kw)


@dataclass(slots=True, kw_only=True)
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


def new_result(
    client_order_id: str | None,
    event: str,
    status_before: OrderStatus | None,
    status: OrderStatus | None,
    new_fills: tuple[Fill, ...],
    filled_qty_delta: Decimal,
    completed: bool,
    adopted: bool,
    duplicate: bool,
    illegal: str,
    closed_trades: tuple[ClosedTrade, ...],
) -> ApplyResult:
    """``ApplyResult(...)`` with every field, for the tracker's hot path: a keyword call of a
    dataclass's ``__init__`` with eleven fields costs about three times as much
    (``test_tracker_speedups`` checks that both build equal results)."""
    r = _new(ApplyResult)
    r.client_order_id = client_order_id
    r.event = event
    r.status_before = status_before
    r.status = status
    r.new_fills = new_fills
    r.filled_qty_delta = filled_qty_delta
    r.completed = completed
    r.adopted = adopted
    r.duplicate = duplicate
    r.illegal = illegal
    r.closed_trades = closed_trades
    return r


SLUG_CHARS = re.compile(r"[^A-Za-z0-9]+")


def slug(text: str, limit: int) -> str:
    return SLUG_CHARS.sub("", text)[:limit] or "x"


def intent_key(intent: OrderIntent) -> str:
    """A fingerprint of what an intent asks for (without its id)."""
    parts: tuple[Any, ...] = (
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
    if intent.order_class is not OrderClass.SIMPLE:  # simple keys stay as they were stored
        parts += (
            intent.order_class.value,
            intent.take_profit_limit_price,
            intent.stop_loss_stop_price,
            intent.stop_loss_limit_price,
        )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


# The order's fixed terms, stored once as JSON; then what changes, stored as columns.
TERMS = (
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
    "external",
    "created_at",
    "replaces",
    "parent",
)
PROGRESS = (
    "status",
    "previous_status",
    "broker_id",
    "submit_state",
    "updated_at",
    "last_event_at",
    "replaced_by",
    "cum_qty",
    "cum_avg",
    "fallback_price",
    "illegal",
    "flags",
)
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "side": Side,
    "type": OrderType,
    "time_in_force": TimeInForce,
    "status": OrderStatus,
    "previous_status": OrderStatus,
    "qty": Decimal,
    "notional": Decimal,
    "limit_price": Decimal,
    "stop_price": Decimal,
    "cum_qty": Decimal,
    "cum_avg": Decimal,
    "fallback_price": Decimal,
    "created_at": datetime.fromisoformat,
    "updated_at": datetime.fromisoformat,
    "last_event_at": datetime.fromisoformat,
}


def _pieces(
    executions: Sequence[FillActivity], low: Decimal, high: Decimal
) -> list[tuple[Decimal, Decimal, datetime, Decimal]]:
    """The executions' parts of the cumulative range ``(low, high]`` as (qty, price, time, the
    cumulative quantity it ends at), lowest first; empty unless they cover it exactly once."""
    out = []
    covered = low
    for a in sorted(executions, key=lambda a: a.cum_qty):
        start, end = a.cum_qty - a.qty, min(a.cum_qty, high)
        if end <= covered:
            continue
        if max(start, low) != covered or a.qty <= 0:
            return []  # a hole or an overlap: the activities do not tell this range exactly
        out.append((end - covered, a.price, a.transaction_time, end))
        covered = end
        if covered == high:
            return out
    return []
