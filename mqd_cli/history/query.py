"""Orders, fills, closed trades and positions out of a journal, filtered and paged.

A ``HistorySource`` is one journal to read (the configured store, or a kept sim session) with
the "now" it is read at, the runs whose equity samples belong to it and, for ``--run``, that
run's window. The functions here return domain values (``TrackedOrder``, ``Fill``,
``ClosedTrade``, ``PositionView``) in ``Paged`` lists: the newest ``limit`` rows after skipping
the newest ``offset``, shown oldest first, with the total that matched.

Fills are the tracker's effective fills (``TrackedOrder.fills``): every real execution, and of
the synthetic fills a gap fill made only the quantity no real execution has replaced since, so
a share is never listed twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from mqd_cli.history.runs import RunView
from mqd_cli.model import Side
from mqd_cli.orders.tracked import Fill, TrackedOrder
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.store import history as q
from mqd_cli.store import runs as runs_q
from mqd_cli.symbols.spelling import crypto_pair

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store

T = TypeVar("T")
ZERO = Decimal(0)


# -- what to read ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the operator asked for: symbols (any of), a strategy, a window [since, until)."""

    symbols: tuple[str, ...] = ()
    strategy: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of(
        cls,
        symbols: Sequence[str] = (),
        strategy: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Filters:
        """Symbols in every spelling they are stored under (``BTCUSD`` also as ``BTC/USD``)."""
        spelled: list[str] = []
        for s in symbols:
            for v in (s.strip().upper(), crypto_pair(s)):
                if v and v not in spelled:
                    spelled.append(v)
        return cls(tuple(spelled), strategy or None, since, until)

    def within(self, start: datetime | None, end: datetime | None) -> Filters:
        """These filters narrowed to a window (a run's)."""
        since = max(filter(None, (self.since, start)), default=None)
        until = min(filter(None, (self.until, end)), default=None)
        return replace(self, since=since, until=until)

    def store_args(self) -> dict[str, Any]:
        return {
            "symbols": self.symbols,
            "strategy": self.strategy,
            "since": self.since,
            "until": self.until,
        }

    def wants(self, symbol: str) -> bool:
        return not self.symbols or symbol in self.symbols

    def in_window(self, at: datetime | None) -> bool:
        if at is None:
            return self.since is None and self.until is None
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)


@dataclass(frozen=True)
class HistorySource:
    """One journal to read, and what belongs to it (built by ``Services.history``)."""

    store: Store  # the journal: the configured store or a sim session's
    runs_store: Store  # the configured store (runs, equity samples)
    journal: Path
    session: str | None  # the sim session read, None for the configured store
    clock: Clock  # "now" of the journal: real time, or the session's time
    run_ids: tuple[int, ...]  # the runs that traded on this journal (their equity samples)
    run: RunView | None = None  # --run
    run_end: datetime | None = None  # where --run's window ends (None: still running)

    def narrow(self, filters: Filters) -> Filters:
        """The filters within ``--run``'s window (unchanged without ``--run``)."""
        if self.run is None:
            return filters
        return filters.within(self.run.started_at, self.run_end)


@dataclass(frozen=True)
class Paged(Generic[T]):
    """A page of rows, oldest first, out of ``total`` that matched."""

    items: list[T]
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        """``--offset`` of the page before this one (older rows), None at the oldest."""
        shown = self.offset + len(self.items)
        return shown if shown < self.total else None

    @property
    def cut(self) -> bool:
        return len(self.items) < self.total

    def label(self) -> str:
        """``last 50 of 312`` (or ``50 of 312, before the newest 100``) when cut, else ``""``."""
        if not self.cut:
            return ""
        if self.offset == 0:
            return f"last {len(self.items)} of {self.total}"
        return f"{len(self.items)} of {self.total}, before the newest {self.offset}"

    def meta(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "offset": self.offset,
            "limit": self.limit,
            "shown": len(self.items),
            "next_offset": self.next_offset,
        }


def page_of(rows: Sequence[T], limit: int, offset: int) -> Paged[T]:
    """Page a list in time order (oldest first): the ``limit`` newest after the ``offset``
    newest."""
    total = len(rows)
    end = max(0, total - offset)
    return Paged(list(rows[max(0, end - limit) : end]), total, offset, limit)


# -- orders ---------------------------------------------------------------------------------------


def orders(src: HistorySource, f: Filters, *, limit: int, offset: int) -> Paged[TrackedOrder]:
    f = src.narrow(f)
    total = q.count_orders(src.store, **f.store_args())
    states = q.order_page(src.store, limit=limit, offset=offset, **f.store_args())
    return Paged([TrackedOrder.from_state(s) for s in reversed(states)], total, offset, limit)


def order_doc(o: TrackedOrder) -> dict[str, Any]:
    return {
        "client_order_id": o.client_order_id,
        "broker_id": o.broker_id,
        "created_at": o.created_at,
        "updated_at": o.updated_at,
        "symbol": o.symbol,
        "side": o.side,
        "type": o.type,
        "time_in_force": o.time_in_force,
        "qty": o.qty,
        "notional": o.notional,
        "limit_price": o.limit_price,
        "stop_price": o.stop_price,
        "status": o.status,
        "filled_qty": o.filled_qty,
        "avg_price": o.avg_price,
        "reason": o.reason,
        "strategy": o.strategy,
        "external": o.external,
        "parent": o.parent,
        "replaces": o.replaces,
        "replaced_by": o.replaced_by,
    }


# -- fills ----------------------------------------------------------------------------------------


def _fill(row: dict[str, Any]) -> Fill:
    return Fill(
        fill_id=row["fill_id"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        qty=Decimal(row["qty"]),
        price=Decimal(row["price"]),
        timestamp=datetime.fromisoformat(row["timestamp"]),
        fee=Decimal(row["fee"]),
        synthetic=bool(row["synthetic"]),
        source=row["source"],
    )


def fills(src: HistorySource, f: Filters, *, limit: int, offset: int) -> Paged[Fill]:
    """Effective fills in the window, by execution time. The orders that have a stored fill
    in the window are rebuilt with all their fills (what a synthetic fill still stands for
    depends on the order's other fills), then their effective fills are windowed."""
    f = src.narrow(f)
    by_id = {
        s["client_order_id"]: TrackedOrder.from_state(s)
        for s in q.orders_with_fills(src.store, **f.store_args())
    }
    for row in q.fills_of(src.store, list(by_id)):
        fill = _fill(row)
        order = by_id[fill.client_order_id]
        if fill.synthetic:
            order.synthetic.append(fill)
        else:
            order.add_real(fill)
    rows = [x for o in by_id.values() for x in o.fills if f.in_window(x.timestamp)]
    rows.sort(key=lambda x: (x.timestamp, x.fill_id))
    return page_of(rows, limit, offset)


def fill_doc(x: Fill) -> dict[str, Any]:
    return {
        "fill_id": x.fill_id,
        "client_order_id": x.client_order_id,
        "timestamp": x.timestamp,
        "symbol": x.symbol,
        "side": x.side,
        "qty": x.qty,
        "price": x.price,
        "fee": x.fee,
        "synthetic": x.synthetic,
        "source": x.source,
    }


# -- closed trades --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeTotals:
    """Every matching trade, not only the page: count, wins, realized PnL (net of fees)."""

    trades: int = 0
    wins: int = 0
    realized_pnl: Decimal = ZERO
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None


def trades(
    src: HistorySource, f: Filters, *, limit: int, offset: int
) -> tuple[Paged[ClosedTrade], TradeTotals]:
    f = src.narrow(f)
    args = f.store_args()
    total = q.count_trades(src.store, **args)
    page = [
        ClosedTrade(**row) for row in q.trade_page(src.store, limit=limit, offset=offset, **args)
    ]
    results = q.trade_results(src.store, **args)
    pnls = [Decimal(r["pnl"]) for r in results]
    reasons: dict[str, int] = {}
    for r in results:
        reasons[r["exit_reason"]] = reasons.get(r["exit_reason"], 0) + 1
    totals = TradeTotals(
        trades=len(pnls),
        wins=sum(1 for p in pnls if p > 0),
        realized_pnl=sum(pnls, ZERO),
        by_reason=dict(sorted(reasons.items())),
    )
    return Paged(list(reversed(page)), total, offset, limit), totals


def trade_doc(t: ClosedTrade) -> dict[str, Any]:
    return {
        "trade_id": t.trade_id,
        "symbol": t.symbol,
        "side": t.side,
        "qty": t.qty,
        "entry_price": t.entry_price,
        "exit_price": t.exit_price,
        "opened_at": t.opened_at,
        "closed_at": t.closed_at,
        "held_seconds": round((t.closed_at - t.opened_at).total_seconds(), 3),
        "pnl": t.pnl,
        "fees": t.fees,
        "exit_reason": t.exit_reason,
        "strategy": t.strategy,
    }


# -- positions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionView:
    """An open position: the journal's (average cost from our fills) and, online, the
    broker's, with unrealized PnL at a price whose source and time are given."""

    symbol: str
    qty: Decimal  # signed (short < 0): the broker's online, the journal's offline
    avg_price: Decimal | None
    price: Decimal | None
    price_source: str  # "broker", "run" (the run's last equity sample), or "" (none)
    price_at: datetime | None
    market_value: Decimal | None
    unrealized_pnl: Decimal | None
    journal_qty: Decimal  # what our fills hold (0: not ours)
    realized_pnl: Decimal | None  # the journal's, all round trips of the symbol (gross of fees)
    opened_at: datetime | None
    strategy: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "qty": self.qty,
            "avg_price": self.avg_price,
            "price": self.price,
            "price_source": self.price_source or None,
            "price_at": self.price_at,
            "market_value": self.market_value,
            "unrealized_pnl": self.unrealized_pnl,
            "journal_qty": self.journal_qty,
            "realized_pnl": self.realized_pnl,
            "opened_at": self.opened_at,
            "strategy": self.strategy,
        }


def _journal_positions(src: HistorySource) -> dict[str, Any]:
    from mqd_cli.orders.tracker import OrderTracker

    return OrderTracker.restore(src.store, src.clock).positions()


def _select(views: list[PositionView], f: Filters) -> list[PositionView]:
    out = [
        v
        for v in views
        if f.wants(v.symbol)
        and (f.strategy is None or v.strategy == f.strategy)
        and (f.since is None and f.until is None or f.in_window(v.opened_at))
    ]
    out.sort(key=lambda v: (v.opened_at is not None, v.opened_at or datetime.min, v.symbol))
    return out


def positions_offline(
    src: HistorySource, f: Filters, *, limit: int, offset: int
) -> Paged[PositionView]:
    """Positions from the journal alone (``OrderTracker.restore(...).positions()``), marked at
    the prices of the journal's newest equity sample (a run's engine prices) when it has one."""
    f = src.narrow(f)
    sample = runs_q.last_equity(src.runs_store, src.run_ids)
    marks = json.loads(sample["marks"]) if sample else {}
    at = datetime.fromisoformat(sample["at"]) if sample else None
    views = []
    for symbol, p in _journal_positions(src).items():
        mark = marks.get(symbol)
        price = Decimal(mark["price"]) if mark else None
        avg = p.avg_price
        views.append(
            PositionView(
                symbol=symbol,
                qty=p.qty,
                avg_price=avg,
                price=price,
                price_source="run" if price is not None else "",
                price_at=at if price is not None else None,
                market_value=p.qty * price if price is not None else None,
                unrealized_pnl=p.qty * (price - avg)
                if price is not None and avg is not None
                else None,
                journal_qty=p.qty,
                realized_pnl=p.realized_pnl,
                opened_at=p.opened_at,
                strategy=p.strategy,
            )
        )
    return page_of(_select(views, f), limit, offset)


def positions_online(
    src: HistorySource, broker: Broker, f: Filters, *, limit: int, offset: int
) -> Paged[PositionView]:
    """The broker's positions (quantity, average entry, last price, unrealized PnL as the
    broker computes it), each beside what the journal holds of it."""
    f = src.narrow(f)
    ours = _journal_positions(src)
    now = src.clock.now()
    views = []
    for r in broker.list_positions():
        mine = ours.get(r.symbol)
        price = r.current_price
        unrealized = r.unrealized_pl
        if unrealized is None and price is not None:
            unrealized = r.qty * (price - r.avg_entry_price)
        views.append(
            PositionView(
                symbol=r.symbol,
                qty=r.qty,
                avg_price=r.avg_entry_price,
                price=price,
                price_source="broker" if price is not None else "",
                price_at=now if price is not None else None,
                market_value=r.market_value
                if r.market_value is not None
                else (r.qty * price if price is not None else None),
                unrealized_pnl=unrealized,
                journal_qty=mine.qty if mine is not None else ZERO,
                realized_pnl=mine.realized_pnl if mine is not None else None,
                opened_at=mine.opened_at if mine is not None else None,
                strategy=mine.strategy if mine is not None else "",
            )
        )
    held = {v.symbol for v in views}
    for symbol, p in ours.items():  # ours, but the broker holds none: drift to look into
        if symbol not in held:
            views.append(
                PositionView(
                    symbol=symbol,
                    qty=ZERO,
                    avg_price=p.avg_price,
                    price=None,
                    price_source="",
                    price_at=None,
                    market_value=None,
                    unrealized_pnl=None,
                    journal_qty=p.qty,
                    realized_pnl=p.realized_pnl,
                    opened_at=p.opened_at,
                    strategy=p.strategy,
                )
            )
    return page_of(_select(views, f), limit, offset)
