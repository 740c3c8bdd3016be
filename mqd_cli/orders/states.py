"""The order state machine: an explicit table ``(state, event) -> next state``.

A pair that is not in ``TRANSITIONS`` is illegal: the tracker journals the event with
``outcome=illegal`` as evidence and changes nothing. Every real-world oddity has a comment on
its rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum, StrEnum
from typing import Final

from mqd_cli.model import OrderStatus, TradeEvent, TradeUpdate

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


SAME: Final = _Keep.SAME
PREVIOUS: Final = _Keep.PREVIOUS

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

    def rule(event: OrderEvent, sources: Iterable[OrderStatus], nxt: OrderStatus | _Keep) -> None:
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


FROM_TRADE_EVENT = {ev: OrderEvent(ev.value) for ev in TradeEvent}


def event_of(update: TradeUpdate) -> OrderEvent:
    return FROM_TRADE_EVENT.get(update.event, E.UNKNOWN)


def _steps() -> dict[tuple[OrderStatus, OrderEvent], tuple[OrderStatus | None, bool, bool]]:
    """``TRANSITIONS`` resolved for the tracker's hot path: (state, event) -> (next status, or
    None for "back to the previous status"; enters a pending state; completes the order)."""
    out: dict[tuple[OrderStatus, OrderEvent], tuple[OrderStatus | None, bool, bool]] = {}
    for (state, event), nxt in TRANSITIONS.items():
        if nxt is SAME:
            out[(state, event)] = (state, False, False)
        elif nxt is PREVIOUS:
            # Only pending states go back, and they were entered from an open state.
            out[(state, event)] = (None, False, False)
        else:
            assert isinstance(nxt, OrderStatus)
            out[(state, event)] = (
                nxt,
                nxt in PENDING_SET and state not in PENDING_SET,
                state not in TERMINAL_SET and nxt in TERMINAL_SET,
            )
    return out


STEPS = _steps()
