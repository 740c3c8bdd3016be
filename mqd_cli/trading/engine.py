"""The trading engine: one loop for ``mqd run`` and ``mqd backtest``.

Bars in -> strategy -> order intents -> protections (``is_locked``, entries only) -> pre-trade
risk gate -> symbol validation and side-aware rounding -> ``OrderTracker.start`` (deterministic
client_order_id, journaled before the send) -> ``broker.submit_order`` -> the tracker, fed by
the user stream (live Alpaca) or by the simulated exchange's events (``SimBroker.subscribe``)
-> closed trades -> protections re-evaluated.

Every refused intent becomes a ``Refusal`` (stage, rule, reason), is logged and counted. The
per-bar path is lean: the strategy's ``on_bar`` plus a few dictionary lookups; protections, the
risk gate and symbol checks run only when the strategy asks for an order, and nothing is
written to the store per bar. Positions, open orders and cash are mirrored from the tracker's
results so the strategy context answers in O(1).

The engine is synchronous and clock-agnostic: the backtest driver (``backtest.py``) feeds it
bars on a ``BacktestClock``; the live session (``live.py``) feeds it polled bars on a real or
accelerated clock and runs the user stream beside it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mqd_cli.clock import BacktestClock, Clock
from mqd_cli.model import (
    AccountReport,
    Bar,
    FillReport,
    OrderIntent,
    OrderReport,
    OrderStatus,
    Side,
    TradeUpdate,
)
from mqd_cli.symbols.spelling import canonical_symbol

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.orders.tracked import ApplyResult, TrackedOrder
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.orders.trades import ClosedTrade
    from mqd_cli.protections.base import ProtectionEvent
    from mqd_cli.protections.manager import ProtectionManager
    from mqd_cli.strategies.base import Strategy
    from mqd_cli.symbols.book import SymbolBook
    from mqd_cli.trading.protective import ProtectiveStops
    from mqd_cli.trading.risk import BuyingPower, RiskGate

log = logging.getLogger("mqd.engine")

ZERO = Decimal(0)
_PRE_ACK = frozenset({OrderStatus.PENDING_NEW, OrderStatus.ACCEPTED})


# -- what the engine reports ----------------------------------------------------------------------


class EventKind(StrEnum):
    """What an ``EngineEvent`` reports; the value is the ``event`` of its JSON line."""

    INFO = "info"
    WARNING = "warning"
    SUBMITTED = "submitted"
    WOULD_SUBMIT = "would_submit"
    SUBMIT_UNCERTAIN = "submit_uncertain"
    ADJUSTED = "adjusted"
    REFUSED = "refused"
    FILL = "fill"
    TRADE = "trade"
    PROTECTION = "protection"
    ERROR = "error"


@dataclass(frozen=True)
class EngineEvent:
    """One thing that happened (the engine's or the live session's): see ``EventKind``."""

    kind: EventKind
    at: datetime
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "at": self.at, "message": self.message, **self.data}


@dataclass(frozen=True)
class Refusal:
    stage: str  # the one that stopped it, of: engine, protections, risk, symbols, broker
    rule: str
    reason: str
    intent: OrderIntent
    at: datetime


@dataclass
class EngineStats:
    bars: int = 0
    intents: int = 0
    submitted: int = 0
    would_submit: int = 0
    fills: int = 0
    filled_qty: Decimal = ZERO
    trades: int = 0
    wins: int = 0
    realized_pnl: Decimal = ZERO
    stop_losses: int = 0
    adjusted: int = 0
    uncertain: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # stage -> count
    refused_rules: Counter[str] = field(default_factory=Counter)  # "stage:rule" -> count
    locks: int = 0
    errors: int = 0

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "bars": self.bars,
            "intents": self.intents,
            "submitted": self.submitted,
            "would_submit": self.would_submit,
            "fills": self.fills,
            "trades": self.trades,
            "wins": self.wins,
            "realized_pnl": self.realized_pnl,
            "stop_losses": self.stop_losses,
            "adjusted": self.adjusted,
            "uncertain_submits": self.uncertain,
            "refused": dict(self.refused),
            "refused_by_rule": dict(self.refused_rules),
            "protection_locks": self.locks,
            "errors": self.errors,
        }


# -- the strategy's view ----------------------------------------------------------------------


class EngineContext:
    """The ``StrategyContext`` the engine hands to strategies: O(1) reads of mirrored state."""

    def __init__(self, engine: Engine, params: dict[str, Any]):
        self._engine = engine
        self.params = params
        # The engine's mirrors (updated in place, never replaced), read once per bar each.
        self._qty = engine._qty
        self._avg = engine._avg
        self._open_by_symbol = engine._open_by_symbol

    @property
    def clock(self) -> Clock:
        self._engine.sync_clock()
        return self._engine.clock

    @property
    def equity(self) -> Decimal:
        return self._engine.equity

    @property
    def cash(self) -> Decimal:
        return self._engine.cash

    def position(self, symbol: str) -> Decimal:
        return self._qty.get(symbol, ZERO)

    def positions(self) -> dict[str, Decimal]:
        return {s: q for s, q in self._qty.items() if q}

    def avg_entry_price(self, symbol: str) -> Decimal | None:
        return self._avg.get(symbol)

    def open_orders(self, symbol: str | None = None) -> list[TrackedOrder]:
        by_symbol = self._open_by_symbol
        if symbol is None:
            return [o for orders in by_symbol.values() for o in orders.values()]
        orders = by_symbol.get(symbol)
        return list(orders.values()) if orders else []


# -- the engine -----------------------------------------------------------------------------------


@runtime_checkable
class SteppedExchange(Protocol):
    """A broker whose market the engine moves (``SimBroker.step``): fills arrive in-process."""

    def step(self) -> object: ...


class Engine:
    """Strategy + safety systems + broker + tracker, driven bar by bar.

    ``step_broker`` (the simulated exchange): call ``broker.step()`` after each submit and on
    each bar while orders rest, so fills arrive in-process. ``fee_per_share`` keeps the cash
    mirror equal to the simulated account's (stream fills carry no fee). ``trade_sink`` stores
    closed trades when the tracker keeps no store (backtests). ``price_lookup`` prices a
    symbol before its first bar when the broker has no ``last_price`` (Alpaca).
    """

    def __init__(
        self,
        *,
        strategy: Strategy,
        broker: Broker,
        tracker: OrderTracker,
        clock: Clock,
        protections: ProtectionManager | None = None,
        risk: RiskGate | None = None,
        symbols: SymbolBook | None = None,
        params: dict[str, Any] | None = None,
        dry_run: bool = False,
        step_broker: bool = False,
        fee_per_share: Decimal = ZERO,
        starting_cash: Decimal | None = None,
        account_ttl: float = 0.0,
        listener: Callable[[EngineEvent], None] | None = None,
        trade_sink: Callable[[ClosedTrade], None] | None = None,
        price_lookup: Callable[[str], Decimal | None] | None = None,
        protective: ProtectiveStops | None = None,
    ):
        self.strategy = strategy
        self.broker = broker
        self.tracker = tracker
        self.clock = clock
        self.protections = protections
        self.risk = risk
        self.symbols = symbols
        self.dry_run = dry_run
        # The simulated exchange the engine steps (``step_broker``), None for one that runs
        # by itself (Alpaca, a self-stepping simulator).
        self.exchange: SteppedExchange | None = None
        if step_broker:
            if not isinstance(broker, SteppedExchange):
                raise TypeError(f"step_broker: {type(broker).__name__} has no step()")
            self.exchange = broker
        self.fee_per_share = Decimal(fee_per_share)
        self.account_ttl = account_ttl
        self.listener = listener
        self.trade_sink = trade_sink
        self.price_lookup = price_lookup
        # Broker-held protective stops: entries go out with a stop leg (see trading/protective)
        self.protective = protective
        self._atr = None
        if protective is not None and protective.needs_atr:
            from mqd_cli.trading.protective import AverageTrueRange

            self._atr = AverageTrueRange(protective.atr_bars)
        # Exits waiting for our protective legs on their symbol to be canceled first (Alpaca
        # holds the position's shares for the legs: an exit beside them would be refused).
        self._parked: dict[str, list[tuple[OrderIntent, Decimal]]] = {}
        self._noted: set[str] = set()  # symbols told once why an entry has no legs
        self.after_submit: Callable[[], None] | None = None  # a hook run after each send
        self.stats = EngineStats()
        self.refusals: list[Refusal] = []
        self.keep_refusals = 1000
        self.last_fills: list[FillReport] = []
        self.accepting = True  # False once shutdown begins: new intents are refused
        self._qty: dict[str, Decimal] = {}
        self._avg: dict[str, Decimal] = {}
        self._last: dict[str, Decimal] = {}
        self._open_by_symbol: dict[str, dict[str, TrackedOrder]] = {}
        self._open_count = 0
        self.ctx = EngineContext(self, dict(params or getattr(strategy, "params", {}) or {}))
        # Intents waiting to be sent, each with the position its strategy saw when it asked.
        self._queue: list[tuple[OrderIntent, Decimal]] = []
        self._closed: list[ClosedTrade] = []
        self._draining = False
        self._account: AccountReport | None = None
        self._account_at = -1e18
        self._mono = clock.monotonic
        # Backtests move the clock lazily: the bar's end is noted here and the clock is only
        # advanced when something reads it (an intent, a resting order, the strategy).
        self.due: datetime | None = None
        self.cash = Decimal(starting_cash) if starting_cash is not None else ZERO
        # The open positions at their last prices (equity = cash + market_value), kept up to
        # date bar by bar and fill by fill.
        self.market_value = ZERO
        tracker.on_trade_closed = self._on_trade_closed
        self.sync_from_tracker()
        if starting_cash is None:
            self.cash = self._account_snapshot(force=True).cash

    # -- mirrored state ----------------------------------------------------------------------

    def sync_from_tracker(self) -> None:
        """Rebuild positions and open orders from the tracker (start-up, reconcile, gap fill)."""
        self._qty.clear()
        self._avg.clear()
        for symbol, p in self.tracker.positions().items():
            self._qty[symbol] = p.qty
            if p.avg_price is not None:
                self._avg[symbol] = p.avg_price
        self._open_by_symbol.clear()
        self._open_count = 0
        for o in self.tracker.open_orders():
            self._open_by_symbol.setdefault(o.symbol, {})[o.client_order_id] = o
            self._open_count += 1
        self._recompute_market_value()

    def _recompute_market_value(self) -> None:
        total = ZERO
        for symbol, q in self._qty.items():
            price = self._last.get(symbol) or self._avg.get(symbol) or ZERO
            total += q * price
        self.market_value = total

    @property
    def equity(self) -> Decimal:
        return self.cash + self.market_value

    @property
    def in_market(self) -> bool:
        """Whether any position is open."""
        return bool(self._qty)

    @property
    def open_order_count(self) -> int:
        return self._open_count

    def positions(self) -> dict[str, Decimal]:
        return {s: q for s, q in self._qty.items() if q}

    def last_price(self, symbol: str) -> Decimal | None:
        return self._last.get(symbol)

    def mark(self, symbol: str, price: Decimal) -> None:
        """Record a price without a bar (start-up marks from the broker)."""
        q = self._qty.get(symbol)
        if q:
            self.market_value += q * (price - self._last.get(symbol, self._avg.get(symbol, price)))
        self._last[symbol] = price

    # -- bars ----------------------------------------------------------------------------------

    def warm_up(self, bars: Iterable[Bar]) -> int:
        """Feed history bars to the strategy's indicators; no order is ever sent."""
        hook = getattr(self.strategy, "warm_up", None)
        n = 0
        atr = self._atr
        for bar in bars:
            self._last[bar.symbol] = bar.close
            if atr is not None:
                atr.update(bar)
            if hook is not None:
                hook(bar)
            else:
                self.strategy.on_bar(bar, self.ctx)  # intents discarded on purpose
            n += 1
        self._recompute_market_value()
        return n

    def on_bar(self, bar: Bar) -> None:
        """One completed bar: mark to market, let the strategy decide, run its intents."""
        self.stats.bars += 1
        symbol = bar.symbol
        close = bar.close
        if self._atr is not None:
            self._atr.update(bar)
        q = self._qty.get(symbol)
        if q:
            self.market_value += q * (close - self._last.get(symbol, close))
        self._last[symbol] = close
        exchange = self.exchange
        if self._open_count and exchange is not None:
            self.sync_clock()
            exchange.step()
        intents = self.strategy.on_bar(bar, self.ctx)
        if intents:
            self.sync_clock()
            self.submit_all(intents)

    def sync_clock(self) -> None:
        """Bring a lazily moved (backtest) clock to the current bar's end."""
        due = self.due
        if due is not None:
            self.due = None
            clock = self.clock
            if due > clock.now():
                # Only the backtest driver sets ``due``, on its BacktestClock.
                if not isinstance(clock, BacktestClock):
                    raise TypeError(f"a lazily moved clock must be a BacktestClock, not {clock!r}")
                clock.advance_to(due)

    def start(self) -> None:
        """Run the strategy's ``on_start`` intents."""
        intents = self.strategy.on_start(self.ctx)
        if intents:
            self.submit_all(intents)

    def stop(self) -> None:
        """Stop taking new intents; the strategy's ``on_stop`` intents are refused and logged."""
        self.accepting = False
        intents = self.strategy.on_stop(self.ctx)
        if intents:
            self.submit_all(intents)

    def poll_broker(self) -> None:
        """Let the simulated exchange match resting orders up to now (no-op otherwise)."""
        if self.exchange is not None and self._open_count:
            self.exchange.step()
        self._drain()

    # -- intents -------------------------------------------------------------------------------

    def submit_all(self, intents: Iterable[OrderIntent]) -> None:
        self._enqueue(intents)
        self._drain()

    @property
    def pending_intents(self) -> int:
        """Intents queued by strategy hooks and not yet sent (or refused)."""
        return len(self._queue)

    def _enqueue(self, intents: Iterable[OrderIntent]) -> None:
        qty = self._qty
        for intent in intents:
            self._queue.append((intent, qty.get(intent.symbol, ZERO)))

    def _drain(self) -> None:
        """Send the queued intents, oldest first, each checked against the tracker's position
        and open orders at the moment it goes out.

        Identical intents waiting together (raised by several hooks, or several fills, before
        the first of them was sent) are coalesced into the first: they were decided on the same
        state, so they ask for the same order once.
        """
        # Intents raised while handling an event (on_fill) wait for the current one to finish.
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                intent, seen = self._queue.pop(0)
                try:
                    self._coalesce(intent)
                    self._process(intent, seen)
                except Exception as exc:  # one bad intent must never stop the loop
                    self.stats.errors += 1
                    log.exception("engine: intent %s failed", intent)
                    self._emit(EventKind.ERROR, f"{intent.symbol}: {type(exc).__name__}: {exc}")
        finally:
            self._draining = False

    def _coalesce(self, intent: OrderIntent) -> None:
        """Drop the queued copies of ``intent`` (each is reported as a refusal)."""
        queue = self._queue
        if not queue:
            return
        keep = []
        for entry in queue:
            if entry[0] == intent:
                self.stats.intents += 1
                self._refuse(
                    "engine",
                    "coalesced",
                    "identical to an intent raised before it in the same pass; sent once",
                    intent,
                )
            else:
                keep.append(entry)
        if len(keep) != len(queue):
            queue[:] = keep

    def _refuse(self, stage: str, rule: str, reason: str, intent: OrderIntent) -> None:
        self.stats.refused[stage] += 1
        self.stats.refused_rules[f"{stage}:{rule}"] += 1
        refusal = Refusal(stage, rule, reason, intent, self.clock.now())
        if len(self.refusals) < self.keep_refusals:
            self.refusals.append(refusal)
        log.info("refused at %s (%s): %s %s", stage, rule, describe(intent), reason)
        self._emit(
            EventKind.REFUSED,
            f"{describe(intent)} refused by {stage} ({rule}): {reason}",
            {"stage": stage, "rule": rule, "reason": reason, "intent": intent},
        )

    def _spelled(self, intent: OrderIntent) -> OrderIntent:
        """The intent under the symbol's one spelling (``BTCUSD`` → ``BTC/USD``), so risk,
        protections and the tracker key it as the broker's orders and positions are keyed."""
        props = self.symbols.get(intent.symbol) if self.symbols is not None else None
        if props is None:
            return intent
        symbol = canonical_symbol(props.symbol, props.asset_class)
        return intent if symbol == intent.symbol else _with(intent, symbol=symbol)

    def _process(self, intent: OrderIntent, seen: Decimal | None = None) -> None:
        """Run one intent through the safety systems and send it. ``seen`` is the position
        the strategy saw when it asked (None: the position now)."""
        self.stats.intents += 1
        if not intent.strategy:
            intent = _with(intent, strategy=getattr(self.strategy, "name", ""))
        if not self.accepting:
            self._refuse("engine", "stopping", "shutting down: no new orders", intent)
            return
        intent = self._spelled(intent)
        symbol = intent.symbol
        pos = self.tracker.position_qty(symbol)
        capped = self._cap_reduction(intent, pos if seen is None else seen, pos)
        if capped is None:
            return
        intent = capped
        price = self._last.get(symbol)
        if price is None:
            price = self._price_from_broker(symbol)
        qty = intent.qty
        reducing = (
            pos != 0
            and qty is not None
            and qty <= abs(pos)
            and (intent.side is Side.SELL) == (pos > 0)
        )
        if reducing and not self.dry_run:
            legs = self._protective_legs(symbol, intent.side)
            if legs:
                self._park_exit(intent, pos if seen is None else seen, legs)
                return
        if self.protections is not None and not reducing:
            side = "long" if intent.side is Side.BUY else "short"
            lock = self.protections.is_locked(symbol, side)
            if lock is not None:
                self._refuse("protections", lock.protection, lock.reason, intent)
                return
        if price is None and self.symbols is not None and self.symbols.get(symbol) is None:
            # No price and no such asset: say so, rather than "no usable price" from the gate.
            _, _, problems = self.symbols.prepare(intent, price=None, position_qty=pos)
            first = problems[0] if problems else None
            reason = "; ".join(f"{p.code}: {p.message} ({p.fix})" for p in problems)
            self._refuse("symbols", first.code if first else "UNKNOWN_SYMBOL", reason, intent)
            return
        if self.risk is not None:
            from mqd_cli.trading.risk import marginable

            # The gate checks buying power for buys only: ask the broker only then.
            needs_bp = intent.side is Side.BUY and self.risk.settings.check_buying_power
            props = self.symbols.get(symbol) if self.symbols is not None else None
            decision = self.risk.check(
                intent,
                price=price if price is not None else ZERO,
                positions=self._qty,
                prices=self._last,
                open_orders=self._open_count,
                buying_power=self._buying_power() if needs_bp else ZERO,
                marginable=marginable(props, symbol),
            )
            if not decision.allowed:
                self._refuse("risk", decision.rule, decision.reason, intent)
                return
        if self.symbols is not None:
            prepared, adjustments, problems = self.symbols.prepare(
                intent, price=price, position_qty=pos
            )
            if prepared is None:
                first = problems[0] if problems else None
                reason = "; ".join(f"{p.code}: {p.message} ({p.fix})" for p in problems)
                self._refuse("symbols", first.code if first else "invalid", reason, intent)
                return
            if adjustments:
                self.stats.adjusted += 1
                text = ", ".join(
                    f"{a.field} {a.before} -> {a.after} ({a.reason})" for a in adjustments
                )
                self._emit(
                    EventKind.ADJUSTED,
                    f"{describe(intent)} rounded: {text}",
                    {"intent": prepared, "adjustments": [a.__dict__ for a in adjustments]},
                )
            intent = prepared
        if self.protective is not None and not reducing:
            with_legs = self._attach_legs(intent, price, pos)
            if with_legs is None:
                return
            intent = with_legs
        if self.dry_run:
            self.stats.would_submit += 1
            self._emit(
                EventKind.WOULD_SUBMIT,
                f"dry run: would send {describe(intent)}",
                {"intent": intent},
            )
            return
        self._send(intent)

    def _cap_reduction(
        self, intent: OrderIntent, seen: Decimal, pos: Decimal
    ) -> OrderIntent | None:
        """An intent that reduced the position the strategy saw never opens or flips one.

        It is capped at the part of the position *now* that open orders on the same side do
        not already close (another hook, or an earlier fill's hook, may have asked for the
        same exit); with nothing left it is refused. Other intents pass unchanged.
        """
        qty = intent.qty
        if qty is None or seen == 0 or qty > abs(seen) or (intent.side is Side.SELL) != (seen > 0):
            return intent
        side = intent.side
        covered = ZERO
        for o in self.tracker.open_orders(intent.symbol):
            # our protective legs do not cover an exit: they are canceled before it goes out
            if o.side is side and o.qty is not None and (o.parent is None or o.external):
                covered += max(ZERO, o.qty - o.filled_qty)
        held = pos if (pos > 0) == (seen > 0) else ZERO
        left = abs(held) - covered
        if left <= 0:
            why = (
                f"the position is already closed (now {_num(pos)})"
                if not held
                else f"open orders already {side.value} {_num(covered)} of the position {_num(pos)}"
            )
            self._refuse("engine", "position_covered", why, intent)
            return None
        if qty <= left:
            return intent
        capped = _with(intent, qty=left)
        self.stats.adjusted += 1
        self._emit(
            EventKind.ADJUSTED,
            f"{describe(intent)} capped: qty {_num(qty)} -> {_num(left)} (open orders already "
            f"{side.value} {_num(covered)} of the position {_num(pos)})",
            {
                "intent": capped,
                "adjustments": [
                    {
                        "field": "qty",
                        "before": qty,
                        "after": left,
                        "reason": "position already partly closed by open orders",
                    }
                ],
            },
        )
        return capped

    # -- broker-held protective stops ---------------------------------------------------------

    def _attach_legs(
        self, intent: OrderIntent, price: Decimal | None, pos: Decimal
    ) -> OrderIntent | None:
        """An entry as an OTO order with a stop-loss leg (a bracket with a take-profit too);
        None when it is refused because the stop cannot be priced yet."""
        from mqd_cli.model import AssetClass, OrderClass, OrderType, TimeInForce
        from mqd_cli.trading.protective import leg_prices

        p = self.protective
        assert p is not None
        if intent.order_class is not OrderClass.SIMPLE:
            return intent  # the strategy chose its own legs
        symbol = intent.symbol
        props = self.symbols.get(symbol) if self.symbols is not None else None
        why = ""
        if props is not None and props.asset_class is not AssetClass.US_EQUITY:
            why = f"{props.asset_class.value} orders are simple only at Alpaca"
        elif intent.qty is None or intent.qty != intent.qty.to_integral_value():
            why = "fractional and notional orders are simple only at Alpaca"
        elif intent.time_in_force not in (TimeInForce.DAY, TimeInForce.GTC):
            why = f"time in force {intent.time_in_force.value}: legs need day or gtc"
        elif pos != 0:
            why = "Alpaca takes legs on entries only: shares added to a position go without"
        if why:
            if symbol not in self._noted:
                self._noted.add(symbol)
                self._emit(
                    EventKind.WARNING,
                    f"{symbol}: entries go out without a protective stop ({why})",
                )
            return intent
        limit = intent.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        reference = intent.limit_price if limit and intent.limit_price is not None else price
        atr = self._atr.value(symbol) if self._atr is not None else None
        legs = None
        if reference is not None:
            legs = leg_prices(intent.side, reference, p.stop, p.take_profit, atr)
        if legs is None:
            need = (
                f"the average true range needs {p.atr_bars} bars of {symbol}"
                if p.needs_atr and atr is None
                else f"no usable reference price for {symbol}"
            )
            self._refuse("risk", "protective_stop", f"no stop price yet: {need}", intent)
            return None
        order_class = OrderClass.BRACKET if legs.take_profit is not None else OrderClass.OTO
        return _with(
            intent,
            order_class=order_class,
            stop_loss_stop_price=legs.stop_price,
            take_profit_limit_price=legs.take_profit,
        )

    def _protective_legs(self, symbol: str, side: Side) -> list[TrackedOrder]:
        """Our open legs on ``symbol`` that close on ``side`` (they hold the position)."""
        return [
            o
            for o in self.tracker.open_orders(symbol)
            if o.parent is not None and not o.external and o.side is side
        ]

    def _park_exit(self, intent: OrderIntent, seen: Decimal, legs: list[TrackedOrder]) -> None:
        """Cancel our legs on the symbol, and send the exit once they are gone (if a leg
        fills meanwhile, the exit is capped by the position then, or refused when flat)."""
        from mqd_cli.brokers.errors import BrokerCallError, NotFound

        self._parked.setdefault(intent.symbol, []).append((intent, seen))
        self.stats.intents -= 1  # counted again when it is processed for real
        for leg in legs:
            if leg.status is OrderStatus.PENDING_CANCEL or not leg.broker_id:
                continue
            try:
                self.broker.cancel_order(leg.broker_id)
            except NotFound:
                continue  # already gone: its final event is on the way
            except BrokerCallError as exc:
                self._emit(
                    EventKind.WARNING,
                    f"{intent.symbol}: could not cancel protective leg {leg.client_order_id}:"
                    f" {exc}; the exit waits for it",
                )
        self._emit(
            EventKind.INFO,
            f"{describe(intent)} waits: canceling {len(legs)} protective leg(s) first",
            {"intent": intent},
        )

    def _release_parked(self) -> None:
        """Queue the parked exits of symbols whose legs are gone (front of the queue)."""
        ready: list[tuple[OrderIntent, Decimal]] = []
        for symbol in list(self._parked):
            waiting = self._parked[symbol]
            if any(self._protective_legs(symbol, intent.side) for intent, _ in waiting):
                continue
            ready += waiting
            del self._parked[symbol]
        if ready:
            self._queue[:0] = ready

    def _identical_open(self, intent: OrderIntent) -> TrackedOrder | None:
        """An acknowledged open order that asks for exactly what ``intent`` asks, if any.

        An identical order whose submit was never answered is not one: the tracker gives the
        intent that order's client_order_id, so the broker's uniqueness check answers it.
        """
        from mqd_cli.orders.tracked import intent_key

        key = None  # computed only when there is an open order to compare (a hash)
        for o in self.tracker.open_orders(intent.symbol):
            if o.external or o.submit_state != "acked":
                continue
            if key is None:
                key = intent_key(intent)
            if o.intent_key == key:
                return o
        return None

    def _send(self, intent: OrderIntent) -> None:
        from mqd_cli.brokers.errors import (
            BrokerCallError,
            DuplicateClientOrderId,
            NotFound,
            OrderRejected,
        )

        twin = self._identical_open(intent)
        if twin is not None:
            self._refuse(
                "engine",
                "duplicate_open_order",
                f"identical to open order {twin.client_order_id} ({twin.status.value})",
                intent,
            )
            return
        intent = self.tracker.start(intent)
        cid = intent.client_order_id
        assert cid is not None, "the tracker names every order it starts"
        try:
            report = self.broker.submit_order(intent)
        except OrderRejected as exc:
            if isinstance(exc, DuplicateClientOrderId):
                # A restart re-sent an intent the broker already holds: adopt its answer.
                held: OrderReport | None
                try:
                    held = self.broker.get_order_by_client_id(cid)
                except (NotFound, BrokerCallError):
                    held = None
                if held is not None:
                    self._after_submit(intent, cid, held)
                    return
            result = self.tracker.on_submit_failed(cid, exc, definitely_rejected=True)
            self._after_apply(result)
            self._refuse("broker", str(getattr(exc, "code", "") or "rejected"), str(exc), intent)
            return
        except BrokerCallError as exc:
            self.tracker.on_submit_failed(cid, exc, definitely_rejected=False)
            self.stats.uncertain += 1
            self._track_open(cid)
            self._emit(
                EventKind.SUBMIT_UNCERTAIN,
                f"{describe(intent)}: outcome unknown ({exc}); it is looked up, never resent",
                {"intent": intent},
            )
            return
        self._after_submit(intent, cid, report)

    def _after_submit(self, intent: OrderIntent, cid: str, report: OrderReport) -> None:
        order = self.tracker.order(cid)
        # Stream (or simulated) events may have overtaken the REST answer: a stale `new` after
        # a fill is not news, and the tracker would keep it as an illegal transition.
        if order is None or order.status in _PRE_ACK:
            self._after_apply(self.tracker.on_submitted(report))
        self.stats.submitted += 1
        self._track_open(cid)
        if self.listener is not None:
            self._emit(
                EventKind.SUBMITTED,
                f"sent {describe(intent)} as {cid}",
                {"intent": intent, "order_id": report.id},
            )
        if self.exchange is not None:
            self.exchange.step()
        if self.after_submit is not None:
            self.after_submit()

    def _price_from_broker(self, symbol: str) -> Decimal | None:
        """A price before the symbol's first bar: the simulated exchange's last trade, or the
        session's lookup (the latest bar from the data API)."""
        getter = getattr(self.broker, "last_price", None) or self.price_lookup
        if getter is None:
            return None
        try:
            price = getter(symbol)
        except Exception:
            return None
        if price is not None:
            self._last[symbol] = price
        return price

    def _account_snapshot(self, *, force: bool = False) -> AccountReport:
        now = self._mono()
        account = self._account
        if force or account is None or now - self._account_at >= self.account_ttl:
            account = self._account = self.broker.get_account()
            self._account_at = now
        return account

    def _buying_power(self) -> BuyingPower | Decimal:
        """The account's buying powers (Reg T for equities, cash for crypto: the gate picks)."""
        from mqd_cli.trading.risk import BuyingPower

        try:
            return BuyingPower.of(self._account_snapshot())
        except Exception as exc:  # no answer: the gate refuses buys rather than guessing
            log.warning("engine: account unavailable for the buying-power check: %s", exc)
            return ZERO

    # -- events from the broker ---------------------------------------------------------------

    def on_trade_update(self, update: TradeUpdate, *, source: str = "sim") -> None:
        """Apply one event from the simulated exchange to the tracker, then react."""
        result = self.tracker.apply(update, source=source)
        self._after_apply(result)
        self._drain()

    def observe(self, result: ApplyResult | None) -> None:
        """Mirror a result the tracker produced elsewhere (the user stream, a gap fill, a
        shutdown lookup) and hand its new fills to the strategy; the intents they raise are
        queued for the next ``poll_broker`` (see ``pending_intents``)."""
        self._after_apply(result)

    def _track_open(self, cid: str | None) -> None:
        if cid is None:
            return
        order = self.tracker.order(cid)
        if order is None:
            return
        bucket = self._open_by_symbol.get(order.symbol)
        if order.is_open:
            if bucket is None:
                bucket = self._open_by_symbol[order.symbol] = {}
            if cid not in bucket:
                bucket[cid] = order
                self._open_count += 1
        elif bucket is not None and cid in bucket:
            del bucket[cid]
            self._open_count -= 1
            if not bucket:
                del self._open_by_symbol[order.symbol]

    def _after_apply(self, result: ApplyResult | None) -> None:
        """Mirror what one tracker result changed, hand new fills to the strategy, then report
        the trades the result closed (after the fill that closed them)."""
        try:
            self._mirror(result)
        finally:
            while self._closed:
                self._trade_closed(self._closed.pop(0))
            if self._parked:
                self._release_parked()

    def _mirror(self, result: ApplyResult | None) -> None:
        if result is None:
            return
        cid = result.client_order_id
        self._track_open(cid)
        fills = result.new_fills
        if not fills and not result.filled_qty_delta:
            return
        order = self.tracker.order(cid) if cid else None
        symbol = order.symbol if order is not None else fills[0].symbol
        old = self._qty.get(symbol, ZERO)
        p = self.tracker.all_positions().get(symbol)
        new = p.qty if p is not None else ZERO
        last = self._last.get(symbol)
        for f in fills:
            signed = f.qty if f.side is Side.BUY else -f.qty
            fee = f.fee or f.qty * self.fee_per_share
            self.cash -= signed * f.price + fee
            if last is None:
                last = f.price
            self.stats.fills += 1
            self.stats.filled_qty += f.qty
        self._last.setdefault(symbol, last if last is not None else ZERO)
        self.market_value += (new - old) * self._last[symbol]
        if new:
            self._qty[symbol] = new
            if p is not None and p.avg_price is not None:
                self._avg[symbol] = p.avg_price
        else:
            self._qty.pop(symbol, None)
            self._avg.pop(symbol, None)
        self._account = None  # buying power changed
        for f in fills:
            report = FillReport(
                order_id=order.broker_id if order is not None and order.broker_id else "",
                client_order_id=f.client_order_id,
                symbol=f.symbol,
                side=f.side,
                qty=f.qty,
                price=f.price,
                timestamp=f.timestamp,
                execution_id=f.fill_id,
                position_qty=new,
                fee=f.fee,
            )
            self.last_fills.append(report)
            if len(self.last_fills) > 20:
                del self.last_fills[0]
            if self.listener is not None:
                self._emit(
                    EventKind.FILL,
                    f"fill {f.side.value} {_num(f.qty)} {f.symbol} @ {_num(f.price)}"
                    f" ({order.reason if order is not None else ''}) position {_num(new)}",
                    {"fill": report, "reason": order.reason if order is not None else ""},
                )
            intents = self.strategy.on_fill(report, self.ctx)
            if intents:
                self._enqueue(intents)

    def _on_trade_closed(self, trade: ClosedTrade) -> None:
        # Called by the tracker inside apply(): reported once the fills are mirrored.
        self._closed.append(trade)

    def _trade_closed(self, trade: ClosedTrade) -> None:
        stats = self.stats
        stats.trades += 1
        stats.realized_pnl += trade.pnl
        if trade.pnl > 0:
            stats.wins += 1
        if trade.exit_reason == "stop_loss":
            stats.stop_losses += 1
        if self.trade_sink is not None:
            self.trade_sink(trade)
        if self.listener is not None:
            self._emit(
                EventKind.TRADE,
                f"closed {trade.side} {_num(trade.qty)} {trade.symbol}: "
                f"{_num(trade.entry_price)} -> {_num(trade.exit_price)}, pnl {trade.pnl:.2f} "
                f"({trade.exit_reason})",
                {"trade": trade},
            )
        if self.protections is not None:
            try:
                self.protections.on_trade_closed(trade)
            except Exception as exc:
                stats.errors += 1
                log.exception("engine: protections evaluation failed")
                self._emit(EventKind.ERROR, f"protections: {type(exc).__name__}: {exc}")

    def on_protection(self, event: ProtectionEvent) -> None:
        """``ProtectionManager.notify``: count and report locks."""
        if event.kind == "locked":
            self.stats.locks += 1
        self._emit(EventKind.PROTECTION, event.message, {"kind": event.kind, "lock": event.lock})

    def _emit(self, kind: EventKind, message: str, data: dict[str, Any] | None = None) -> None:
        if self.listener is None:
            return
        try:
            self.listener(EngineEvent(kind, self.clock.now(), message, data or {}))
        except Exception:
            log.exception("engine: event listener failed")


# -- helpers --------------------------------------------------------------------------------------


def _num(value: Decimal | None) -> str:
    if value is None:
        return "-"
    text = f"{value.normalize():f}" if value == value.to_integral() else f"{value:f}"
    return text


def describe(intent: OrderIntent) -> str:
    """``buy 10 AAPL market (entry)``."""
    size = f"{_num(intent.qty)}" if intent.qty is not None else f"${_num(intent.notional)}"
    price = ""
    if intent.limit_price is not None:
        price += f" limit {_num(intent.limit_price)}"
    if intent.stop_price is not None:
        price += f" stop {_num(intent.stop_price)}"
    reason = f" ({intent.reason})" if intent.reason else ""
    return f"{intent.side.value} {size} {intent.symbol} {intent.type.value}{price}{reason}"


def _with(intent: OrderIntent, **changes: Any) -> OrderIntent:
    from dataclasses import replace

    return replace(intent, **changes)
