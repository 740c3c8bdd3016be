"""`mqd stream tail` without the terminal: where events come from and what they say.

Alpaca allows one trade_updates connection per account, so the tail never competes with the
process that holds it: while a live lease exists it follows that holder's order journal (new
rows every ``[stream] tail_poll_interval``); only when none exists does it connect directly,
without a tracker (it writes nothing), and it hands the connection back as soon as a holder
takes the lease. ``--direct`` forces the connection; ``--journal`` never connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from mqd_cli.errors import BrokerError, UsageError
from mqd_cli.model import OrderReport, OrderStatus, TradeEvent, TradeUpdate

if TYPE_CHECKING:
    from mqd_cli.store import Store

log = logging.getLogger("mqd.stream.tail")

# Journal events that are not trade_updates events but can be filtered on.
_JOURNAL_ONLY_EVENTS = {"held", "accepted_for_bidding", "pending_review", "not_found"}
EVENT_NAMES = frozenset(e.value for e in TradeEvent if e is not TradeEvent.UNKNOWN) | frozenset(
    _JOURNAL_ONLY_EVENTS
)
_LEASE_CHECK_EVERY = 1.0  # s between looks at the lease (hand-over both ways)
_DOWN_STATUS_EVERY = 10.0  # s between two "still not connected" status lines
_PAGE = 1000
ZERO = Decimal(0)


@dataclass(frozen=True)
class TailEvent:
    """One line of the tail: an order event, from the stream or from the journal."""

    time: datetime | None
    event: str
    symbol: str
    side: str
    qty: Decimal | None  # this execution's size (stream fills); None for a REST snapshot
    price: Decimal | None  # this execution's price, else the order's average fill price
    filled_qty: Decimal | None
    order_qty: Decimal | None
    order_id: str
    client_order_id: str
    status: str
    execution_id: str | None
    source: str  # direct, or the journal row's source (stream, gap_fill, submit, reconcile)
    journal_id: int | None = None

    @property
    def is_fill(self) -> bool:
        return self.event == "fill"

    @property
    def is_partial(self) -> bool:
        return self.event == "partial_fill"

    def as_dict(self) -> dict[str, Any]:
        def text(v: Any) -> str | None:
            return None if v is None else str(v)

        return {
            "time": self.time.isoformat() if self.time else None,
            "event": self.event,
            "symbol": self.symbol,
            "side": self.side,
            "qty": text(self.qty),
            "price": text(self.price),
            "filled_qty": text(self.filled_qty),
            "order_qty": text(self.order_qty),
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "status": self.status,
            "execution_id": self.execution_id,
            "source": self.source,
            "journal_id": self.journal_id,
        }


def event_from_update(update: TradeUpdate, source: str = "direct") -> TailEvent:
    o = update.order
    return TailEvent(
        time=update.timestamp,
        event=update.event_raw or update.event.value,
        symbol=o.symbol,
        side=o.raw_value("side"),
        qty=update.qty,
        price=update.price if update.price is not None else o.filled_avg_price,
        filled_qty=o.filled_qty,
        order_qty=o.qty,
        order_id=o.id,
        client_order_id=o.client_order_id,
        status=o.raw_status,
        execution_id=update.execution_id,
        source=source,
    )


def event_from_fill(
    fill: Any, report: OrderReport, event: str, source: str, filled: Decimal | None = None
) -> TailEvent:
    """One fill the ledger counted that no stream event showed: missed during a drop and
    recovered over REST (``gap_fill``), or derived from a later execution (``synthetic``)."""
    return TailEvent(
        time=fill.timestamp,
        event=event,
        symbol=report.symbol,
        side=report.raw_value("side"),
        qty=fill.qty,
        price=fill.price,
        filled_qty=filled if filled is not None else report.filled_qty,
        order_qty=report.qty,
        order_id=report.id,
        client_order_id=report.client_order_id,
        status=report.raw_status,
        execution_id=None if fill.synthetic else fill.fill_id,
        source=source,
    )


class DirectLedger:
    """What the direct tail has shown, kept as a run keeps it: an ``OrderTracker`` in memory.

    The stream feeds it (``apply``) and, after every reconnect, gap-fills it over REST
    (``apply_order_report``) like a run's tracker, so the tail shows what the tracker would
    count: an execution repeated on the stream once (by execution id), a fill missed during a
    drop from REST, and a stream execution already counted by the gap fill not again. Each
    execution shown is counted once in ``executions``. It journals nothing (no store).
    """

    def __init__(self, clock: Any, show: Callable[[TailEvent], None]):
        from mqd_cli.orders.tracker import OrderTracker

        self.tracker = OrderTracker(None, clock, strategy="tail")
        self.show = show
        self.executions = 0  # fills shown: one per execution (a gap fill may stand for several)
        self.gap_filled = 0  # of those, recovered over REST after a drop
        self.skipped = 0  # events already shown (repeats, or executions the gap fill counted)

    def __getattr__(self, name: str) -> Any:  # order(), open_orders(), last_event_time() ...
        return getattr(self.tracker, name)

    def apply(self, update: TradeUpdate, *, source: str = "stream") -> Any:
        result = self.tracker.apply(update, source=source)
        if result.duplicate:
            self.skipped += 1
            return result
        real = [f for f in result.new_fills if not f.synthetic]
        earlier = [f for f in result.new_fills if f.synthetic]
        if earlier and not result.adopted:
            # executions missed before this one (a drop the gap fill has not reached yet)
            cum = (update.order.filled_qty or ZERO) - sum((f.qty for f in real), ZERO)
            for f in earlier:
                self._count(event_from_fill(f, update.order, "partial_fill", "synthetic", cum))
        if update.execution_id is not None or update.qty is not None:
            if real:
                self._count(event_from_update(update))
            elif not earlier:
                self.skipped += 1  # counted already by a gap fill
        elif result.changed:
            self.show(event_from_update(update))
        else:
            self.skipped += 1
        return result

    def apply_order_report(
        self, report: OrderReport, *, source: str = "rest", executions: Sequence[Any] = ()
    ) -> Any:
        result = self.tracker.apply_order_report(report, source=source, executions=executions)
        fills = list(result.new_fills)
        cum = (report.filled_qty or ZERO) - sum((f.qty for f in fills), ZERO)
        for i, f in enumerate(fills):
            cum += f.qty
            last = i == len(fills) - 1
            event = "fill" if last and report.status is OrderStatus.FILLED else "partial_fill"
            self.gap_filled += 1
            self._count(event_from_fill(f, report, event, source, cum))
        if not fills and result.changed:
            self.show(
                TailEvent(
                    time=report.updated_at or report.created_at,
                    event=report.raw_status,
                    symbol=report.symbol,
                    side=report.raw_value("side"),
                    qty=None,
                    price=report.filled_avg_price,
                    filled_qty=report.filled_qty,
                    order_qty=report.qty,
                    order_id=report.id,
                    client_order_id=report.client_order_id,
                    status=report.raw_status,
                    execution_id=None,
                    source=source,
                )
            )
        return result

    def _count(self, ev: TailEvent) -> None:
        self.executions += 1
        self.show(ev)


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return out if out.is_finite() else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def event_from_row(row: dict[str, Any]) -> TailEvent | None:
    """A journal row as a tail event; None for rows that are not a broker's order event
    (local bookkeeping) or that changed nothing (duplicates)."""
    if row.get("outcome") != "applied":
        return None
    try:
        payload = json.loads(row.get("payload") or "{}")
    except ValueError:
        return None
    order = payload.get("order") if isinstance(payload, dict) else None
    if not isinstance(order, dict):
        return None
    price = _dec(payload.get("price"))
    return TailEvent(
        time=_time(row.get("event_time")) or _time(row.get("recorded_at")),
        event=str(payload.get("event") or row.get("event") or "unknown"),
        symbol=str(order.get("symbol") or ""),
        side=str(order.get("side") or ""),
        qty=_dec(payload.get("qty")),
        price=price if price is not None else _dec(order.get("filled_avg_price")),
        filled_qty=_dec(order.get("filled_qty")),
        order_qty=_dec(order.get("qty")),
        order_id=str(order.get("id") or ""),
        client_order_id=str(order.get("client_order_id") or row.get("client_order_id") or ""),
        status=str(order.get("status") or ""),
        execution_id=payload.get("execution_id"),
        source=str(row.get("source") or "journal"),
        journal_id=row.get("id"),
    )


def parse_events(text: str | None) -> frozenset[str]:
    """``"fill,partial_fill"`` -> the set; UsageError names an unknown event and the nearest."""
    if not text:
        return frozenset()
    names = frozenset(n.strip().lower() for n in text.split(",") if n.strip())
    for name in sorted(names):
        if name not in EVENT_NAMES:
            near = difflib.get_close_matches(name, sorted(EVENT_NAMES), n=1)
            raise UsageError(
                f"--events: unknown event {name!r}"
                + (f" (did you mean {near[0]!r}?)" if near else ""),
                "events: " + ", ".join(sorted(EVENT_NAMES)),
            )
    return names


@dataclass(frozen=True)
class TailFilter:
    symbols: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()

    def matches(self, ev: TailEvent) -> bool:
        if self.symbols and ev.symbol.upper() not in self.symbols:
            return False
        return not self.events or ev.event in self.events


def first_row_since(store: Store, cutoff: datetime) -> int:
    """The journal id to read after so the first row is the first recorded at or after
    ``cutoff`` (a binary search on ids: rows are recorded in id order)."""
    from mqd_cli.store import orders as q

    stamp = q.ts(cutoff) or ""
    lo, hi = 0, q.last_event_id(store)  # answer in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        rows = q.events(store, after_id=mid, limit=1)
        if rows and rows[0]["recorded_at"] < stamp:
            lo = rows[0]["id"]  # that row (and all before it) is too old
        else:
            hi = mid
    return lo


class TailServices(Protocol):
    """What the tail takes from the factory (``mqd_cli.factory.Services``)."""

    @property
    def settings(self) -> Any: ...
    @property
    def clock(self) -> Any: ...
    @property
    def store(self) -> Store: ...

    def stream_for(self, tracker: Any, clock: Any) -> Any: ...


class StreamTail:
    """Follows the account's order events from the best source and hands each to ``emit``."""

    def __init__(
        self,
        services: TailServices,
        *,
        emit: Callable[[TailEvent], None],
        status: Callable[[str], None],
        filt: TailFilter | None = None,
        count: int | None = None,
        since: timedelta | None = None,
        direct: bool = False,
        journal: bool = False,
    ):
        from mqd_cli.stream.lease import account_key

        self.services = services
        self.settings = services.settings
        self.clock = services.clock
        self.emit = emit
        self.status = status
        self.filt = filt or TailFilter()
        self.count = count
        self.since = since
        self.direct = direct
        self.journal_only = journal
        self.account = account_key(self.settings)
        self.poll = self.settings.stream.tail_poll_interval.total_seconds()
        self.shown = 0
        self.fills = 0
        self.partials = 0
        self.reconnects = 0
        self.sources: list[str] = []
        self.started = self.clock.monotonic()
        self._after = 0
        self._stop: asyncio.Event | None = None
        self._stream: Any = None
        self.ledger: DirectLedger | None = None  # the direct connection's (kept across drops)
        self._stream_repeats = 0  # exact repeats the stream client dropped before the ledger

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._stream is not None:
            self._stream.stop()

    @property
    def done(self) -> bool:
        return (self.count is not None and self.shown >= self.count) or bool(
            self._stop is not None and self._stop.is_set()
        )

    def summary(self) -> str:
        seconds = self.clock.monotonic() - self.started
        source = " then ".join(self.sources) or "none"
        counts = f"{self.fills} fills, {self.partials} partial fills"
        if self.ledger is not None:  # direct: each execution once, the gap fill's included
            counts = f"{self.fills + self.partials} executions: {counts}"
            skipped = self.ledger.skipped + self._stream_repeats
            if self.ledger.gap_filled:
                counts += f"; {self.ledger.gap_filled} recovered by gap fill"
            if skipped:
                counts += f"; {skipped} repeat{'s' if skipped != 1 else ''} skipped"
        parts = [
            f"{self.shown} event{'s' if self.shown != 1 else ''}",
            f"({counts})",
            f"in {seconds:.1f}s from {source}",
        ]
        text = "tail: " + " ".join(parts)
        if self.reconnects:
            text += f"; {self.reconnects} reconnect{'s' if self.reconnects != 1 else ''}"
        return text

    def _show(self, ev: TailEvent) -> None:
        if self.done or not self.filt.matches(ev):
            return
        self.shown += 1
        self.fills += ev.is_fill
        self.partials += ev.is_partial
        self.emit(ev)

    def _live_lease(self) -> Any:
        from mqd_cli.store.stream import live_lease

        return live_lease(self.services.store, self.account, self.clock.now())

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Replay (``since``), then follow the journal or the stream until done or stopped."""
        from mqd_cli.store import orders as q

        self._stop = asyncio.Event()
        store = self.services.store
        lease = None if self.journal_only else self._live_lease()
        if self.journal_only or (lease is not None and not self.direct):
            mode = "journal"
        else:
            self._require_stream()
            mode = "direct"
            if lease is not None:
                self.status(
                    f"warning: {lease.holder} holds this account's stream; a second connection"
                    " is refused (429) or may displace it"
                )
        if mode == "journal":
            self._announce_journal(lease)
        else:
            self._announce("direct", f"direct connection to {self._url()}")
        last = q.last_event_id(store)
        if self.since is not None:
            self._after = first_row_since(store, self.clock.now() - self.since)
            self.status(f"replaying the journal of the last {_span(self.since)}")
            self._read_journal(until=last)
        self._after = max(self._after, last)
        while not self.done:
            if mode == "journal":
                mode = await self._follow_journal()
            else:
                mode = await self._follow_direct()

    def _require_stream(self) -> None:
        if self.settings.broker != "alpaca":
            raise UsageError(
                'no process holds the stream and broker = "sim" has no trade_updates websocket'
                " to connect to",
                'run `mqd sim serve` and set [alpaca] base_url/stream_url with broker = "alpaca",'
                " or watch the journal of `mqd run` with `mqd stream tail --journal`",
            )

    def _read_journal(self, until: int | None = None) -> int:
        from mqd_cli.store import orders as q

        n = 0
        while not self.done:
            rows = q.events(self.services.store, after_id=self._after, limit=_PAGE)
            for row in rows:
                if until is not None and row["id"] > until:
                    return n
                self._after = row["id"]
                n += 1
                ev = event_from_row(row)
                if ev is not None:
                    self._show(ev)
                if self.done:
                    return n
            if len(rows) < _PAGE:
                return n
        return n

    async def _follow_journal(self) -> str:
        lease = self._live_lease()
        if self.sources[-1:] != ["journal"]:
            self._announce_journal(lease)
        seen = _health_counts(lease)
        next_check = self.clock.monotonic() + _LEASE_CHECK_EVERY
        while not self.done:
            if not self._read_journal():
                await self._sleep(self.poll)
            if self.clock.monotonic() < next_check:
                continue
            next_check = self.clock.monotonic() + _LEASE_CHECK_EVERY
            lease = self._live_lease()
            if lease is None and not self.journal_only and self.settings.broker == "alpaca":
                self._read_journal()  # the holder's last rows first
                self.status("the holder released the stream; connecting directly")
                return "direct"
            counts = _health_counts(lease)
            if counts is not None and seen is not None:
                if counts[0] > seen[0]:
                    self.reconnects += counts[0] - seen[0]
                    self.status(f"holder reconnected ({counts[0]} reconnects, gap filled)")
                elif counts[1] != seen[1]:
                    state = "connected" if counts[1] else "disconnected, reconnecting"
                    self.status(f"holder's stream {state}")
            elif counts is None and seen is not None:
                self.status("the holder released the stream; following the journal only")
            elif counts is not None and seen is None:
                self.status(f"{lease.holder} holds the stream now")
            seen = counts
        return "done"

    async def _follow_direct(self) -> str:
        url = self._url()
        if self.ledger is None:
            self.ledger = DirectLedger(self.clock, self._show)
        # The ledger stands where a run's tracker stands: it gets every event and the REST gap
        # fill after each reconnect, and shows what it counts (it journals nothing).
        stream = self.services.stream_for(self.ledger, self.clock)
        self._stream = stream
        if self.sources[-1:] != ["direct"]:
            self._announce("direct", f"direct connection to {url}")
        task = asyncio.create_task(stream.run())
        connected, failed, next_check = False, 0, self.clock.monotonic() + _LEASE_CHECK_EVERY
        connects = 0  # connections seen so far: each one after the first is a reconnect
        down_since: float | None = None  # when the connection was last seen down
        last_word = 0.0  # when the last "still not connected" status was said
        try:
            while not self.done:
                await self._sleep(min(self.poll, 0.5))
                if task.done():
                    task.result()
                    return "done"
                h = stream.health
                if h.connects > connects:
                    if not connects:
                        self.status("connected, listening to trade_updates")
                    again = h.connects - max(connects, 1)
                    if again:
                        self.reconnects += again
                        times = "" if again == 1 else f" {again} times"
                        self.status(f"reconnected{times}; missed events gap-filled over REST")
                    connects, connected = h.connects, h.connected
                elif h.connected != connected:
                    connected = h.connected
                    if not connected:
                        self.status(f"disconnected ({h.last_error}); reconnecting")
                if h.failed_attempts != failed:
                    failed = h.failed_attempts
                    if h.auth_failures and not h.connects:
                        raise BrokerError(
                            "the trade_updates stream refused the API keys",
                            "check [alpaca] key_id/secret_key (and paper = true for paper keys)",
                        )
                    self.status(f"{h.last_error}; retrying with backoff")
                now = self.clock.monotonic()
                if h.connected:
                    down_since = None
                elif down_since is None:
                    down_since = last_word = now
                elif now - last_word >= _DOWN_STATUS_EVERY:
                    # a broker that is down may hold each attempt for long: say so meanwhile
                    last_word = now
                    why = f" (last error: {h.last_error})" if h.last_error else ""
                    self.status(f"still not connected after {now - down_since:.0f}s{why}; retrying")
                if self.direct or self.clock.monotonic() < next_check:
                    continue
                next_check = self.clock.monotonic() + _LEASE_CHECK_EVERY
                lease = self._live_lease()
                if lease is not None:
                    from mqd_cli.store import orders as q

                    self._after = q.last_event_id(self.services.store)
                    self.status(f"{lease.holder} took the stream lease; following its journal")
                    return "journal"
            return "done"
        finally:
            self._stream_repeats += stream.health.duplicates
            if stream.health.connects > max(connects, 1):  # between the last look and the end
                self.reconnects += stream.health.connects - max(connects, 1)
            stream.stop()
            self._stream = None
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(3):
                    await task

    def _url(self) -> str:
        from mqd_cli.brokers.alpaca import stream_endpoint

        return stream_endpoint(self.settings.alpaca)

    def _announce_journal(self, lease: Any) -> None:
        if lease is not None:
            self._announce("journal", f"journal of the running `mqd run` ({lease.holder})")
        else:
            self._announce("journal", "the journal (no process holds the stream now)")

    def _announce(self, source: str, text: str) -> None:
        self.sources.append(source)
        self.status(f"source: {text}")

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()


def _health_counts(lease: Any) -> tuple[int, bool] | None:
    if lease is None:
        return None
    h = lease.health or {}
    return int(h.get("reconnects") or 0), bool(h.get("connected"))


def _span(d: timedelta) -> str:
    from mqd_cli.durations import format_duration

    return format_duration(d)
