"""The simulated exchange: one deterministic, seeded matching engine behind the Broker protocol.

``SimBroker`` is used in-process (``broker = "sim"``, backtests) and behind the emulator
(``mqd sim serve``), which relays its ``subscribe`` events on ``/stream`` and its typed errors
(``status``, ``code``, ``body``) verbatim as HTTP answers. It follows alpaca-protocol.md §3-4.
This module is the exchange's front desk: the Broker methods, the lock, the order books, the
order life cycle and its events. The rest lives next to it:

* sim_admission.py: which orders are accepted; Alpaca's rejections (status, code, message).
* sim_matching.py: when a working order fills, at what price and how much, bar by bar.
* sim_hours.py: NYSE sessions, order expiry and auction moments, clock and calendar.
* sim_bars.py: the data API's bars, from the feed the orders fill on.
* sim_account.py: positions, cash, equity, margin and buying power in Decimal.
* sim_orders.py: the order record and its ``OrderReport``.
* sim_assets.py: the asset universe.
* sim_legs.py: the groups of bracket, oco and oto orders (held legs, one-cancels-other).

Order life cycle. Submit in session: ``pending_new`` then ``new`` (the returned report is
``new``); off hours (``market_hours = "nyse"``): ``accepted``, then ``new`` at the first bar
the order may trade in. Fills: ``partial_fill`` / ``fill``. Cancel: ``pending_cancel`` then
``canceled``. Replace: ``pending_replace`` (old), ``replaced`` (old, ``replaced_by``), ``new``
(new order, ``replaces``). ``expired`` at a day order's close; ioc/fok remainders ``canceled``.
Advanced orders (``legs.py``): legs are ``held`` with no event of their own until they work
(``new``); ending one order of a group without a fill cancels the rest of the group.

Everything random (ids, execution ids, partial fills) comes from generators seeded by
``settings.seed``: the same calls at the same clock times give the same ids, fills and events.
State lives in memory; the emulator process holds it for its lifetime.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from mqd_cli.brokers.sim import hours as sim_hours
from mqd_cli.brokers.sim.account import SimAccount, SimPosition
from mqd_cli.brokers.sim.admission import admit_new, admit_replacement, already_final, not_found
from mqd_cli.brokers.sim.assets import START_PRICES, default_assets, generate_universe
from mqd_cli.brokers.sim.bars import feed_bars
from mqd_cli.brokers.sim.legs import (
    follow_partial_fill,
    group_of,
    new_legs,
    relink,
    waits_for_parent,
)
from mqd_cli.brokers.sim.matching import MarketPoint, fill_qty, market_points, match_price
from mqd_cli.brokers.sim.orders import (
    STOP_LOSS,
    ZERO,
    SimOrder,
    held_for_sells,
    new_order,
    report,
)
from mqd_cli.brokers.sim.prices import CsvPrices, SyntheticPrices, read_bars_csv
from mqd_cli.model import (
    AccountReport,
    AssetClass,
    AssetInfo,
    Bar,
    CalendarDay,
    CancelResult,
    ClockReport,
    FillReport,
    OrderClass,
    OrderIntent,
    OrderReport,
    OrderStatus,
    PositionReport,
    Side,
    TimeInForce,
    TradeEvent,
    TradeUpdate,
)
from mqd_cli.symbols.spelling import crypto_pair

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.prices import PriceSource
    from mqd_cli.clock import Clock
    from mqd_cli.config.settings import SimSettings

__all__ = ["SimBroker"]

# A version 4 UUID: the variant bits (10) and the version nibble (4) set, as uuid.UUID does.
_UUID_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_V4 = (0x8000 << 48) | (4 << 76)


class _AccountField:
    """A ``SimBroker`` attribute kept by its ``SimAccount`` (``broker.cash`` is
    ``broker.account.cash``), so callers keep reading and writing it on the broker."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, broker: SimBroker | None, owner: type | None = None):
        if broker is None:
            return self
        return getattr(broker.account, self.name)

    def __set__(self, broker: SimBroker, value) -> None:
        setattr(broker.account, self.name, value)


class SimBroker:
    """The simulated Alpaca paper exchange (implements ``Broker``); ``name = "sim"``."""

    name = "sim"
    account_id = _AccountField()
    account_number = _AccountField()
    cash = _AccountField()
    realized_pl = _AccountField()
    fees_paid = _AccountField()
    last_equity = _AccountField()

    def __init__(
        self,
        settings: SimSettings,
        clock: Clock,
        *,
        assets: list[AssetInfo] | None = None,
        prices: PriceSource | None = None,
        account_id: str | None = None,
        auto_step: bool = True,
    ):
        self.settings = settings
        self.clock = clock
        self.auto_step = auto_step
        self._lock = threading.RLock()
        seed = settings.seed
        if assets is None:
            n = settings.universe_size
            assets = generate_universe(n, seed) if n else default_assets()
        self._assets: dict[str, AssetInfo] = {}
        self._assets_by_id: dict[str, AssetInfo] = {}
        for a in assets:
            self._add_asset(a)
        self.synthetic = SyntheticPrices(
            seed,
            timeframe=settings.bar_interval,
            start_prices=dict(START_PRICES),
        )
        self.prices: PriceSource = prices if prices is not None else self.synthetic
        self._id_rng = random.Random(f"mqd-sim|{seed}|ids")
        self._fill_rng = random.Random(f"mqd-sim|{seed}|fills")
        acct_rng = random.Random(f"mqd-sim|{seed}|account")
        self.account = SimAccount(
            settings,
            self._price,
            account_id=account_id or str(uuid.UUID(int=acct_rng.getrandbits(128), version=4)),
            account_number="PA"
            + "".join(acct_rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10)),
        )
        if prices is None and settings.price_csv:
            self.load_csv_prices(settings.price_csv)
        self.created_at = clock.now()
        self.fills: list[FillReport] = []
        self._orders: dict[str, SimOrder] = {}
        # The orders that may still fill: what submits and steps look at, so their cost follows
        # the open orders, not the history. An order leaves it when it stops working.
        self._working: dict[str, SimOrder] = {}
        # Every client_order_id ever used (Alpaca never takes one twice); None once archived.
        self._by_client_id: dict[str, SimOrder | None] = {}
        self._seq = 0
        self._subscribers: list[Callable[[TradeUpdate], None]] = []
        self._outbox: list[TradeUpdate] = []
        self._last_now: datetime | None = None
        self._alt_walks: dict[timedelta, SyntheticPrices] = {}
        # Legs that started working during the current step: matched in a further pass of it.
        self._activated: list[SimOrder] = []

    # -- prices ---------------------------------------------------------------------------------

    def load_csv_prices(self, path: str) -> None:
        """Replay bars from a CSV (see ``prices.read_bars_csv``); other symbols keep the walk.

        Symbols in the file that the universe lacks are added as plain active US equities.
        """
        data = read_bars_csv(path)
        with self._lock:
            self.prices = CsvPrices(data, self.synthetic)
            self.account.changed()  # positions are worth the file's prices now
            for sym in data:
                if sym.upper() not in self._assets:
                    from mqd_cli.brokers.sim.assets import _equity

                    self._add_asset(_equity(sym.upper(), f"{sym.upper()} (CSV)", "NYSE"))

    def last_price(self, symbol: str) -> Decimal:
        """The last traded price of ``symbol`` at ``clock.now()``."""
        asset = self._asset_or_404(symbol)
        return self._price(asset.symbol, self.clock.now())

    def _price(self, symbol: str, now: datetime) -> Decimal:
        return self.prices.price_at(symbol, now)

    def bars(self, symbol: str, start: datetime, end: datetime, timeframe: timedelta) -> list[Bar]:
        """Bars of ``symbol`` starting in [start, end) from the same feed the orders fill on.

        A whole multiple of ``bar_interval`` aggregates the walk; another length gets its own
        walk of that bar length. With ``market_hours = "nyse"`` equity bars are only the
        trading days' 04:00-20:00 New York hours (daily and longer bars: trading days).
        Unknown symbols give no bars (as Alpaca's data API does).
        """
        asset = self._find_asset(symbol)
        if asset is None:
            return []
        return feed_bars(
            asset,
            start,
            end,
            timeframe,
            prices=self.prices,
            synthetic=self.synthetic,
            other_walks=self._alt_walks,
            seed=self.settings.seed,
            nyse=self._nyse,
        )

    # -- events ---------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[TradeUpdate], None]) -> Callable[[], None]:
        """Call ``callback`` with every trade update, in order. Returns the unsubscribe."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: TradeEvent, o: SimOrder, ts: datetime, **fill) -> OrderReport:
        """Queue the event; returns its report of ``o`` (as ``o`` is now)."""
        order = report(o)
        self._outbox.append(
            TradeUpdate(event=event, timestamp=ts, order=order, event_raw=event.value, **fill)
        )
        return order

    def _deliver(self) -> list[TradeUpdate]:
        with self._lock:
            events, self._outbox = self._outbox, []
            subscribers = list(self._subscribers)
        for event in events:
            for callback in subscribers:
                callback(event)
        return events

    # -- the market -----------------------------------------------------------------------------

    def step(self) -> list[TradeUpdate]:
        """Bring the market to ``clock.now()``: match working orders against the bars since the
        last step, expire day orders at the close, emit the events. Returns this step's events.

        Idempotent while the clock stands still (a new order is still matched once).
        """
        with self._lock:
            self._step_locked()
        return self._deliver()

    def _step_locked(self) -> None:
        now = self.clock.now()
        if self._last_now is not None and now < self._last_now:
            now = self._last_now
        self.account.roll_day(now)
        bar_cache: dict[tuple[str, datetime], list[Bar]] = {}
        nyse = self._nyse
        batch = list(self._working.values())
        while batch:  # legs a fill activated get a pass of their own, from their activation on
            self._activated = []
            points: list[tuple[MarketPoint, SimOrder]] = []
            for o in batch:
                for p in market_points(o, now, self.prices, bar_cache, nyse=nyse):
                    points.append((p, o))
            points.sort(key=lambda po: (po[0].ts, po[0].prio, po[0].seq))
            for point, o in points:
                if o.is_working:
                    self._apply_point(o, point)
            batch = [o for o in self._activated if o.is_working]
        for o in self._working.values():
            o.seen_until = now
        self._last_now = now

    def archive_finished(self) -> int:
        """Let go of the finished orders (filled, canceled, expired, replaced, rejected): a long
        in-process session (a backtest) then holds only what may still trade. Their
        client_order_ids stay taken; ``get_order``, ``get_order_by_client_id`` and
        ``list_orders`` no longer find them. Fills, positions and cash are unchanged. Returns
        how many orders were archived."""
        with self._lock:
            done = [
                o
                for o in self._orders.values()
                if o.id not in self._working
                and not any(m.status.is_open for m in group_of(o))  # a held leg waits
            ]
            for o in done:
                del self._orders[o.id]
                self._by_client_id[o.client_order_id] = None
            return len(done)

    @property
    def _nyse(self) -> bool:
        return self.settings.market_hours == "nyse"

    def _apply_point(self, o: SimOrder, point: MarketPoint) -> None:
        ts = point.ts
        if point.kind == "expire":
            self._finish(o, OrderStatus.EXPIRED, TradeEvent.EXPIRED, ts)
            return
        if o.status is OrderStatus.ACCEPTED:
            o.status = OrderStatus.NEW
            o.updated_at = ts
            self._emit(TradeEvent.NEW, o, ts)
        held = o.status is OrderStatus.HELD  # an armed stop-loss leg
        price = match_price(o, point, self.settings)
        if held and (price is not None or o.triggered):
            self._trigger(o, ts)
        if price is not None:
            qty = fill_qty(o, price, point.bar_start, self.settings, self._fill_rng)
            if qty is None:  # fok that cannot fill whole
                self._finish(o, OrderStatus.CANCELED, TradeEvent.CANCELED, ts)
                return
            if qty > 0:
                self._fill(o, qty, price, ts, point.bar_start)
        if o.is_working and (
            o.tif in (TimeInForce.IOC, TimeInForce.FOK) or point.kind == "auction"
        ):
            if point.kind == "auction":
                self._finish(o, OrderStatus.EXPIRED, TradeEvent.EXPIRED, ts)
            else:
                self._finish(o, OrderStatus.CANCELED, TradeEvent.CANCELED, ts)

    def _new_id(self) -> str:
        """``str(uuid.UUID(int=<128 seeded bits>, version=4))``, formatted directly."""
        n = self._id_rng.getrandbits(128) & _UUID_KEEP | _UUID_V4
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _fill(self, o: SimOrder, qty: Decimal, price: Decimal, ts: datetime, bar: datetime) -> None:
        fee, position_qty = self.account.settle(o.asset, o.side, qty, price)
        o.filled_qty += qty
        o.filled_value += qty * price
        o.bar_fills = {bar: o.bar_fills.get(bar, ZERO) + qty}
        o.updated_at = ts
        done = o.filled_qty >= (o.target_qty or ZERO)
        if done:
            o.status = OrderStatus.FILLED
            o.filled_at = ts
            self._working.pop(o.id, None)
        else:
            o.status = OrderStatus.PARTIALLY_FILLED
        execution_id = self._new_id()
        self.fills.append(
            FillReport(
                order_id=o.id,
                client_order_id=o.client_order_id,
                symbol=o.symbol,
                side=o.side,
                qty=qty,
                price=price,
                timestamp=ts,
                execution_id=execution_id,
                position_qty=position_qty,
                fee=fee,
            )
        )
        self._emit(
            TradeEvent.FILL if done else TradeEvent.PARTIAL_FILL,
            o,
            ts,
            execution_id=execution_id,
            price=price,
            qty=qty,
            position_qty=position_qty,
        )
        if o.order_class is not OrderClass.SIMPLE:
            self._after_group_fill(o, done, ts)

    def _after_group_fill(self, o: SimOrder, done: bool, ts: datetime) -> None:
        """A fill in a group: a completely filled entry activates its legs; one-cancels-other
        siblings are canceled by a complete fill and shrink to what is left after a partial."""
        if done:
            for s in o.siblings:
                if s.status.is_open:
                    self._finish(s, OrderStatus.CANCELED, TradeEvent.CANCELED, ts, cascade=False)
            for leg in o.legs:
                if waits_for_parent(leg) and leg.status is OrderStatus.HELD:
                    self._activate(leg, ts)
        else:
            follow_partial_fill(o)

    def _activate(self, leg: SimOrder, ts: datetime) -> None:
        """A held leg starts working (its entry filled). A bracket's stop-loss stays ``held``,
        watching its stop; the rest become ``new``."""
        leg.seen_until = ts  # it sees the market from now on, not since it was submitted
        leg.updated_at = ts
        if sim_hours.keeps_nyse_hours(leg.asset, self._nyse):
            sim_hours.schedule(leg, ts)
        self._working[leg.id] = leg
        self._activated.append(leg)
        if leg.role == STOP_LOSS and leg.order_class is OrderClass.BRACKET:
            leg.armed = True
            return
        leg.status = OrderStatus.NEW
        self._emit(TradeEvent.NEW, leg, ts)

    def _trigger(self, o: SimOrder, ts: datetime) -> None:
        """A held stop-loss leg's stop was reached: it becomes ``new`` and its sibling (the
        take-profit) is canceled, as Alpaca does when the stop triggers."""
        o.armed = False
        o.status = OrderStatus.NEW
        o.updated_at = ts
        self._emit(TradeEvent.NEW, o, ts)
        for s in o.siblings:
            if s.status.is_open:
                self._finish(s, OrderStatus.CANCELED, TradeEvent.CANCELED, ts, cascade=False)

    def _finish(
        self,
        o: SimOrder,
        status: OrderStatus,
        event: TradeEvent,
        ts: datetime,
        *,
        cascade: bool = True,
    ) -> list[SimOrder]:
        """End ``o``; with ``cascade``, a cancel or expiry also cancels the rest of its group
        that is still open. Returns the orders ended."""
        o.status = status
        o.updated_at = ts
        o.armed = False
        self._working.pop(o.id, None)
        if status is OrderStatus.CANCELED:
            o.canceled_at = ts
        elif status is OrderStatus.EXPIRED:
            o.expired_at = ts
        self._emit(event, o, ts)
        ended = [o]
        if cascade and o.order_class is not OrderClass.SIMPLE:
            for m in group_of(o):
                if m is not o and m.status.is_open:
                    ended += self._finish(
                        m, OrderStatus.CANCELED, TradeEvent.CANCELED, ts, cascade=False
                    )
        return ended

    # -- Broker: account and positions ----------------------------------------------------------

    def get_account(self) -> AccountReport:
        with self._lock:
            return self.account.report(self.clock.now())

    def list_positions(self) -> list[PositionReport]:
        with self._lock:
            now = self.clock.now()
            return [
                self._position_report(p, now) for _, p in sorted(self.account.positions.items())
            ]

    def get_position(self, symbol: str) -> PositionReport:
        with self._lock:
            return self._position_report(self._position_or_404(symbol), self.clock.now())

    def _position_or_404(self, symbol: str) -> SimPosition:
        asset = self._find_asset(symbol)
        pos = self.account.positions.get(asset.symbol) if asset else None
        if pos is None:
            raise not_found("position does not exist")
        return pos

    def _position_report(self, pos: SimPosition, now: datetime) -> PositionReport:
        held, _ = held_for_sells(self._working.values(), pos.asset.symbol)
        return self.account.position_report(pos, now, held)

    # -- Broker: orders -------------------------------------------------------------------------

    def list_orders(
        self,
        status: str = "open",
        *,
        after: datetime | None = None,
        until: datetime | None = None,
        symbols: Sequence[str] | None = None,
        limit: int | None = None,
        nested: bool = False,
    ) -> list[OrderReport]:
        """Orders newest first (submission time), filtered like ``GET /v2/orders``.

        Flat (the default), every order is listed, legs included, none with its legs. With
        ``nested`` the legs are listed under their parent only; a group is open while any of
        its orders is, so it is in exactly one of ``open`` and ``closed``.
        """
        wanted = {self._canonical(s) for s in symbols} if symbols else None
        with self._lock:
            out = []
            for o in sorted(
                self._orders.values(), key=lambda o: (o.created_at, o.seq), reverse=True
            ):
                if nested and o.parent is not None:
                    continue
                members = group_of(o) if nested else (o,)
                is_open = any(m.status.is_open for m in members)
                if status == "open" and not is_open:
                    continue
                if status == "closed" and is_open:
                    continue
                if after is not None and o.created_at <= after:
                    continue
                if until is not None and o.created_at >= until:
                    continue
                if wanted is not None and o.symbol not in wanted:
                    continue
                out.append(report(o, nested=nested))
                if limit is not None and len(out) >= limit:
                    break
            return out

    def get_order(self, order_id: str) -> OrderReport:
        with self._lock:
            return report(self._order_or_404(order_id))

    def get_order_by_client_id(self, client_order_id: str) -> OrderReport:
        with self._lock:
            o = self._by_client_id.get(client_order_id)
            if o is None:
                raise not_found("order not found")
            return report(o)

    def submit_order(self, intent: OrderIntent) -> OrderReport:
        """Validate like Alpaca, accept, emit ``pending_new``/``new`` (or ``accepted`` off
        hours) and return the order as accepted; fills follow on ``step()`` (run at once when
        ``auto_step``)."""
        with self._lock:
            now = self.clock.now()
            asset, position_intent = admit_new(
                intent,
                now,
                find_asset=self._find_asset,
                account=self.account,
                working=self._working,
                client_ids=self._by_client_id,
            )
            self._seq += 1
            order_id = self._new_id()
            cid = intent.client_order_id
            o = new_order(
                intent,
                asset,
                now,
                seq=self._seq,
                id=order_id,
                client_order_id=cid if cid is not None else self._new_id(),
                position_intent=position_intent,
            )
            if intent.order_class is not OrderClass.SIMPLE:
                self._book_legs(o, intent, now)
            order = self._place(o, now)
        self._deliver()
        return order

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _book_legs(self, o: SimOrder, intent: OrderIntent, now: datetime) -> None:
        """Create an advanced order's held legs; an oco's stop-loss watches its stop at once."""
        o.legs = new_legs(o, intent, now, new_id=self._new_id, next_seq=self._next_seq)
        for leg in o.legs:
            self._orders[leg.id] = leg
            self._by_client_id[leg.client_order_id] = leg
            if not waits_for_parent(leg):
                leg.armed = True
                self._working[leg.id] = leg
                if sim_hours.keeps_nyse_hours(leg.asset, self._nyse):
                    sim_hours.schedule(leg, now)

    def _place(self, o: SimOrder, now: datetime, *, replacing: bool = False) -> OrderReport:
        """Book an admitted order, emit its first events and return it as accepted; with
        ``auto_step`` the market then runs at once."""
        order = self._accept(o, now, replacing=replacing)
        if self.auto_step:
            self._step_locked()
        return order

    def _accept(self, o: SimOrder, now: datetime, *, replacing: bool) -> OrderReport:
        """Book ``o`` and emit its first events; returns the order as accepted."""
        self._orders[o.id] = o
        self._working[o.id] = o
        self._by_client_id[o.client_order_id] = o
        if sim_hours.keeps_nyse_hours(o.asset, self._nyse):
            sim_hours.schedule(o, now)
            if not sim_hours.in_session(o, now):
                o.status = OrderStatus.ACCEPTED
                return self._emit(TradeEvent.ACCEPTED, o, now)
        if not replacing:
            o.status = OrderStatus.PENDING_NEW
            self._emit(TradeEvent.PENDING_NEW, o, now)
        o.status = OrderStatus.NEW
        return self._emit(TradeEvent.NEW, o, now)

    def _canonical(self, symbol: str) -> str:
        asset = self._find_asset(symbol)
        return asset.symbol if asset else symbol.upper()

    def cancel_order(self, order_id: str) -> None:
        """``pending_cancel`` then ``canceled``; 422 when the order is already final.
        Cancelling any order of a bracket, oco or oto cancels the rest of its group."""
        with self._lock:
            o = self._order_or_404(order_id)
            self._cancel(o, self.clock.now())
        self._deliver()

    def _cancel(self, o: SimOrder, now: datetime) -> list[SimOrder]:
        if not (o.is_working or o.status is OrderStatus.HELD):
            raise already_final(o)
        o.status = OrderStatus.PENDING_CANCEL
        o.updated_at = now
        self._emit(TradeEvent.PENDING_CANCEL, o, now)
        return self._finish(o, OrderStatus.CANCELED, TradeEvent.CANCELED, now)

    def cancel_all_orders(self) -> list[CancelResult]:
        """Cancel every working order: one row per order with status 200 (Alpaca's 207 body)."""
        with self._lock:
            now = self.clock.now()
            out = []
            for o in sorted(self._working.values(), key=lambda o: o.seq):
                if o.is_working:
                    for done in self._cancel(o, now):
                        out.append(CancelResult(order_id=done.id, status=200, order=report(done)))
        self._deliver()
        return out

    def replace_order(
        self,
        order_id: str,
        *,
        qty: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        trail: Decimal | None = None,
        time_in_force: TimeInForce | None = None,
        client_order_id: str | None = None,
    ) -> OrderReport:
        """A new order replaces a working one: events ``pending_replace`` and ``replaced`` on
        the old order (``replaced_by``), ``new`` on the new one (``replaces``).

        The new qty is ``qty`` when given, else what the old order had left. A leg's successor
        takes its place in the group; one of a held leg starts held (event ``held``).
        """
        with self._lock:
            now = self.clock.now()
            old = self._order_or_404(order_id)
            held = old.status is OrderStatus.HELD
            terms = admit_replacement(
                old,
                now,
                qty=qty,
                limit_price=limit_price,
                stop_price=stop_price,
                trail=trail,
                time_in_force=time_in_force,
                client_order_id=client_order_id,
                account=self.account,
                working=self._working,
                client_ids=self._by_client_id,
            )
            self._seq += 1
            new_id = self._new_id()
            new = old.successor(
                seq=self._seq,
                id=new_id,
                client_order_id=client_order_id or self._new_id(),
                now=now,
                tif=terms.tif,
                qty=terms.qty,
                limit_price=terms.limit_price,
                stop_price=terms.stop_price,
                trail_price=terms.trail_price,
                trail_percent=terms.trail_percent,
            )
            old.status = OrderStatus.PENDING_REPLACE
            old.updated_at = now
            self._emit(TradeEvent.PENDING_REPLACE, old, now)
            old.status = OrderStatus.REPLACED
            old.replaced_at = now
            old.armed = False
            self._working.pop(old.id, None)
            old.replaced_by = new.id
            self._emit(TradeEvent.REPLACED, old, now)
            relink(old, new)
            order = self._hold(new, now) if held else self._place(new, now, replacing=True)
        self._deliver()
        return order

    def _hold(self, o: SimOrder, now: datetime) -> OrderReport:
        """Book the successor of a held leg: held too, watching its stop when its group is
        live (``armed``), else waiting for its entry."""
        o.status = OrderStatus.HELD
        self._orders[o.id] = o
        self._by_client_id[o.client_order_id] = o
        if o.armed:
            self._working[o.id] = o
            if sim_hours.keeps_nyse_hours(o.asset, self._nyse):
                sim_hours.schedule(o, now)
        self._emit(TradeEvent.HELD, o, now)
        order = report(o)
        if self.auto_step:
            self._step_locked()
        return order

    def close_position(self, symbol: str, qty: Decimal | None = None) -> OrderReport:
        """Submit a market order that flattens (or reduces by ``qty``) a position."""
        with self._lock:
            pos = self._position_or_404(symbol)
            size = abs(pos.qty) if qty is None else min(qty, abs(pos.qty))
            side = Side.SELL if pos.qty > 0 else Side.BUY
        tif = TimeInForce.GTC if pos.asset.asset_class is AssetClass.CRYPTO else TimeInForce.DAY
        return self.submit_order(
            OrderIntent(
                symbol=pos.asset.symbol,
                side=side,
                qty=size,
                time_in_force=tif,
                reason="close_position",
            )
        )

    # -- Broker: assets, clock, calendar --------------------------------------------------------

    def _add_asset(self, asset: AssetInfo) -> None:
        self._assets[asset.symbol.upper()] = asset
        self._assets_by_id[asset.id] = asset

    def _find_asset(self, symbol_or_id: str) -> AssetInfo | None:
        key = symbol_or_id.strip().upper()
        found = self._assets.get(key) or self._assets_by_id.get(symbol_or_id.strip().lower())
        if found is None and "/" not in key:
            pair = crypto_pair(key)  # BTCUSD, as positions name it
            found = self._assets.get(pair) if pair else None
        return found

    def _asset_or_404(self, symbol: str) -> AssetInfo:
        asset = self._find_asset(symbol)
        if asset is None:
            raise not_found(f"asset not found for {symbol}")
        return asset

    def _order_or_404(self, order_id: str) -> SimOrder:
        o = self._orders.get(order_id)
        if o is None:
            raise not_found("order not found")
        return o

    def list_assets(
        self, asset_class: str | None = None, status: str | None = None
    ) -> list[AssetInfo]:
        out = list(self._assets.values())
        if asset_class:
            out = [a for a in out if a.asset_class.value == asset_class]
        if status:
            out = [a for a in out if a.status.value == status]
        return out

    def get_asset(self, symbol: str) -> AssetInfo:
        return self._asset_or_404(symbol)

    def get_clock(self) -> ClockReport:
        return sim_hours.clock_report(self.clock.now(), nyse=self._nyse)

    def get_calendar(self, start: date, end: date) -> list[CalendarDay]:
        return sim_hours.calendar(start, end)

    def close(self) -> None:
        with self._lock:
            self._subscribers.clear()
