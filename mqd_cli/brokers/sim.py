"""The simulated exchange: one deterministic, seeded matching engine behind the Broker protocol.

``SimBroker`` is used in-process (``broker = "sim"``, backtests) and behind the emulator
(``mqd sim serve``), which relays its ``subscribe`` events on ``/stream`` and its typed errors
(``status``, ``code``, ``body``) verbatim as HTTP answers. It follows alpaca-protocol.md §3-4:

* Order life cycle. Submit in session: ``pending_new`` then ``new`` (the returned report is
  ``new``); off hours (``market_hours = "nyse"``): ``accepted``, then ``new`` at the first bar
  the order may trade in. Fills: ``partial_fill`` / ``fill``. Cancel: ``pending_cancel`` then
  ``canceled``. Replace: ``pending_replace`` (old), ``replaced`` (old, ``replaced_by``), ``new``
  (new order, ``replaces``). ``expired`` at a day order's close; ioc/fok remainders ``canceled``.
* Matching, bar by bar on the price feed (a seeded random walk, or CSV replay). The price at a
  moment is the open of the bar containing it. A new order is first checked at the price of
  its submission moment, then against each later bar: complete bars with their whole range
  (buy limit fills when low <= limit, at min(open, limit); stops trigger on the high/low and
  fill at max/min(open, stop) plus slippage), the current bar at its open only, so nothing
  after ``clock.now()`` is used. At most ``liquidity`` shares per order per bar; with
  probability ``partial_fill_probability`` a fill takes only 10-90 % of what it could.
* Accounting in Decimal: signed positions with cost basis and realized P&L, cash net of the
  per-share fee, equity = cash + long + short market value, buying power Reg T style
  (multiplier 2: (equity - initial margin) x 2; 1: cash; 4: (equity - maintenance) x 4).
* Rejections with Alpaca's status, code and message (see ``docs/sim.md`` for the table and
  which texts are inferred rather than quoted).

Everything random (ids, execution ids, partial fills) comes from generators seeded by
``settings.seed``: the same calls at the same clock times give the same ids, fills and events.
State lives in memory; the emulator process holds it for its lifetime.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import TYPE_CHECKING

from mqd_cli.brokers.errors import InsufficientFunds, NotFound, OrderRejected
from mqd_cli.brokers.sim_assets import START_PRICES, default_assets, generate_universe
from mqd_cli.model import (
    AccountReport,
    AssetClass,
    AssetInfo,
    AssetStatus,
    Bar,
    CalendarDay,
    CancelResult,
    ClockReport,
    FillReport,
    OrderIntent,
    OrderReport,
    OrderStatus,
    OrderType,
    PositionReport,
    PositionSide,
    Side,
    TimeInForce,
    TradeEvent,
    TradeUpdate,
)
from mqd_cli.prices import CsvPrices, SyntheticPrices, read_bars_csv, tick_for, to_tick
from mqd_cli.wire import error_body, num

if TYPE_CHECKING:
    from mqd_cli.clock import Clock
    from mqd_cli.config import SimSettings
    from mqd_cli.prices import PriceSource

__all__ = ["SimBroker"]

ZERO = Decimal("0")
NANO = Decimal("0.000000001")
_WORKING = frozenset({OrderStatus.ACCEPTED, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
_EXT_OPEN, _EXT_CLOSE = time(4, 0), time(20, 0)
# Catching up after a long clock jump: at most this many bars per order are replayed.
_MAX_CATCHUP_BARS = 50_000


# -- errors with Alpaca's bodies ------------------------------------------------------------------


def _reject(status: int, code: int, message: str, cls=OrderRejected, **extra) -> OrderRejected:
    return cls(message, status=status, code=code, body=error_body(code, message, **extra))


def _invalid(message: str) -> OrderRejected:
    return _reject(422, 40010001, message)


def _unprocessable(message: str) -> OrderRejected:
    return _reject(422, 42210000, message)


def _not_found(message: str) -> NotFound:
    return NotFound(message, status=404, code=40410000, body=error_body(40410000, message))


def _sub_penny(name: str, price: Decimal) -> OrderRejected:
    return _unprocessable(
        f"invalid {name} {num(price)}. sub-penny increment does not fulfill minimum pricing "
        "criteria"
    )


def _is_whole(value: Decimal) -> bool:
    return value == value.to_integral_value()


# -- internal state -------------------------------------------------------------------------------


@dataclass
class _Order:
    seq: int
    id: str
    client_order_id: str
    asset: AssetInfo
    side: Side
    type: OrderType
    tif: TimeInForce
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    extended_hours: bool
    status: OrderStatus
    created_at: datetime
    position_intent: str
    updated_at: datetime = None  # type: ignore[assignment]
    target_qty: Decimal | None = None  # qty, or notional / first fill price
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    hwm: Decimal | None = None
    triggered: bool = False
    expires_at: datetime | None = None
    auction_at: datetime | None = None  # opg/cls under NYSE hours: the one moment it may fill
    seen_until: datetime | None = None
    bar_fills: dict[datetime, Decimal] = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return self.asset.symbol

    @property
    def remaining(self) -> Decimal | None:
        return None if self.target_qty is None else self.target_qty - self.filled_qty

    @property
    def is_working(self) -> bool:
        return self.status in _WORKING


@dataclass
class _Position:
    asset: AssetInfo
    qty: Decimal = ZERO  # signed
    cost: Decimal = ZERO  # signed cost basis: qty x average entry


@dataclass(frozen=True)
class _Point:
    """One moment an order is checked against the market."""

    ts: datetime
    prio: int  # fills (0) before expiry (9) at the same moment
    seq: int
    bar_start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    kind: str = "trade"  # trade | auction | expire


# -- the broker -----------------------------------------------------------------------------------


class SimBroker:
    """The simulated Alpaca paper exchange (implements ``Broker``); ``name = "sim"``."""

    name = "sim"

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
            start_prices={k: v for k, v in START_PRICES.items()},
        )
        self.prices: PriceSource = prices if prices is not None else self.synthetic
        if prices is None and settings.price_csv:
            self.load_csv_prices(settings.price_csv)
        self._id_rng = random.Random(f"mqd-sim|{seed}|ids")
        self._fill_rng = random.Random(f"mqd-sim|{seed}|fills")
        acct_rng = random.Random(f"mqd-sim|{seed}|account")
        self.account_id = account_id or str(uuid.UUID(int=acct_rng.getrandbits(128), version=4))
        self.account_number = "PA" + "".join(
            acct_rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10)
        )
        self.created_at = clock.now()
        self.cash = Decimal(settings.starting_cash)
        self.realized_pl = ZERO
        self.fees_paid = ZERO
        self.fills: list[FillReport] = []
        self._orders: dict[str, _Order] = {}
        self._working: dict[str, _Order] = {}  # orders that may still fill (pruned on step)
        self._by_client_id: dict[str, _Order] = {}
        self._positions: dict[str, _Position] = {}
        self._seq = 0
        self._subscribers: list[Callable[[TradeUpdate], None]] = []
        self._outbox: list[TradeUpdate] = []
        self._last_now: datetime | None = None
        self._equity_day: date | None = None
        self.last_equity = self.cash
        self._alt_walks: dict[timedelta, SyntheticPrices] = {}

    # -- prices ---------------------------------------------------------------------------------

    def load_csv_prices(self, path: str) -> None:
        """Replay bars from a CSV (see ``prices.read_bars_csv``); other symbols keep the walk.

        Symbols in the file that the universe lacks are added as plain active US equities.
        """
        data = read_bars_csv(path)
        with self._lock:
            self.prices = CsvPrices(data, self.synthetic)
            for sym in data:
                if sym.upper() not in self._assets:
                    from mqd_cli.brokers.sim_assets import _equity

                    self._add_asset(_equity(sym.upper(), f"{sym.upper()} (CSV)", "NYSE"))

    def last_price(self, symbol: str) -> Decimal:
        """The last traded price of ``symbol`` at ``clock.now()``."""
        asset = self._asset_or_404(symbol)
        return self.prices.price_at(asset.symbol, self.clock.now())

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
        sym = asset.symbol
        if isinstance(self.prices, CsvPrices) and sym in self.prices.symbols:
            out = _aggregate(self.prices.bars(sym, start, end), timeframe)
        else:
            base = self.synthetic.timeframe
            if timeframe >= base and timeframe % base == timedelta(0):
                out = self.synthetic.bars(sym, start, end, timeframe)
            else:
                walk = self._alt_walks.get(timeframe)
                if walk is None:
                    walk = SyntheticPrices(
                        self.settings.seed, timeframe=timeframe, start_prices=START_PRICES
                    )
                    self._alt_walks[timeframe] = walk
                out = walk.bars(sym, start, end)
        if self._nyse and asset.asset_class is not AssetClass.CRYPTO:
            out = [b for b in out if _bar_in_nyse_hours(b.timestamp, timeframe)]
        return out

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

    def _emit(self, event: TradeEvent, o: _Order, ts: datetime, **fill) -> None:
        self._outbox.append(
            TradeUpdate(
                event=event, timestamp=ts, order=self._report(o), event_raw=event.value, **fill
            )
        )

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
        self._roll_day(now)
        points: list[tuple[_Point, _Order]] = []
        bar_cache: dict[tuple[str, datetime], list[Bar]] = {}
        for o in list(self._working.values()):
            if o.is_working:
                points.extend((p, o) for p in self._points(o, now, bar_cache))
            else:
                del self._working[o.id]
        points.sort(key=lambda po: (po[0].ts, po[0].prio, po[0].seq))
        for point, o in points:
            if o.is_working:
                self._apply_point(o, point)
        for o in self._working.values():
            if o.is_working:
                o.seen_until = now
        self._last_now = now

    def _roll_day(self, now: datetime) -> None:
        from mqd_cli.market_calendar import EXCHANGE_TZ

        day = now.astimezone(EXCHANGE_TZ).date()
        if day != self._equity_day:
            if self._equity_day is not None:
                self.last_equity = self._totals(now)[0]
            self._equity_day = day

    @property
    def _nyse(self) -> bool:
        return self.settings.market_hours == "nyse"

    def _in_hours(self, o: _Order, t: datetime) -> bool:
        if not self._nyse or o.asset.asset_class is AssetClass.CRYPTO:
            return True
        from mqd_cli import market_calendar as mc

        local = t.astimezone(mc.EXCHANGE_TZ)
        if not mc.is_trading_day(local.date()):
            return False
        if o.extended_hours:
            return _EXT_OPEN <= local.time() < _EXT_CLOSE
        return mc.is_open(t)

    def _points(
        self, o: _Order, now: datetime, cache: dict[tuple[str, datetime], list[Bar]]
    ) -> list[_Point]:
        out: list[_Point] = []
        seen = o.seen_until
        if (
            o.expires_at is not None
            and (seen is None or seen < o.expires_at)
            and (o.expires_at <= now)
        ):
            p = o.expires_at
            out.append(_Point(p, 9, o.seq, p, ZERO, ZERO, ZERO, ZERO, kind="expire"))
        if o.auction_at is not None:
            at = o.auction_at
            if (seen is None or seen < at) and at <= now:
                price = self.prices.price_at(o.symbol, at)
                out.append(_Point(at, 0, o.seq, at, price, price, price, price, kind="auction"))
            return out
        tf = self.prices.timeframe_of(o.symbol)
        if seen is None:
            seen = o.created_at
            if self._in_hours(o, seen):
                price = self.prices.price_at(o.symbol, seen)
                out.append(_Point(seen, 0, o.seq, seen, price, price, price, price))
        seen = max(seen, now - tf * _MAX_CATCHUP_BARS)
        key = (o.symbol, seen)
        bars = cache.get(key)
        if bars is None:
            bars = cache[key] = self.prices.bars(o.symbol, seen - tf, now)
        for b in bars:
            end = b.timestamp + tf
            if end <= now:
                if end <= seen or not self._in_hours(o, b.timestamp):
                    continue
                if b.timestamp < o.created_at:  # the submission bar: only its close is after
                    c = b.close
                    out.append(_Point(end, 0, o.seq, b.timestamp, c, c, c, c))
                else:
                    out.append(_Point(end, 0, o.seq, b.timestamp, b.open, b.high, b.low, b.close))
            elif b.timestamp > seen and self._in_hours(o, b.timestamp):
                p = b.open
                out.append(_Point(b.timestamp, 0, o.seq, b.timestamp, p, p, p, p))
        return out

    def _apply_point(self, o: _Order, point: _Point) -> None:
        ts = point.ts
        if point.kind == "expire":
            self._finish(o, OrderStatus.EXPIRED, TradeEvent.EXPIRED, ts)
            return
        if o.status is OrderStatus.ACCEPTED:
            o.status = OrderStatus.NEW
            o.updated_at = ts
            self._emit(TradeEvent.NEW, o, ts)
        price = self._match_price(o, point)
        if price is not None:
            qty = self._fill_qty(o, price, point.bar_start)
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

    def _slipped(self, o: _Order, price: Decimal) -> Decimal:
        bps = Decimal(self.settings.slippage_bps)
        if not bps:
            return price
        if o.side is Side.BUY:
            return to_tick(price * (1 + bps / 10_000), ROUND_UP)
        return to_tick(price * (1 - bps / 10_000), ROUND_DOWN)

    def _match_price(self, o: _Order, p: _Point) -> Decimal | None:
        """The fill price at this point, or None when the order is not marketable."""
        buy = o.side is Side.BUY
        kind = o.type
        if kind is OrderType.MARKET:
            return self._slipped(o, p.open)
        if kind is OrderType.LIMIT:
            return _limit_price(buy, o.limit_price, p)
        if kind is OrderType.STOP:
            trigger = _stop_trigger(buy, o.stop_price, p)
            return None if trigger is None else self._slipped(o, trigger)
        if kind is OrderType.STOP_LIMIT:
            if not o.triggered:
                trigger = _stop_trigger(buy, o.stop_price, p)
                if trigger is None:
                    return None
                o.triggered = True
                if (buy and trigger <= o.limit_price) or (not buy and trigger >= o.limit_price):
                    return trigger
            return _limit_price(buy, o.limit_price, p)
        if kind is OrderType.TRAILING_STOP:
            if o.hwm is None:
                o.hwm = p.open
            stop = self._trail_stop(o)
            o.stop_price = stop
            trigger = _stop_trigger(buy, stop, p)
            o.hwm = max(o.hwm, p.high) if not buy else min(o.hwm, p.low)
            if trigger is None:
                o.stop_price = self._trail_stop(o)
                return None
            return self._slipped(o, trigger)
        return None

    def _trail_stop(self, o: _Order) -> Decimal:
        hwm = o.hwm or ZERO
        sign = -1 if o.side is Side.SELL else 1
        if o.trail_price is not None:
            stop = hwm + sign * o.trail_price
        else:
            stop = hwm * (1 + sign * (o.trail_percent or ZERO) / 100)
        return to_tick(max(stop, Decimal("0.0001")))

    def _unit(self, o: _Order) -> Decimal:
        if o.asset.asset_class is AssetClass.CRYPTO:
            return o.asset.min_trade_increment or NANO
        if o.notional is not None or (o.target_qty is not None and not _is_whole(o.target_qty)):
            return NANO
        return Decimal(1)

    def _fill_qty(self, o: _Order, price: Decimal, bar_start: datetime) -> Decimal | None:
        if o.target_qty is None:  # notional: the quantity is fixed by the first fill's price
            o.target_qty = (o.notional / price).quantize(NANO, rounding=ROUND_DOWN)
            if o.target_qty <= 0:
                return None
        remaining = o.remaining or ZERO
        unit = self._unit(o)
        liquidity = Decimal(self.settings.liquidity)
        cap = remaining
        if liquidity > 0:
            cap = max(ZERO, liquidity - o.bar_fills.get(bar_start, ZERO))
            cap = min(remaining, (cap / unit).to_integral_value(ROUND_DOWN) * unit)
        if o.tif is TimeInForce.FOK:
            return remaining if cap >= remaining else None
        if cap <= 0:
            return ZERO
        roll = self._fill_rng.random()
        if roll < self.settings.partial_fill_probability and cap > unit:
            share = Decimal(self._fill_rng.randint(10, 90)) / 100
            part = (cap * share / unit).to_integral_value(ROUND_DOWN) * unit
            return max(unit, min(part, cap))
        return cap

    # -- fills and accounting -------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def _fill(self, o: _Order, qty: Decimal, price: Decimal, ts: datetime, bar: datetime) -> None:
        signed = qty if o.side is Side.BUY else -qty
        fee = qty * Decimal(self.settings.fee_per_share)
        self.cash -= signed * price + fee
        self.fees_paid += fee
        pos = self._positions.get(o.symbol) or _Position(o.asset)
        old = pos.qty
        if old == 0 or (old > 0) == (signed > 0):
            pos.cost += signed * price
        else:
            closing = min(abs(signed), abs(old))
            avg = pos.cost / old
            direction = 1 if old > 0 else -1
            self.realized_pl += (price - avg) * closing * direction
            if abs(signed) >= abs(old):
                pos.cost = (signed + old) * price  # flipped: the rest opens at this price
            else:
                pos.cost -= avg * closing * direction
        pos.qty = old + signed
        if pos.qty == 0:
            self._positions.pop(o.symbol, None)
        else:
            self._positions[o.symbol] = pos
        o.filled_qty += qty
        o.filled_value += qty * price
        o.bar_fills = {bar: o.bar_fills.get(bar, ZERO) + qty}
        o.updated_at = ts
        done = o.filled_qty >= (o.target_qty or ZERO)
        if done:
            o.status = OrderStatus.FILLED
            o.filled_at = ts
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
                position_qty=pos.qty,
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
            position_qty=pos.qty,
        )

    def _finish(self, o: _Order, status: OrderStatus, event: TradeEvent, ts: datetime) -> None:
        o.status = status
        o.updated_at = ts
        if status is OrderStatus.CANCELED:
            o.canceled_at = ts
        elif status is OrderStatus.EXPIRED:
            o.expired_at = ts
        self._emit(event, o, ts)

    def _price(self, symbol: str, now: datetime) -> Decimal:
        return self.prices.price_at(symbol, now)

    def _margin(self, asset: AssetInfo, value: Decimal) -> tuple[Decimal, Decimal]:
        """(initial, maintenance) margin of a position worth ``value`` (absolute)."""
        if asset.asset_class is AssetClass.CRYPTO or not asset.marginable:
            return value, value
        maint = (asset.margin_requirement_long or Decimal(30)) / 100
        return value / 2, value * maint

    def _totals(self, now: datetime) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(equity, long mv, short mv, initial margin, maintenance margin) at ``now``."""
        lmv = smv = im = mm = ZERO
        for sym, pos in self._positions.items():
            mv = pos.qty * self._price(sym, now)
            if mv > 0:
                lmv += mv
            else:
                smv += mv
            i, m = self._margin(pos.asset, abs(mv))
            im += i
            mm += m
        return self.cash + lmv + smv, lmv, smv, im, mm

    def _buying_power(self, now: datetime) -> Decimal:
        equity, _, _, im, mm = self._totals(now)
        mult = self.settings.multiplier
        if mult <= 1:
            return max(ZERO, self.cash)
        if mult >= 4:
            return max(ZERO, (equity - mm) * 4)
        return max(ZERO, (equity - im) * mult)

    def _estimate(
        self,
        o: _Order | None,
        *,
        type_: OrderType,
        side: Side,
        limit: Decimal | None,
        stop: Decimal | None,
        last: Decimal,
    ) -> Decimal:
        if type_ in (OrderType.LIMIT, OrderType.STOP_LIMIT) and limit is not None:
            return limit
        if type_ is OrderType.STOP and stop is not None:
            return max(stop, last) if side is Side.BUY else min(stop, last)
        return last

    def _reserved(
        self, now: datetime, *, exclude: str | None = None, crypto_only: bool = False
    ) -> Decimal:
        """Buying power held by working orders that open or add to a position."""
        total = ZERO
        for o in self._working.values():
            if not o.is_working or o.id == exclude:
                continue
            if crypto_only and o.asset.asset_class is not AssetClass.CRYPTO:
                continue
            pos = self._positions.get(o.symbol)
            pos_qty = pos.qty if pos else ZERO
            if o.side is Side.SELL and pos_qty > 0:
                continue  # closing a long
            if o.notional is not None and o.target_qty is None:
                total += o.notional - o.filled_value
                continue
            last = self._price(o.symbol, now)
            price = self._estimate(
                o, type_=o.type, side=o.side, limit=o.limit_price, stop=o.stop_price, last=last
            )
            remaining = o.remaining or ZERO
            if o.side is Side.BUY and pos_qty < 0:
                remaining = max(ZERO, remaining + pos_qty)  # the covering part is free
            total += remaining * price
        return total

    def _held_for_sells(self, symbol: str, exclude: str | None = None) -> tuple[Decimal, list[str]]:
        held, ids = ZERO, []
        for o in self._working.values():
            if o.is_working and o.symbol == symbol and o.side is Side.SELL and o.id != exclude:
                held += o.remaining if o.remaining is not None else ZERO
                ids.append(o.id)
        return held, ids

    # -- reports --------------------------------------------------------------------------------

    def _report(self, o: _Order) -> OrderReport:
        avg = None
        if o.filled_qty > 0:
            avg = (o.filled_value / o.filled_qty).quantize(NANO).normalize()
        return OrderReport(
            id=o.id,
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            side=o.side,
            type=o.type,
            time_in_force=o.tif,
            status=o.status,
            qty=o.qty,
            notional=o.notional,
            filled_qty=o.filled_qty,
            filled_avg_price=avg,
            created_at=o.created_at,
            updated_at=o.updated_at,
            submitted_at=o.created_at,
            filled_at=o.filled_at,
            canceled_at=o.canceled_at,
            expired_at=o.expired_at,
            failed_at=o.failed_at,
            replaced_at=o.replaced_at,
            replaced_by=o.replaced_by,
            replaces=o.replaces,
            limit_price=o.limit_price,
            stop_price=o.stop_price,
            trail_price=o.trail_price,
            trail_percent=o.trail_percent,
            hwm=o.hwm if o.type is OrderType.TRAILING_STOP else None,
            extended_hours=o.extended_hours,
            asset_class=o.asset.asset_class,
            asset_id=o.asset.id,
            order_class="",
            raw={"position_intent": o.position_intent},
        )

    def _position_report(self, pos: _Position, now: datetime) -> PositionReport:
        from mqd_cli.market_calendar import EXCHANGE_TZ

        sym = pos.asset.symbol
        price = self._price(sym, now)
        avg = (pos.cost / pos.qty).quantize(Decimal("0.000001")).normalize()
        held, _ = self._held_for_sells(sym)
        available = pos.qty - held if pos.qty > 0 else pos.qty
        day_start = datetime.combine(now.astimezone(EXCHANGE_TZ).date(), time(0), EXCHANGE_TZ)
        return PositionReport(
            symbol=sym,
            qty=pos.qty,
            avg_entry_price=avg,
            side=PositionSide.LONG if pos.qty > 0 else PositionSide.SHORT,
            asset_class=pos.asset.asset_class,
            asset_id=pos.asset.id,
            exchange=pos.asset.exchange,
            qty_available=max(ZERO, available) if pos.qty > 0 else available,
            market_value=pos.qty * price,
            cost_basis=pos.cost,
            unrealized_pl=pos.qty * price - pos.cost,
            current_price=price,
            lastday_price=self._price(sym, day_start),
        )

    # -- Broker: account and positions ----------------------------------------------------------

    def get_account(self) -> AccountReport:
        with self._lock:
            now = self.clock.now()
            equity, lmv, smv, im, mm = self._totals(now)
            return AccountReport(
                id=self.account_id,
                account_number=self.account_number,
                status="ACTIVE",
                currency="USD",
                cash=self.cash,
                equity=equity,
                buying_power=self._buying_power(now),
                portfolio_value=equity,
                long_market_value=lmv,
                short_market_value=smv,
                initial_margin=im,
                maintenance_margin=mm,
                last_equity=self.last_equity,
                multiplier=Decimal(self.settings.multiplier),
                shorting_enabled=self.settings.multiplier >= 2,
            )

    def list_positions(self) -> list[PositionReport]:
        with self._lock:
            now = self.clock.now()
            return [self._position_report(p, now) for _, p in sorted(self._positions.items())]

    def get_position(self, symbol: str) -> PositionReport:
        with self._lock:
            asset = self._find_asset(symbol)
            pos = self._positions.get(asset.symbol) if asset else None
            if pos is None:
                raise _not_found("position does not exist")
            return self._position_report(pos, self.clock.now())

    # -- Broker: orders -------------------------------------------------------------------------

    def list_orders(
        self,
        status: str = "open",
        *,
        after: datetime | None = None,
        until: datetime | None = None,
        symbols: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[OrderReport]:
        """Orders newest first (submission time), filtered like ``GET /v2/orders``."""
        wanted = {self._canonical(s) for s in symbols} if symbols else None
        with self._lock:
            out = []
            for o in sorted(
                self._orders.values(), key=lambda o: (o.created_at, o.seq), reverse=True
            ):
                if status == "open" and not o.status.is_open:
                    continue
                if status == "closed" and o.status.is_open:
                    continue
                if after is not None and o.created_at <= after:
                    continue
                if until is not None and o.created_at >= until:
                    continue
                if wanted is not None and o.symbol not in wanted:
                    continue
                out.append(self._report(o))
                if limit is not None and len(out) >= limit:
                    break
            return out

    def get_order(self, order_id: str) -> OrderReport:
        with self._lock:
            return self._report(self._order_or_404(order_id))

    def get_order_by_client_id(self, client_order_id: str) -> OrderReport:
        with self._lock:
            o = self._by_client_id.get(client_order_id)
            if o is None:
                raise _not_found("order not found")
            return self._report(o)

    def submit_order(self, intent: OrderIntent) -> OrderReport:
        """Validate like Alpaca, accept, emit ``pending_new``/``new`` (or ``accepted`` off
        hours) and return the order as accepted; fills follow on ``step()`` (run at once when
        ``auto_step``)."""
        with self._lock:
            now = self.clock.now()
            o = self._validate_new(intent, now)
            self._accept(o, now)
            report = self._report(o)
            if self.auto_step:
                self._step_locked()
        self._deliver()
        return report

    def _accept(self, o: _Order, now: datetime, *, replacing: bool = False) -> None:
        self._orders[o.id] = o
        self._working[o.id] = o
        self._by_client_id[o.client_order_id] = o
        self._schedule(o, now)
        if self._nyse and not self._in_hours(o, now):
            o.status = OrderStatus.ACCEPTED
            self._emit(TradeEvent.ACCEPTED, o, now)
            return
        if not replacing:
            o.status = OrderStatus.PENDING_NEW
            self._emit(TradeEvent.PENDING_NEW, o, now)
        o.status = OrderStatus.NEW
        self._emit(TradeEvent.NEW, o, now)

    def _schedule(self, o: _Order, now: datetime) -> None:
        """Expiry and auction moments under NYSE hours (none when the market is always open)."""
        if not self._nyse or o.asset.asset_class is AssetClass.CRYPTO:
            return
        from mqd_cli import market_calendar as mc

        if o.tif is TimeInForce.OPG:
            o.auction_at = mc.next_open(now)
        elif o.tif is TimeInForce.CLS:
            o.auction_at = _session_end(now, extended=False)
        elif o.tif is TimeInForce.DAY:
            o.expires_at = _session_end(now, extended=o.extended_hours)

    def _canonical(self, symbol: str) -> str:
        asset = self._find_asset(symbol)
        return asset.symbol if asset else symbol.upper()

    def _validate_new(self, intent: OrderIntent, now: datetime) -> _Order:
        cid = intent.client_order_id
        if cid is not None and len(cid) > 128:
            raise _invalid("client_order_id must be no more than 128 characters")
        asset = self._find_asset(intent.symbol)
        if asset is None:
            raise _invalid(f'could not find asset "{intent.symbol}"')
        if asset.status is not AssetStatus.ACTIVE:
            raise _unprocessable(f"asset {asset.symbol} is not active")
        if not asset.tradable:
            raise _unprocessable(f"asset {asset.symbol} is not tradable")
        if intent.side not in (Side.BUY, Side.SELL):
            raise _invalid("side must be buy or sell")
        if intent.type is OrderType.UNKNOWN:
            raise _invalid("type must be market, limit, stop, stop_limit or trailing_stop")
        if intent.time_in_force is TimeInForce.UNKNOWN:
            raise _invalid("time_in_force must be day, gtc, opg, cls, ioc or fok")
        qty, notional = intent.qty, intent.notional
        if qty is None and notional is None:
            raise _invalid("qty is required")
        if qty is not None and notional is not None:
            raise _invalid("only one of qty or notional may be given")
        if qty is not None and qty <= 0:
            raise _invalid("qty must be > 0")
        if notional is not None and notional <= 0:
            raise _invalid("notional must be > 0")
        self._validate_prices(
            intent.type,
            intent.limit_price,
            intent.stop_price,
            intent.trail_price,
            intent.trail_percent,
            asset,
        )
        crypto = asset.asset_class is AssetClass.CRYPTO
        tif = intent.time_in_force
        if intent.extended_hours and (
            intent.type is not OrderType.LIMIT or tif is not TimeInForce.DAY
        ):
            raise _unprocessable("extended hours order must be DAY limit orders")
        if crypto:
            if tif not in (TimeInForce.GTC, TimeInForce.IOC):
                raise _unprocessable("invalid crypto time_in_force")
            minimum = asset.min_order_size
            if qty is not None and minimum is not None and qty < minimum:
                raise _invalid(f"qty must be >= {num(minimum)}")
            increment = asset.min_trade_increment
            if qty is not None and increment and qty % increment:
                raise _invalid(f"qty must be a multiple of {num(increment)}")
        else:
            fractional = notional is not None or (qty is not None and not _is_whole(qty))
            if notional is not None and not asset.fractionable:
                raise _invalid("requested asset is not fractionable")
            if qty is not None and not _is_whole(qty) and not asset.fractionable:
                raise _invalid("qty must be integer")
            if fractional and tif is not TimeInForce.DAY:
                raise _invalid("fractional orders must be DAY orders")
            if notional is not None and intent.type is not OrderType.MARKET:
                raise _invalid("notional orders must be market orders")
        if cid is not None and cid in self._by_client_id:
            raise _invalid("client_order_id must be unique")
        last = self._price(asset.symbol, now)
        pos = self._positions.get(asset.symbol)
        pos_qty = pos.qty if pos else ZERO
        est_qty = qty if qty is not None else (notional / last).quantize(NANO, ROUND_DOWN)
        opening = est_qty
        if intent.side is Side.SELL:
            opening = self._check_sell(
                asset,
                est_qty,
                pos_qty,
                whole=qty is not None and _is_whole(qty) and notional is None,
            )
        elif pos_qty < 0:
            opening = max(ZERO, est_qty + pos_qty)
        if opening > 0:
            price = self._estimate(
                None,
                type_=intent.type,
                side=intent.side,
                limit=intent.limit_price,
                stop=intent.stop_price,
                last=last,
            )
            cost = (
                notional if notional is not None and intent.side is Side.BUY else (opening * price)
            )
            if crypto or self.settings.multiplier <= 1:
                available = self.cash - self._reserved(now, crypto_only=crypto)
            else:
                available = self._buying_power(now) - self._reserved(now)
            if cost > available:
                raise _reject(
                    403,
                    40310000,
                    "insufficient buying power",
                    InsufficientFunds,
                    buying_power=num(max(ZERO, available)),
                    cost_basis=num(cost),
                )
        self._seq += 1
        if intent.side is Side.BUY:
            intent_name = "buy_to_close" if pos_qty < 0 else "buy_to_open"
        else:
            intent_name = "sell_to_close" if pos_qty > 0 else "sell_to_open"
        return _Order(
            seq=self._seq,
            id=self._new_id(),
            client_order_id=cid if cid is not None else self._new_id(),
            asset=asset,
            side=intent.side,
            type=intent.type,
            tif=tif,
            qty=qty,
            notional=notional,
            limit_price=intent.limit_price
            if intent.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
            else None,
            stop_price=intent.stop_price
            if intent.type in (OrderType.STOP, OrderType.STOP_LIMIT)
            else None,
            trail_price=intent.trail_price if intent.type is OrderType.TRAILING_STOP else None,
            trail_percent=(
                intent.trail_percent if intent.type is OrderType.TRAILING_STOP else None
            ),
            extended_hours=intent.extended_hours,
            status=OrderStatus.PENDING_NEW,
            created_at=now,
            updated_at=now,
            position_intent=intent_name,
            target_qty=qty,
        )

    def _validate_prices(
        self,
        type_: OrderType,
        limit: Decimal | None,
        stop: Decimal | None,
        trail: Decimal | None,
        trail_pct: Decimal | None,
        asset: AssetInfo,
    ) -> None:
        if type_ in (OrderType.LIMIT, OrderType.STOP_LIMIT) and limit is None:
            raise _invalid("limit_price is required")
        if type_ in (OrderType.STOP, OrderType.STOP_LIMIT) and stop is None:
            raise _invalid("stop_price is required")
        if type_ is OrderType.TRAILING_STOP and (trail is None) == (trail_pct is None):
            raise _invalid("exactly one of trail_price or trail_percent is required")
        for name, value in (
            ("limit_price", limit),
            ("stop_price", stop),
            ("trail_price", trail),
            ("trail_percent", trail_pct),
        ):
            if value is not None and value <= 0:
                raise _invalid(f"{name} must be > 0")
        if asset.asset_class is AssetClass.CRYPTO:
            return
        for name, value in (("limit_price", limit), ("stop_price", stop)):
            if value is not None and value != value.quantize(tick_for(value), ROUND_DOWN):
                raise _sub_penny(name, value)

    def _check_sell(
        self,
        asset: AssetInfo,
        qty: Decimal,
        pos_qty: Decimal,
        *,
        whole: bool,
        exclude: str | None = None,
    ) -> Decimal:
        """Raise 403 unless the sell is covered or an allowed short; returns the opening qty."""
        held, related = self._held_for_sells(asset.symbol, exclude)
        available = max(ZERO, pos_qty - held) if pos_qty > 0 else ZERO
        if pos_qty > 0 and qty <= available:
            return ZERO
        can_short = (
            pos_qty <= 0  # never long-to-short in one order
            and asset.shortable
            and asset.easy_to_borrow
            and whole
            and self.settings.multiplier >= 2
            and asset.asset_class is not AssetClass.CRYPTO
        )
        if not can_short:
            raise _reject(
                403,
                40310000,
                f"insufficient qty available for order (requested: {num(qty)}, "
                f"available: {num(available)})",
                InsufficientFunds,
                available=num(available),
                existing_qty=num(pos_qty),
                held_for_orders=num(held),
                related_orders=related,
                symbol=asset.symbol,
            )
        return qty

    def cancel_order(self, order_id: str) -> None:
        """``pending_cancel`` then ``canceled``; 422 when the order is already final."""
        with self._lock:
            o = self._order_or_404(order_id)
            self._cancel(o, self.clock.now())
        self._deliver()

    def _cancel(self, o: _Order, now: datetime) -> None:
        if not o.is_working:
            raise _unprocessable(f'order is already in "{o.status.value}" state')
        o.status = OrderStatus.PENDING_CANCEL
        o.updated_at = now
        self._emit(TradeEvent.PENDING_CANCEL, o, now)
        self._finish(o, OrderStatus.CANCELED, TradeEvent.CANCELED, now)

    def cancel_all_orders(self) -> list[CancelResult]:
        """Cancel every working order: one row per order with status 200 (Alpaca's 207 body)."""
        with self._lock:
            now = self.clock.now()
            out = []
            for o in sorted(self._working.values(), key=lambda o: o.seq):
                if o.is_working:
                    self._cancel(o, now)
                    out.append(CancelResult(order_id=o.id, status=200, order=self._report(o)))
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

        The new order's qty is ``qty`` when given, else what the old order had left.
        """
        with self._lock:
            now = self.clock.now()
            old = self._order_or_404(order_id)
            if not old.is_working:
                raise _unprocessable(f'order is already in "{old.status.value}" state')
            if old.notional is not None or (
                old.qty is not None
                and not _is_whole(old.qty)
                and old.asset.asset_class is not AssetClass.CRYPTO
            ):
                raise _invalid("fractional and notional orders cannot be replaced")
            if qty is not None and qty <= 0:
                raise _invalid("qty must be > 0")
            if (
                qty is not None
                and not _is_whole(qty)
                and old.asset.asset_class is not AssetClass.CRYPTO
            ):
                raise _invalid("qty must be integer")
            if client_order_id is not None:
                if len(client_order_id) > 128:
                    raise _invalid("client_order_id must be no more than 128 characters")
                if client_order_id in self._by_client_id:
                    raise _invalid("client_order_id must be unique")
            new_qty = qty if qty is not None else old.remaining
            limit = limit_price if limit_price is not None else old.limit_price
            stop = stop_price if stop_price is not None else old.stop_price
            trail_price, trail_pct = old.trail_price, old.trail_percent
            if trail is not None and old.type is OrderType.TRAILING_STOP:
                if old.trail_price is not None:
                    trail_price = trail
                else:
                    trail_pct = trail
            if old.type is OrderType.TRAILING_STOP:
                stop = None
            self._validate_prices(old.type, limit, stop, trail_price, trail_pct, old.asset)
            tif = time_in_force or old.tif
            if old.side is Side.SELL:
                pos = self._positions.get(old.symbol)
                self._check_sell(
                    old.asset, new_qty, pos.qty if pos else ZERO, whole=True, exclude=old.id
                )
            elif new_qty is not None:
                last = self._price(old.symbol, now)
                price = self._estimate(
                    None, type_=old.type, side=old.side, limit=limit, stop=stop, last=last
                )
                available = self._buying_power(now) - self._reserved(now, exclude=old.id)
                cost = new_qty * price
                if cost > available:
                    raise _reject(
                        403,
                        40310000,
                        "insufficient buying power",
                        InsufficientFunds,
                        buying_power=num(max(ZERO, available)),
                        cost_basis=num(cost),
                    )
            self._seq += 1
            new = replace(
                old,
                seq=self._seq,
                id=self._new_id(),
                client_order_id=client_order_id or self._new_id(),
                tif=tif,
                qty=new_qty,
                target_qty=new_qty,
                limit_price=limit,
                stop_price=stop,
                trail_price=trail_price,
                trail_percent=trail_pct,
                status=OrderStatus.NEW,
                created_at=now,
                updated_at=now,
                filled_qty=ZERO,
                filled_value=ZERO,
                filled_at=None,
                canceled_at=None,
                expired_at=None,
                replaced_at=None,
                replaced_by=None,
                replaces=old.id,
                hwm=None,
                triggered=False,
                expires_at=None,
                auction_at=None,
                seen_until=None,
                bar_fills={},
            )
            old.status = OrderStatus.PENDING_REPLACE
            old.updated_at = now
            self._emit(TradeEvent.PENDING_REPLACE, old, now)
            old.status = OrderStatus.REPLACED
            old.replaced_at = now
            old.replaced_by = new.id
            self._emit(TradeEvent.REPLACED, old, now)
            self._accept(new, now, replacing=True)
            report = self._report(new)
            if self.auto_step:
                self._step_locked()
        self._deliver()
        return report

    def close_position(self, symbol: str, qty: Decimal | None = None) -> OrderReport:
        """Submit a market order that flattens (or reduces by ``qty``) a position."""
        with self._lock:
            asset = self._find_asset(symbol)
            pos = self._positions.get(asset.symbol) if asset else None
            if pos is None:
                raise _not_found("position does not exist")
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
        if found is None and "/" not in key and key.endswith("USD") and len(key) > 3:
            found = self._assets.get(f"{key[:-3]}/USD")  # BTCUSD, as positions name it
        return found

    def _asset_or_404(self, symbol: str) -> AssetInfo:
        asset = self._find_asset(symbol)
        if asset is None:
            raise _not_found(f"asset not found for {symbol}")
        return asset

    def _order_or_404(self, order_id: str) -> _Order:
        o = self._orders.get(order_id)
        if o is None:
            raise _not_found("order not found")
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
        from mqd_cli import market_calendar as mc

        now = self.clock.now()
        return ClockReport(
            timestamp=now,
            is_open=True if not self._nyse else mc.is_open(now),
            next_open=mc.next_open(now),
            next_close=mc.next_close(now),
        )

    def get_calendar(self, start: date, end: date) -> list[CalendarDay]:
        from mqd_cli import market_calendar as mc

        out = []
        for day in mc.trading_days(start, end):
            open_, close = mc.session_open_close(day)
            out.append(
                CalendarDay(
                    date=day,
                    open=open_.time(),
                    close=close.time(),
                    session_open=_EXT_OPEN,
                    session_close=_EXT_CLOSE,
                )
            )
        return out

    def close(self) -> None:
        with self._lock:
            self._subscribers.clear()


# -- helpers --------------------------------------------------------------------------------------


def _limit_price(buy: bool, limit: Decimal | None, p: _Point) -> Decimal | None:
    if limit is None:
        return None
    if buy:
        if p.open <= limit:
            return p.open
        return limit if p.low <= limit else None
    if p.open >= limit:
        return p.open
    return limit if p.high >= limit else None


def _stop_trigger(buy: bool, stop: Decimal | None, p: _Point) -> Decimal | None:
    if stop is None:
        return None
    if buy:
        if p.open >= stop:
            return p.open
        return stop if p.high >= stop else None
    if p.open <= stop:
        return p.open
    return stop if p.low <= stop else None


def _session_end(now: datetime, *, extended: bool) -> datetime:
    """The close (16:00, 13:00 on early closes; 20:00 with extended hours) of the session that
    is running at ``now`` or comes next."""
    from mqd_cli import market_calendar as mc

    local = now.astimezone(mc.EXCHANGE_TZ)
    day = local.date()
    for _ in range(2):
        if mc.is_trading_day(day):
            close = mc.session_open_close(day)[1]
            if extended:
                close = datetime.combine(day, _EXT_CLOSE, mc.EXCHANGE_TZ)
            if close > local:
                return close
        day = mc.next_trading_day(day)
    close = mc.session_open_close(day)[1]
    return datetime.combine(day, _EXT_CLOSE, mc.EXCHANGE_TZ) if extended else close


def _bar_in_nyse_hours(start: datetime, timeframe: timedelta) -> bool:
    from mqd_cli import market_calendar as mc

    local = start.astimezone(mc.EXCHANGE_TZ)
    if timeframe >= timedelta(days=1):
        return mc.is_trading_day(local.date())
    return mc.is_trading_day(local.date()) and _EXT_OPEN <= local.time() < _EXT_CLOSE


def _aggregate(bars: list[Bar], timeframe: timedelta) -> list[Bar]:
    """Merge consecutive bars into ``timeframe`` buckets aligned to the Unix epoch."""
    if not bars:
        return []
    epoch = datetime(1970, 1, 1, tzinfo=bars[0].timestamp.tzinfo)
    out: list[Bar] = []
    for b in bars:
        start = epoch + ((b.timestamp - epoch) // timeframe) * timeframe
        if out and out[-1].timestamp == start:
            last = out[-1]
            out[-1] = replace(
                last,
                high=max(last.high, b.high),
                low=min(last.low, b.low),
                close=b.close,
                volume=last.volume + b.volume,
            )
        else:
            out.append(replace(b, timestamp=start))
    return out
