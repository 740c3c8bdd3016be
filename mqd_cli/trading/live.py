"""The live session behind ``mqd run``: start-up checks, the loop, a clean shutdown.

Start-up, in order: the clock and broker (the in-process simulated exchange on an accelerated
clock for ``broker = "sim"``, Alpaca otherwise), the store and the order tracker restored from
its journal, reconciliation against the broker (our own orders' missed events are applied;
anything unexplained refuses the start unless ``adopt``), symbol properties (synced from the
sim's universe when empty; a warning when stale), protections restored and evaluated, the
stream lease and the user stream (Alpaca), the strategy warmed up on history bars.

The loop polls completed bars, hands them to the ``Engine``, lets the simulated exchange match
resting orders, samples equity for MaxDrawdown, heartbeats the lease, and stops on
``request_stop`` (Ctrl-C, SIGTERM) or after ``duration``. Shutdown stops new intents, cancels
our open orders when asked, stops the stream, releases the lease and returns a summary.
Everything the tracker learns is journaled as it happens, so a kill at any moment loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mqd_cli.clock import BrokerTimeClock, Clock, RealTimeClock
from mqd_cli.errors import BrokerError, StateError, UsageError
from mqd_cli.trading.engine import Engine, EngineEvent, EventKind
from mqd_cli.wire.parse import as_utc

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.config.settings import Settings
    from mqd_cli.model import Bar, OrderReport, TradeUpdate
    from mqd_cli.notify import DiscordNotifier
    from mqd_cli.orders.tracked import ApplyResult
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.protections.base import Lock, ProtectionEvent
    from mqd_cli.protections.manager import ProtectionManager
    from mqd_cli.store import Store
    from mqd_cli.strategies.base import Strategy
    from mqd_cli.stream.client import UserStreamTracker
    from mqd_cli.stream.lease import StreamLease
    from mqd_cli.symbols.book import SymbolBook
    from mqd_cli.throttle.throttler import Throttler
    from mqd_cli.trading.feeds import BarFeed

log = logging.getLogger("mqd.run")

ZERO = Decimal(0)
# Reconcile findings that are our own orders' missed events: applied at start without asking.
_OWN_KINDS = frozenset({"status_drift", "fill_drift", "shadow"})
# Engine events sent to Discord, by the [notify.discord] event name (refusals by the risk
# gate are sent as "risk").
_NOTIFY_EVENTS = {EventKind.FILL: "fill", EventKind.SUBMITTED: "order", EventKind.ERROR: "error"}


class SessionServices(Protocol):
    """What a live session takes from the factory (``mqd_cli.factory.Services``)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def is_sim(self) -> bool: ...
    @property
    def market_clock(self) -> Clock: ...
    @property
    def store(self) -> Store: ...
    @property
    def store_path(self) -> Path: ...
    @property
    def broker(self) -> Broker: ...
    @property
    def sim_broker(self) -> SimBroker: ...
    @property
    def symbols(self) -> SymbolBook: ...
    @property
    def notifier(self) -> DiscordNotifier: ...
    @property
    def throttler(self) -> Throttler: ...
    @property
    def stream_lease(self) -> StreamLease: ...

    def session_tracker(self) -> OrderTracker: ...
    def session_protections(self) -> ProtectionManager: ...
    def engine(
        self,
        strategy: Strategy,
        *,
        tracker: OrderTracker,
        protections: ProtectionManager,
        halted: bool = False,
        listener: Callable[[EngineEvent], None] | None = None,
        **options: Any,
    ) -> Engine: ...
    def stream_for(self, tracker: Any, clock: Clock) -> UserStreamTracker: ...
    def bar_feed(self, clock: Clock | None = None) -> BarFeed: ...
    def close(self) -> None: ...


class StopReason(StrEnum):
    """Why a live session stopped: the value is the text the summary prints. Two reasons
    carry a detail (``StopReason.text``): the duration, and the error that stopped the stream."""

    INTERRUPTED = "interrupted (Ctrl-C)"
    SIGTERM = "SIGTERM"
    STOPPED = "stopped"
    DURATION = "duration reached"  # "duration 2h reached"
    STREAM_STOPPED = "stream stopped"  # "stream stopped (ConnectionClosed)"

    def text(self, detail: str = "") -> str:
        """The printed reason, with its detail when it carries one."""
        if not detail:
            return self.value
        if self is StopReason.DURATION:
            return f"duration {detail} reached"
        return f"{self.value} ({detail})"


class RunRecorder(Protocol):
    """Where a run is recorded for `mqd runs` and `mqd pnl` (``history.runs.RunLog``)."""

    def started(self, session: LiveSession) -> None: ...
    def sampled(self, session: LiveSession, equity: Decimal) -> None: ...
    def stopped(self, session: LiveSession, summary: RunSummary) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    duration: timedelta | None = None  # None: [run] duration (0 = until stopped)
    dry_run: bool = False
    cancel_on_exit: bool | None = None  # None: [run] cancel_on_exit
    adopt: bool = False
    halt: bool = False


@dataclass
class RunSummary:
    reason: str
    started_at: datetime
    stopped_at: datetime
    broker: str
    dry_run: bool
    stats: dict[str, Any]
    equity_start: Decimal
    equity_end: Decimal
    positions: dict[str, Decimal]
    open_orders: int
    canceled: int
    locks: list[Lock]
    stream: dict[str, Any] | None = None
    notify: dict[str, Any] | None = None
    store: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "reason": self.reason,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "broker": self.broker,
            "dry_run": self.dry_run,
            **self.stats,
            "equity_start": self.equity_start,
            "equity_end": self.equity_end,
            "pnl": self.equity_end - self.equity_start,
            "positions": self.positions,
            "open_orders": self.open_orders,
            "canceled_at_exit": self.canceled,
            "active_locks": [
                {
                    "protection": lk.protection,
                    "scope": lk.target,
                    "until": lk.end,
                    "reason": lk.reason,
                }
                for lk in self.locks
            ],
            "stream": self.stream,
            "notify": self.notify,
            "store": self.store,
        }


@dataclass
class _Startup:
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_time(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{what}: {text!r} is not an RFC 3339 time", "for example '2026-01-05T14:30:00Z'"
        ) from None
    return as_utc(value)


class _TrackerTap:
    """The tracker as the user stream sees it: every result is mirrored into the engine.

    Intents the strategy raises on a fill are queued, not sent from inside the stream's
    handler: the loop sends them on its next pass (woken at once), so a busy stream never
    holds the loop and a REST call never blocks the stream's reader."""

    def __init__(self, tracker: OrderTracker, engine: Engine, wake: Callable[[], None]):
        self._tracker = tracker
        self._engine = engine
        self._wake = wake

    def apply(self, update: TradeUpdate, *, source: str = "stream") -> ApplyResult:
        result = self._tracker.apply(update, source=source)
        self._engine.observe(result)
        if self._engine.pending_intents:
            self._wake()
        return result

    def apply_order_report(
        self, report: OrderReport, *, source: str = "rest", executions: Sequence[Any] = ()
    ) -> ApplyResult:
        result = self._tracker.apply_order_report(report, source=source, executions=executions)
        self._engine.observe(result)
        if self._engine.pending_intents:
            self._wake()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)


class LiveSession:
    """One ``mqd run``. ``prepare()`` then ``await run()``; ``request_stop()`` from anywhere."""

    def __init__(
        self,
        services: SessionServices,
        options: RunOptions,
        *,
        owns_services: bool = False,
        listener: Callable[[EngineEvent], None] | None = None,
        on_tick: Callable[[LiveSession], None] | None = None,
        base_dir: Path | None = None,
        recorder: RunRecorder | None = None,
    ):
        """Built by ``Services.live_session`` (which picks a sim session or Alpaca)."""
        self.options = options
        self.is_sim = services.is_sim
        self.services = services
        self._owns_services = owns_services
        self.settings = services.settings
        # The market clock: the trading state (orders, trades, locks, bars) is in the broker's
        # time. The services' clock stays local: the throttle budget and the stream lease are
        # shared with other processes on this host in local time.
        self.clock: Clock = services.market_clock
        self.tracker: OrderTracker | None = None
        self.protections: ProtectionManager | None = None
        self.listener = listener
        self.on_tick = on_tick
        self.base_dir = base_dir
        self.recorder = recorder  # the runs table (`mqd runs`, `mqd pnl`)
        self.stop_reason: StopReason | None = None
        self.stop_detail = ""  # the duration, or the error that stopped the stream
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.engine: Engine | None = None
        self.stream: UserStreamTracker | None = None
        self.notifier: DiscordNotifier | None = None
        self.feed: BarFeed | None = None
        self._lease: StreamLease | None = None  # Alpaca
        self._cursor: dict[str, datetime] = {}
        self._offset_at = 0.0
        self._resync_every = 1.0  # s until the next sync of the market clock (doubles to 30)
        self._down_since: float | None = None  # when the stream was first seen down
        self.started_at: datetime | None = None
        self.equity_start = ZERO
        self.startup = _Startup()
        from mqd_cli.systemd import SystemdNotify

        self.systemd = SystemdNotify.from_env()  # None unless run as a Type=notify service
        from mqd_cli.notify import Heartbeat

        self.heartbeat = Heartbeat.of(services)  # None without [notify] heartbeat_url
        self._real = RealTimeClock()  # the watchdog's pace: real seconds at any sim speed

    @property
    def broker(self) -> Broker:
        return self.services.broker

    @property
    def stop_text(self) -> str:
        """The stop reason as printed ("" while running)."""
        return self.stop_reason.text(self.stop_detail) if self.stop_reason is not None else ""

    # -- start-up ----------------------------------------------------------------------------

    def _say(self, message: str, *, warn: bool = False) -> None:
        (self.startup.warnings if warn else self.startup.messages).append(message)
        (log.warning if warn else log.info)("%s", message)
        self._emit(EventKind.WARNING if warn else EventKind.INFO, message)

    def _emit(self, kind: EventKind, message: str, data: dict[str, Any] | None = None) -> None:
        if self.listener is not None:
            self.listener(EngineEvent(kind, self.clock.now(), message, data or {}))

    def prepare(self) -> None:
        """Everything before the first bar; raises MqdError when trading must not start."""
        from mqd_cli.strategies.loader import load_strategy

        s = self.settings
        sv = self.services
        strategy = load_strategy(s.strategy, base_dir=self.base_dir)
        broker = sv.broker
        if self.is_sim:
            self._say(
                f"simulated exchange (offline), {s.sim.speed:g}x speed from "
                f"{self.clock.now():%Y-%m-%d %H:%M} UTC; journal {sv.store_path}"
            )
        else:
            self._say(
                f"broker alpaca ({'paper' if s.alpaca.paper else 'LIVE'})"
                f" {s.alpaca.base_url or ''}".rstrip()
            )
        self._sync_market_clock()
        store = sv.store
        tracker, protections = sv.session_tracker(), sv.session_protections()
        self.tracker, self.protections = tracker, protections
        account = broker.get_account()
        self._reconcile(tracker)
        self._symbols(store)
        notifier = self._notifier()
        engine = sv.engine(
            strategy,
            tracker=tracker,
            protections=protections,
            halted=self.options.halt,
            params=dict(getattr(strategy, "params", {}) or {}),
            dry_run=self.options.dry_run,
            starting_cash=account.cash,
            account_ttl=0.0 if self.is_sim else 5.0,
            listener=self._on_engine_event,
            price_lookup=None if self.is_sim else self._latest_close,
        )
        self.engine = engine
        self.notifier = notifier
        protections.notify = self._on_protection
        protections.start()  # restores the persisted locks, evaluates once, starts the timer
        for lock in protections.active_locks():
            self._say(
                f"active lock: {lock.protection} on {lock.target} until "
                f"{lock.end:%Y-%m-%d %H:%M} UTC ({lock.reason})",
                warn=True,
            )
        if self.is_sim:
            sv.sim_broker.subscribe(engine.on_trade_update)
        else:
            self._start_stream(tracker, engine)
        for p in broker.list_positions():
            if p.current_price is not None:
                engine.mark(p.symbol, p.current_price)
        self.equity_start = engine.equity
        warmed = self._warm_up(engine)
        self._say(
            f"strategy {getattr(strategy, 'name', '?')} on {', '.join(s.strategy.symbols)} "
            f"({warmed} warm-up bars); equity {engine.equity:,.2f}"
            + ("; DRY RUN: nothing is sent" if self.options.dry_run else "")
            + ("; HALTED: every order is refused" if self.options.halt else "")
        )
        if notifier is not None:
            notifier.send(
                "start",
                f"mqd run started: {getattr(strategy, 'name', '')} on "
                f"{', '.join(s.strategy.symbols)}",
            )

    def _notifier(self) -> DiscordNotifier | None:
        d = self.settings.notify.discord
        if not d.webhook_url.is_set():
            return None
        notifier = self.services.notifier
        if notifier.unknown_events:
            self._say(
                f"[notify.discord] events lists unknown names: "
                f"{', '.join(notifier.unknown_events)}",
                warn=True,
            )
        return notifier

    def _reconcile(self, tracker: OrderTracker) -> None:
        """Our own orders' missed events are applied; anything else refuses the start."""
        from mqd_cli.reconcile import apply as rc_apply
        from mqd_cli.reconcile import collect as rc_collect
        from mqd_cli.reconcile import diff as rc_diff

        try:
            local, snapshot, lookups = rc_collect.collect(
                tracker, self.broker, self.clock, grace=timedelta(0)
            )
        except BrokerError:
            raise
        report = rc_diff.diff(local, snapshot, lookups, now=self.clock.now(), grace=timedelta(0))
        own = [f for f in report.findings if f.kind in _OWN_KINDS and f.action != "review"]
        other = [f for f in report.findings if f not in own]
        if own:
            partial = dataclasses.replace(report, findings=tuple(own))
            actions = rc_apply.apply_findings(
                tracker, self.broker, partial, apply=True, cancel_orphans=False
            )
            self._say(f"reconcile: applied {len(actions)} missed update(s) of our own orders")
        if not other:
            if not own:
                self._say("reconcile: in sync with the broker")
            return
        lines = [f"{f.kind} {f.subject}: local {f.local}, broker {f.broker}" for f in other]
        if not self.options.adopt:
            raise StateError(
                "the broker's state differs from the journal: "
                + "; ".join(lines[:5])
                + (f" (+{len(lines) - 5} more)" if len(lines) > 5 else ""),
                "inspect with `mqd reconcile`; start with `mqd run --adopt` to adopt orphan "
                "orders and accept the broker's positions",
            )
        partial = dataclasses.replace(report, findings=tuple(other))
        rc_apply.apply_findings(tracker, self.broker, partial, apply=True, cancel_orphans=False)
        for line in lines:
            self._say(f"reconcile --adopt: {line}", warn=True)

    def _symbols(self, store: Store) -> None:
        from mqd_cli.symbols.sync import sync

        book = self.services.symbols
        if self.is_sim and len(book) == 0:
            report = sync(store, self.broker, self.clock)
            book.reload()
            self._say(f"symbols: {report.fetched} assets from the simulated exchange")
            return
        if len(book) == 0:
            raise StateError(
                "no symbol properties: every order would be refused before submission",
                "run `mqd symbols sync` first",
            )
        if book.is_stale():
            age = book.staleness()
            self._say(
                f"symbol properties are stale (last sync {age} ago); run `mqd symbols sync`",
                warn=True,
            )

    def _start_stream(self, tracker: OrderTracker, engine: Engine) -> None:
        """Take the account's stream lease (refuse to start while another process holds it)
        and build the user stream; ``run`` keeps the lease alive while the stream runs."""
        lease = self._lease = self.services.stream_lease
        lease.acquire()
        self.stream = self.services.stream_for(
            _TrackerTap(tracker, engine, self._wake_loop), self.clock
        )
        self.feed = self.services.bar_feed(self.clock)

    # -- market time and bars ----------------------------------------------------------------

    def _sync_market_clock(self) -> None:
        """Alpaca (or the emulator) has its own time: the session runs on it."""
        if self.is_sim:
            return
        clock = self.clock
        assert isinstance(clock, BrokerTimeClock), "a session on Alpaca runs on Alpaca's time"
        self._offset_at = clock.monotonic()
        try:
            clock.sync(self.broker)
        except BrokerError as exc:
            log.warning("run: broker clock unavailable (%s); keeping the last offset", exc)

    def market_now(self) -> datetime:
        return self.clock.now()

    def _history(self, start: datetime, end: datetime) -> list[Bar]:
        symbols = [x.upper() for x in self.settings.strategy.symbols]
        tf = self.settings.strategy.timeframe
        if self.is_sim:
            from mqd_cli.trading.backtest import merged

            sim = self.services.sim_broker
            return list(merged([sim.bars(s, start, end, tf) for s in symbols]))
        assert self.feed is not None, "the bar feed is built with the stream"
        return list(self.feed.history(symbols, start, end))

    def _latest_close(self, symbol: str) -> Decimal | None:
        """The close of the symbol's latest bar (Alpaca has no last-price call in the Broker
        protocol): a price for the risk gate before the first bar of the run."""
        if self.feed is None:
            return None
        now = self.market_now()
        try:
            bars = list(self.feed.history([symbol], now - timedelta(minutes=30), now))
        except Exception as exc:
            log.warning("run: no recent bar for %s: %s", symbol, exc)
            return None
        return bars[-1].close if bars else None

    def _warm_up(self, engine: Engine) -> int:
        tf = self.settings.strategy.timeframe
        now = self.market_now()
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        current = epoch + ((now - epoch) // tf) * tf  # start of the bar in progress
        n = self.settings.run.warmup_bars
        for s in self.settings.strategy.symbols:
            self._cursor[s.upper()] = current
        if n <= 0:
            return 0
        try:
            bars = self._history(current - n * tf, current)
        except BrokerError as exc:
            self._say(f"warm-up bars unavailable ({exc}); the strategy starts cold", warn=True)
            return 0
        return engine.warm_up(bars)

    def _poll_bars(self, until: datetime | None = None) -> list[Bar]:
        """The bars completed since the last poll, up to now (or ``until``, when earlier)."""
        tf = self.settings.strategy.timeframe
        now = self.market_now() if until is None else min(self.market_now(), until)
        end = now - tf + timedelta(microseconds=1)  # completed bars only
        start = min(self._cursor.values())
        if end <= start:
            return []
        out = []
        for bar in self._history(start, end):
            cursor = self._cursor.get(bar.symbol)
            if cursor is None or bar.timestamp < cursor:
                continue
            self._cursor[bar.symbol] = bar.timestamp + tf
            out.append(bar)
        # A minute without trades has no bar (common on the IEX feed): do not ask for a
        # symbol's silent minutes forever; a bar later than this is not waited for.
        floor = end - 5 * tf
        for symbol, cursor in self._cursor.items():
            if cursor < floor:
                self._cursor[symbol] = floor
        return out

    # -- events ------------------------------------------------------------------------------

    def _on_engine_event(self, event: EngineEvent) -> None:
        if self.listener is not None:
            self.listener(event)
        n = self.notifier
        if n is None:
            return
        kind = _NOTIFY_EVENTS.get(event.kind)
        if event.kind is EventKind.REFUSED and event.data.get("stage") == "risk":
            kind = "risk"
        if kind is not None:
            n.dispatch(kind, event.message)

    def _on_protection(self, event: ProtectionEvent) -> None:
        if self.engine is not None:
            self.engine.on_protection(event)
        if self.notifier is not None:
            self.notifier.on_protection(event)

    # -- the loop ----------------------------------------------------------------------------

    def _wake_loop(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def request_stop(self, reason: StopReason, detail: str = "") -> None:
        """Ask the loop to stop (safe from a signal handler or another thread)."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_detail = reason, detail
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> RunSummary:
        assert self.engine is not None and self.tracker is not None, "prepare() first"
        engine = self.engine
        tracker = self.tracker
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        if self.stop_reason is not None:
            self._stop.set()
        s = self.settings
        duration = self.options.duration if self.options.duration is not None else s.run.duration
        resume = getattr(self.clock, "resume", None)
        if resume is not None:
            resume()  # the accelerated clock held still during start-up
        self.started_at = self.clock.now()
        self._record(lambda r: r.started(self))
        speed = s.sim.speed if self.is_sim else 1.0
        poll = s.run.poll_interval.total_seconds()
        tasks: list[asyncio.Task[None]] = []
        if self.stream is not None:
            from mqd_cli.stream.lease import run_leased

            assert self._lease is not None, "the stream is built with its lease"
            stream_task = asyncio.create_task(
                run_leased(self.stream, self._lease), name="trade_updates"
            )
            stream_task.add_done_callback(self._stream_ended)
            tasks.append(stream_task)
        next_equity = 0.0
        next_refresh = 0.0
        empty_polls = 0
        finishing = False  # the duration was reached: this was the last pass that trades
        # The apply path never pauses for housekeeping: WAL checkpoints run on a worker
        # thread (not inside a commit), and the start-up objects are frozen out of the
        # cyclic collector's sight, so its full passes stay short.
        from mqd_cli.stream.housekeeping import Housekeeping

        housekeeping = Housekeeping(self.services.store)
        housekeeping.start()
        engine.start()
        if self.systemd is not None:
            self.systemd.ready(
                f"trading {', '.join(s.strategy.symbols)} with {engine.strategy.name}"
            )
        try:
            while not self._stop.is_set():
                mono = self.clock.monotonic()
                healthy = self._healthy()
                if self.systemd is not None:  # the watchdog counts real seconds
                    self.systemd.watchdog(self._real.monotonic(), healthy=healthy)
                if self.heartbeat is not None:  # a background ping, never awaited here
                    self.heartbeat.beat(self._real.monotonic(), healthy=healthy)
                housekeeping.tick()
                # One rule for every time option: market time, the clock the session trades
                # on (simulated time, or the broker's, which an emulator may accelerate).
                # Judged before the bars are polled, acted on a pass later: the bars that
                # completed within the duration are traded even when this pass comes late (a
                # loaded machine, a fast simulated clock), and the orders they send get one
                # more wait for their updates, as any pass's do, before the stop.
                if finishing:
                    if self.stop_reason is None:
                        self.stop_reason, self.stop_detail = StopReason.DURATION, _fmt(duration)
                    break
                done = bool(duration) and self.market_now() - self.started_at >= duration
                if not self.is_sim and mono - self._offset_at > self._resync_every:
                    self._sync_market_clock()
                    # 1 s, 2 s, 4 s ... 30 s: an accelerated emulator's rate is known at once
                    self._resync_every = min(30.0, self._resync_every * 2)
                try:
                    bars = self._poll_bars(self.started_at + duration if done else None)
                except BrokerError as exc:
                    bars = []
                    self._emit(EventKind.ERROR, f"bars unavailable: {exc}")
                empty_polls = 0 if bars else empty_polls + 1
                for bar in bars:
                    engine.on_bar(bar)
                    if self._stop.is_set():
                        break
                engine.poll_broker()  # also sends the intents queued by stream events
                finishing = done
                if mono >= next_equity:
                    next_equity = mono + s.protections.check_interval.total_seconds()
                    self._sample_equity(engine)
                if mono >= next_refresh and not self.is_sim:
                    next_refresh = mono + 10
                    if tracker.refresh():
                        engine.sync_from_tracker()
                if self.on_tick is not None:
                    self.on_tick(self)
                wait = poll * speed
                if self.is_sim and self._cursor:
                    # Wake when the next bar completes, so its orders fill at the next open
                    # rather than several bars late when the clock runs fast.
                    due = min(self._cursor.values()) + s.strategy.timeframe - self.clock.now()
                    wait = min(wait, max(0.0, due.total_seconds()) + 0.001 * speed)
                if not self.is_sim and empty_polls > 3:
                    wait = max(wait, 5.0)  # a bar is late at the data API: do not hammer it
                await self._sleep(wait)
        finally:
            if self.systemd is not None:
                self.systemd.stopping(self.stop_text or "stopping")
            summary = await self._shutdown(tasks)
            await housekeeping.stop()
        return summary

    def _healthy(self) -> bool:
        """Whether the loop may tell a watchdog it is alive: the stream (when there is one)
        connected, or down for less than a minute (a reconnect in progress)."""
        stream = self.stream
        if stream is None:
            return True
        health = stream.health
        if health.connected:
            self._down_since = None
            return True
        now = self._real.monotonic()
        if self._down_since is None:
            self._down_since = now
        return now - self._down_since < 60.0

    async def _sleep(self, seconds: float) -> None:
        """Until the next pass: ``seconds``, a stop request, or intents queued by the stream."""
        assert self._stop is not None and self._wake is not None
        if self.engine is not None and self.engine.pending_intents:
            await asyncio.sleep(0)  # let the stream read, then send them
            return
        self._wake.clear()
        waiters = {
            asyncio.ensure_future(self.clock.sleep_async(seconds)),
            asyncio.ensure_future(self._stop.wait()),
            asyncio.ensure_future(self._wake.wait()),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()

    def _sample_equity(self, engine: Engine) -> None:
        """A broker equity sample for MaxDrawdown (and a re-evaluation of the protections)."""
        protections = engine.protections
        try:
            equity = self.broker.get_account().equity
        except BrokerError as exc:
            log.warning("run: account unavailable for the equity sample: %s", exc)
            return
        except Exception:
            log.exception("run: equity sample failed")
            return
        self._record(lambda r: r.sampled(self, equity))
        if protections is None:
            return
        try:
            protections.evaluate(equity=equity)
        except Exception as exc:
            engine.stats.errors += 1
            log.exception("run: protections evaluation failed")
            self._emit(EventKind.ERROR, f"protections: {type(exc).__name__}: {exc}")

    def _record(self, call: Callable[[RunRecorder], None]) -> None:
        """Tell the run log; recording never stops trading: a failure is a warning."""
        if self.recorder is None:
            return
        try:
            call(self.recorder)
        except Exception as exc:
            log.warning("run: the run could not be recorded in the store: %s", exc)
            self._emit(EventKind.WARNING, f"the run could not be recorded in the store: {exc}")

    def _stream_ended(self, task: asyncio.Task[None]) -> None:
        """The stream stops only when asked, or when another process took the lease: then
        trading without fills would be blind, so the loop stops too."""
        if task.cancelled() or self._stop is None or self._stop.is_set():
            return
        exc = task.exception()
        if exc is not None:
            self._emit(EventKind.ERROR, f"trade_updates stream stopped: {exc}")
            self.request_stop(StopReason.STREAM_STOPPED, type(exc).__name__)

    # -- shutdown ----------------------------------------------------------------------------

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> RunSummary:
        engine = self.engine
        assert engine is not None
        if self.stop_reason is None:
            self.stop_reason = StopReason.STOPPED
        reason = self.stop_text
        self._emit(EventKind.INFO, f"stopping: {reason}")
        engine.stop()
        cancel = self.options.cancel_on_exit
        if cancel is None:
            cancel = self.settings.run.cancel_on_exit
        canceled = 0
        if cancel and not self.options.dry_run:
            canceled = await self._cancel_open_orders(engine)
        if self.stream is not None:
            self.stream.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        protections = engine.protections
        if protections is not None:
            with contextlib.suppress(Exception):
                protections.stop()
        if self._lease is not None and self._lease.held:
            with contextlib.suppress(Exception):
                self._lease.release()  # run_leased releases too; a second release is harmless
        try:
            equity_end = self.broker.get_account().equity
        except Exception:
            equity_end = engine.equity
        locks: list[Lock] = []
        if protections is not None:
            with contextlib.suppress(Exception):
                locks = protections.active_locks()
        summary = RunSummary(
            reason=reason,
            started_at=self.started_at or self.clock.now(),
            stopped_at=self.clock.now(),
            broker="sim" if self.is_sim else "alpaca",
            dry_run=self.options.dry_run,
            stats=engine.stats.as_dict(),
            equity_start=self.equity_start,
            equity_end=equity_end,
            positions=engine.positions(),
            open_orders=engine.open_order_count,
            canceled=canceled,
            locks=locks,
            stream=self.stream.health.as_dict() if self.stream is not None else None,
            notify=dataclasses.asdict(self.notifier.stats) if self.notifier else None,
            store=str(self.services.store_path),
        )
        self._record(lambda r: r.stopped(self, summary))
        if self.notifier is not None:
            pnl = summary.equity_end - summary.equity_start
            with contextlib.suppress(Exception):
                await self.notifier.send_async(
                    "stop",
                    f"mqd run stopped ({reason}): {summary.stats['trades']} trades, pnl {pnl:,.2f}",
                )
                await self.notifier.drain()
            with contextlib.suppress(Exception):
                await self.notifier.aclose()
        if self.feed is not None:
            with contextlib.suppress(Exception):
                self.feed.close()
        return summary

    async def _cancel_open_orders(self, engine: Engine) -> int:
        from mqd_cli.brokers.errors import BrokerCallError

        tracker = engine.tracker
        n = 0
        for o in tracker.open_orders():
            if not o.broker_id:
                continue
            try:
                self.broker.cancel_order(o.broker_id)
                n += 1
            except BrokerCallError as exc:
                self._emit(EventKind.ERROR, f"cancel {o.client_order_id}: {exc}")
        if self.is_sim:
            engine.poll_broker()
            return n
        for _ in range(20):  # the stream normally confirms within milliseconds
            if not tracker.open_orders():
                break
            await asyncio.sleep(0.1)
        for o in tracker.open_orders():
            if o.broker_id:
                with contextlib.suppress(BrokerCallError):
                    engine.observe(
                        tracker.apply_order_report(
                            self.broker.get_order(o.broker_id), source="shutdown"
                        )
                    )
        return n

    def close(self) -> None:
        """Release a lease still held (a failed start) and close the session's own services
        (the sim session's); the caller closes its own."""
        if self._lease is not None and self._lease.held:
            with contextlib.suppress(Exception):
                self._lease.release()
        if self._owns_services:
            self.services.close()

    # -- what the dashboard shows ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        engine = self.engine
        assert engine is not None
        throttle = None
        if not self.is_sim and "throttler" in self.services.__dict__:
            with contextlib.suppress(Exception):
                throttle = self.services.throttler.stats()
        locks: list[Lock] = []
        if engine.protections is not None:
            with contextlib.suppress(Exception):
                locks = engine.protections.active_locks()
        return {
            "now": self.clock.now(),
            "market_now": self.market_now(),
            "started_at": self.started_at,
            "equity": engine.equity,
            "cash": engine.cash,
            "pnl": engine.equity - self.equity_start,
            "positions": {
                s: (q, engine.ctx.avg_entry_price(s), engine.last_price(s))
                for s, q in engine.positions().items()
            },
            "open_orders": engine.ctx.open_orders(),
            "fills": list(engine.last_fills[-6:]),
            "stats": engine.stats,
            "locks": locks,
            "risk_state": str(engine.risk.state) if engine.risk is not None else "",
            "stream": self.stream.health.as_dict() if self.stream is not None else None,
            "throttle": throttle,
            "dry_run": self.options.dry_run,
            "refusals": engine.refusals[-5:],
        }


def _fmt(td: timedelta) -> str:
    from mqd_cli.durations import format_duration

    return format_duration(td)
