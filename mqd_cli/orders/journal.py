"""The tracker's stored form: journal payloads, the rows it writes and the state it restores.

An event is journaled with the broker's words as evidence: the raw payload when it was parsed
from the wire, else the fields that matter (enough for ``wire.parse_order``). Payloads are
built as JSON text directly (they are the hot path of a journaled event); ``json.loads`` of one
gives the same document a ``json.dumps`` of the fields would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from json.encoder import encode_basestring_ascii as _quote
from typing import TYPE_CHECKING, Any

from mqd_cli.model import FillReport, OrderIntent, OrderReport, Side, TradeUpdate
from mqd_cli.orders.positions import TrackedPosition
from mqd_cli.orders.tracked import TERMS, Fill, TrackedOrder
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.store import orders as q

if TYPE_CHECKING:
    from mqd_cli.store import Store

ts = q.ts


def enc(v: Any) -> Any:
    """A value as JSON: Decimal as exact text, time as ISO-8601, enum as its value."""
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, Enum):
        return v._value_
    return v


@dataclass(kw_only=True)
class Pending:
    """What the calls since the last write changed, written in one transaction."""

    events: list[tuple] = field(default_factory=list)
    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    positions: dict[str, TrackedPosition] = field(default_factory=dict)
    sequences: list[tuple[str, str, int]] = field(default_factory=list)
    trades: list[ClosedTrade] = field(default_factory=list)

    def changes(self) -> q.Changes:
        return q.Changes(
            events=self.events,
            orders=[order_row(o) for o in self.orders.values()],
            fills=[fill_row(f) for f in self.fills],
            positions=[position_row(p) for p in self.positions.values()],
            sequences=self.sequences,
            outbox=[(t.trade_id, trade_json(t)) for t in self.trades],
        )


# -- rows -----------------------------------------------------------------------------------------


def order_row(o: TrackedOrder) -> tuple:
    """``store.orders.ORDER_COLUMNS`` of an order; its fixed terms are encoded once."""
    terms = o.terms_json
    if terms is None:
        terms = o.terms_json = q.dumps({k: enc(getattr(o, k)) for k in TERMS})
    q_ = o.filled_qty
    prev = o.previous_status
    cum_avg, fallback = o.cum_avg, o.fallback_price
    return (
        o.client_order_id,
        o.symbol,
        o.side._value_,
        o.strategy,
        o.external,
        ts(o.created_at) or "",
        terms,
        o.status._value_,
        None if prev is None else prev._value_,
        o.broker_id,
        o.submit_state,
        ts(o.updated_at) or "",
        ts(o.last_event_at),
        o.replaced_by,
        str(o.cum_qty),
        None if cum_avg is None else str(cum_avg),
        None if fallback is None else str(fallback),
        o.illegal,
        q.dumps(o.flags) if o.flags else "[]",
        str(q_),
        str(o.filled_notional / q_) if q_ else None,
    )


def fill_row(f: Fill) -> tuple:
    return (
        f.fill_id,
        f.client_order_id,
        f.symbol,
        f.side._value_,
        str(f.qty),
        str(f.price),
        str(f.fee),
        ts(f.timestamp) or "",
        f.synthetic,
        f.source,
    )


def position_row(p: TrackedPosition) -> tuple:
    avg = p.avg_price
    return (*p.stored(ts), None if avg is None else str(avg))


def trade_json(t: ClosedTrade) -> str:
    return json.dumps({k: enc(v) for k, v in t.__dict__.items()})


def trade_from_json(text: str) -> ClosedTrade:
    d = json.loads(text)
    for k in ("qty", "entry_price", "exit_price", "pnl", "fees"):
        d[k] = Decimal(d[k])
    for k in ("opened_at", "closed_at"):
        d[k] = datetime.fromisoformat(d[k])
    return ClosedTrade(**d)


# -- payloads (evidence) --------------------------------------------------------------------------


def _text(v: Any) -> str:
    """A JSON string of a str, or null."""
    return "null" if v is None else _quote(v)


def _dec(v: Decimal | None) -> str:
    """A JSON string of a Decimal (its text needs no escaping), or null."""
    return "null" if v is None else f'"{v}"'


def report_payload(r: OrderReport) -> str:
    return f'{{"order":{_report_json(r)}}}'


def _report_json(r: OrderReport) -> str:
    if r.raw and "id" in r.raw:  # a wire payload; the simulated exchange's extras
        return q.dumps(dict(r.raw))  # ({"position_intent": ...}) are not one
    # Most optional fields are null: test inline rather than call a helper per field.
    qty = "null" if r.qty is None else f'"{r.qty}"'
    notional = "null" if r.notional is None else f'"{r.notional}"'
    avg = "null" if r.filled_avg_price is None else f'"{r.filled_avg_price}"'
    limit = "null" if r.limit_price is None else f'"{r.limit_price}"'
    stop = "null" if r.stop_price is None else f'"{r.stop_price}"'
    updated = "null" if r.updated_at is None else f'"{ts(r.updated_at)}"'
    replaces = "null" if r.replaces is None else _quote(r.replaces)
    replaced_by = "null" if r.replaced_by is None else _quote(r.replaced_by)
    return (
        f'{{"id":{_text(r.id)},"client_order_id":{_quote(r.client_order_id)},'
        f'"symbol":{_quote(r.symbol)},"side":"{r.side._value_}","type":"{r.type._value_}",'
        f'"time_in_force":"{r.time_in_force._value_}","status":"{r.status._value_}",'
        f'"qty":{qty},"notional":{notional},"filled_qty":"{r.filled_qty}",'
        f'"filled_avg_price":{avg},"limit_price":{limit},"stop_price":{stop},'
        f'"created_at":"{ts(r.created_at)}","updated_at":{updated},'
        f'"replaces":{replaces},"replaced_by":{replaced_by}}}'
    )


def update_payload(u: TradeUpdate) -> str:
    head = f'{{"order":{_report_json(u.order)},"event":{_quote(u.event_raw or u.event._value_)}'
    if u.execution_id is None and u.price is None:
        return head + "}"
    return (
        f'{head},"execution_id":{_text(u.execution_id)},"price":{_dec(u.price)},'
        f'"qty":{_dec(u.qty)},"position_qty":{_dec(u.position_qty)}}}'
    )


def intent_payload(intent: OrderIntent, cid: str) -> str:
    d = {k: enc(v) for k, v in intent.__dict__.items()}
    d["client_order_id"] = cid
    return q.dumps({"intent": d})


def fill_payload(fill: FillReport) -> str:
    return q.dumps({"fill": {k: enc(v) for k, v in fill.__dict__.items()}})


# -- restore --------------------------------------------------------------------------------------


@dataclass
class Restored:
    orders: dict[str, TrackedOrder]
    positions: dict[str, TrackedPosition]
    sequences: dict[tuple[str, str], int]
    journal_id: int


def load(store: Store) -> Restored:
    """Everything the tracker holds, rebuilt from the committed tables."""
    journal_id = q.last_event_id(store)
    orders: dict[str, TrackedOrder] = {}
    for state in q.order_states(store):
        order = TrackedOrder.from_state(state)
        orders[order.client_order_id] = order
    for r in q.fill_rows(store):
        o = orders.get(r["client_order_id"])
        if o is None:
            continue
        f = Fill(
            fill_id=r["fill_id"],
            client_order_id=r["client_order_id"],
            symbol=r["symbol"],
            side=Side(r["side"]),
            qty=Decimal(r["qty"]),
            price=Decimal(r["price"]),
            timestamp=datetime.fromisoformat(r["timestamp"]),
            fee=Decimal(r["fee"]),
            synthetic=bool(r["synthetic"]),
            source=r["source"],
        )
        if f.synthetic:
            o.synthetic.append(f)
        else:
            o.add_real(f)
    positions = {}
    for state in q.position_states(store):
        p = TrackedPosition.from_state(state)
        positions[p.symbol] = p
    return Restored(orders, positions, q.sequences(store), journal_id)
