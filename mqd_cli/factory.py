"""One factory: every command builds the core services it needs from validated settings.

``Services`` is the one place that chooses between the simulator and Alpaca: the broker, the
market clock, the user stream and its lease, the bar feed, the engine and the live and
backtest sessions are built here and nowhere else (adapters never import this module).

Each service is a lazily built attribute, so a command builds only what it touches and building
one service never imports another's dependencies (``mqd protections status`` never imports
alpaca-py, websockets or httpx). Services that need a wider world say so by building the
attributes they use (the broker builds the throttler, for example).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mqd_cli.config.loading import LoadedConfig, load, store_path
from mqd_cli.config.settings import Settings

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.clock import Clock
    from mqd_cli.history.query import HistorySource
    from mqd_cli.notify import DiscordNotifier
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.protections.manager import ProtectionManager
    from mqd_cli.store import Store
    from mqd_cli.strategies.base import Strategy
    from mqd_cli.stream.client import UserStreamTracker
    from mqd_cli.stream.lease import StreamLease
    from mqd_cli.symbols.book import SymbolBook
    from mqd_cli.throttle.throttler import Throttler
    from mqd_cli.trading.backtest import BacktestResult
    from mqd_cli.trading.engine import Engine, EngineEvent
    from mqd_cli.trading.feeds import BarFeed
    from mqd_cli.trading.live import LiveSession, RunOptions


class Services:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        loaded: LoadedConfig | None = None,
        bar_file: str | Path | None = None,
    ):
        self.loaded = loaded
        self.settings = (
            settings if settings is not None else (loaded.settings if loaded else Settings())
        )
        self._clock = clock
        # A session (a sim run, a backtest) steps its own simulated exchange and may replay a
        # CSV of bars; the plain services' simulator steps itself on its clock.
        self._session = False
        self._journal = True  # a backtest's tracker keeps no journal
        self._bar_file = bar_file
        # The sim session these services journal into or read (None: the configured store),
        # and the services built over other stores that close with these.
        self.session_name: str | None = None
        self._spawned: list[Services] = []

    @property
    def is_sim(self) -> bool:
        """``broker = "sim"``: the in-process simulated exchange, no network."""
        return self.settings.broker == "sim"

    @classmethod
    def from_config(cls, cli_path: str | Path | None = None, **kwargs: Any) -> Services:
        loaded = load(cli_path)
        return cls(loaded.settings, loaded=loaded, **kwargs)

    @cached_property
    def clock(self) -> Clock:
        from mqd_cli.clock import RealTimeClock

        return self._clock if self._clock is not None else RealTimeClock()

    @cached_property
    def store_path(self) -> Path:
        return store_path(self.settings)

    @cached_property
    def store(self) -> Store:
        from mqd_cli.store import Store

        return Store.open(
            self.store_path,
            busy_timeout_ms=int(self.settings.store.busy_timeout.total_seconds() * 1000),
        )

    @cached_property
    def throttler(self) -> Throttler:
        """The Throttler every outbound request goes through (budget shared via the store)."""
        from mqd_cli.throttle import build

        return build(self)

    @cached_property
    def notifier(self) -> DiscordNotifier:
        """DiscordNotifier from [notify.discord]; disabled (no network) without a webhook."""
        from mqd_cli.notify import build

        return build(self)

    @cached_property
    def protections(self) -> ProtectionManager:
        """ProtectionManager over the store; the run loop sets ``.notify`` and calls ``start()``."""
        from mqd_cli.protections.manager import ProtectionManager

        return ProtectionManager(self.settings.protections, self.store, self.clock)

    @cached_property
    def symbols(self) -> SymbolBook:
        """Symbol properties over the store (cache loaded on first lookup)."""
        from mqd_cli.symbols.book import SymbolBook

        return SymbolBook(self.store, self.clock, stale_after=self.settings.symbols.stale_after)

    @cached_property
    def tracker(self) -> OrderTracker:
        """OrderTracker restored from the store's journal (strategy from [strategy] name)."""
        from mqd_cli.orders.tracker import OrderTracker

        return OrderTracker.restore(self.store, self.clock, strategy=self.settings.strategy.name)

    @cached_property
    def broker(self) -> Broker:
        """The Broker: SimBroker (in-memory, seeded from [sim], on this clock) for
        ``broker = "sim"``, the alpaca-py adapter for ``broker = "alpaca"`` (through the
        shared throttler)."""
        if not self.is_sim:
            from mqd_cli.brokers.alpaca import AlpacaBroker

            return AlpacaBroker(self.settings.alpaca, throttler=self.throttler)
        from mqd_cli.brokers.sim.broker import SimBroker

        broker = SimBroker(self.settings.sim, self.clock, auto_step=not self._session)
        if self._bar_file:
            from mqd_cli.brokers.sim.prices import CsvError
            from mqd_cli.errors import UsageError

            path = Path(self._bar_file).expanduser()
            if not path.is_file():
                raise UsageError(f"bar file {path} not found", "check --data")
            try:
                broker.load_csv_prices(str(path))
            except CsvError as exc:
                raise UsageError(f"{exc.path}:{exc.line}: {exc.problem}", exc.fix) from exc
        return broker

    @property
    def sim_broker(self) -> SimBroker:
        """The broker as the simulated exchange it is with ``broker = "sim"`` (sessions step
        it, subscribe to its events and read its prices); UsageError with Alpaca."""
        from mqd_cli.brokers.sim.broker import SimBroker

        broker = self.broker
        if not isinstance(broker, SimBroker):
            from mqd_cli.errors import UsageError

            raise UsageError(
                'the simulated exchange needs broker = "sim"',
                'set broker = "sim" in the config',
            )
        return broker

    @cached_property
    def market_clock(self) -> Clock:
        """The trading state's time (orders, trades, locks, bars): the simulator's clock, or
        Alpaca's time (``BrokerTimeClock``; ``sync`` it against the broker before use). The
        throttle budget and the stream lease stay on ``clock``: they are shared with other
        processes on this host in local time."""
        if self.is_sim:
            return self.clock
        from mqd_cli.clock import BrokerTimeClock

        return BrokerTimeClock(self.clock)

    @cached_property
    def stream_lease(self) -> StreamLease:
        """The lease on the account's one trade_updates connection (in the store)."""
        from mqd_cli.stream.lease import StreamLease, account_key

        return StreamLease(
            self.store, account_key(self.settings), self.clock, self.settings.stream.lease_ttl
        )

    @cached_property
    def user_stream(self) -> UserStreamTracker:
        """UserStreamTracker over [alpaca] with [stream] timing, feeding ``tracker`` and
        gap-filling through ``broker``; UsageError with broker = "sim" (no websocket)."""
        return self.stream_for(self.tracker, self.clock)

    def stream_for(self, tracker: Any, clock: Clock) -> UserStreamTracker:
        """The user stream feeding ``tracker`` (the tracker, or a tap in front of it: the run
        loop's, or the in-memory ledger of ``mqd stream tail --direct``), gap-filled over REST
        after every reconnect; with ``tracker`` None a bare listener that gap-fills nothing."""
        from mqd_cli.errors import UsageError

        if self.is_sim:
            raise UsageError(
                'there is no trade_updates stream with broker = "sim"',
                'run `mqd sim serve` and point [alpaca] at it with broker = "alpaca"',
            )
        from mqd_cli.brokers.alpaca import stream_endpoint
        from mqd_cli.stream.client import StreamOptions, UserStreamTracker

        a = self.settings.alpaca
        return UserStreamTracker(
            stream_endpoint(a),
            a.key_id.reveal() or "",
            a.secret_key.reveal() or "",
            clock=clock,
            tracker=tracker,
            broker=None if tracker is None else self.broker,
            options=StreamOptions.from_settings(self.settings.stream),
        )

    def bar_feed(
        self,
        clock: Clock | None = None,
        *,
        data: str | Path | None = None,
        synthetic: bool = False,
        origin: datetime | None = None,
    ) -> BarFeed:
        """The bar feed: a CSV (``data``) > the random walk (``synthetic`` or the simulator)
        > Alpaca's data API through the throttler."""
        from mqd_cli.trading.feeds import build_feed

        return build_feed(
            self.settings,
            clock=clock or self.market_clock,
            data=data,
            synthetic=synthetic,
            throttler_factory=lambda: self.throttler,
            origin=origin,
        )

    def session_tracker(self, strategy: str | None = None) -> OrderTracker:
        """The tracker of a session, restored from the store on the market clock (a
        backtest's keeps no journal)."""
        from mqd_cli.orders.tracker import OrderTracker

        name = self.settings.strategy.name if strategy is None else strategy
        if not self._journal:
            return OrderTracker(None, self.market_clock, strategy=name)
        if self.market_clock is self.clock and strategy is None:
            return self.tracker
        return OrderTracker.restore(self.store, self.market_clock, strategy=name)

    def session_protections(self) -> ProtectionManager:
        """The protections of a session, over the store on the market clock."""
        if self.market_clock is self.clock:
            return self.protections
        from mqd_cli.protections.manager import ProtectionManager

        return ProtectionManager(self.settings.protections, self.store, self.market_clock)

    def engine(
        self,
        strategy: Strategy,
        *,
        tracker: OrderTracker,
        protections: ProtectionManager,
        halted: bool = False,
        listener: Callable[[EngineEvent], None] | None = None,
        **options: Any,
    ) -> Engine:
        """The engine over this broker, market clock, risk gate and symbols; a simulated
        exchange is stepped by the engine and charges [sim] fees."""
        from mqd_cli.trading.engine import Engine
        from mqd_cli.trading.protective import ProtectiveStops
        from mqd_cli.trading.risk import RiskGate

        if self.is_sim:
            options.setdefault("step_broker", True)
            options.setdefault("fee_per_share", self.settings.sim.fee_per_share)
        options.setdefault("protective", ProtectiveStops.from_settings(self.settings.risk))
        return Engine(
            strategy=strategy,
            broker=self.broker,
            tracker=tracker,
            clock=self.market_clock,
            protections=protections,
            risk=RiskGate(self.settings.risk, halted=halted),
            symbols=self.symbols,
            listener=listener,
            **options,
        )

    def sim_session(self, name: str | None = None) -> Services:
        """Services for an offline sim run: an accelerated clock and a new session database.

        The simulated exchange lives in this process's memory, so its orders and positions
        vanish when the run ends; a journal from an earlier session would not match it. Each
        sim run therefore journals into a database of its own, ``sim-sessions/<name>.db`` next
        to the configured store (``name``, or the UTC time it began), and keeps it: the last
        ``history.sessions.KEEP_SESSIONS`` are kept, the oldest beyond them removed here.
        """
        from mqd_cli.clock import AcceleratedClock
        from mqd_cli.history import runs as run_log
        from mqd_cli.history import sessions
        from mqd_cli.trading.live import parse_time

        settings = self.settings
        run = settings.run
        start = parse_time(run.sim_start, "[run] sim_start") if run.sim_start else None
        name, db = sessions.create(self.store_path, name, self.clock.now())
        try:
            sessions.prune(
                self.store_path,
                run_log.session_names(self.store),
                keep=sessions.KEEP_SESSIONS,
                protect={name} | run_log.running_sessions(self.store),
            )
        except BaseException:
            sessions.remove(self.store_path, name)
            raise
        clock = AcceleratedClock(settings.sim.speed, start, paused=True)
        settings = dataclasses.replace(
            settings, store=dataclasses.replace(settings.store, path=str(db))
        )
        session = Services(settings, clock=clock, loaded=self.loaded)
        session._session = True
        session.session_name = name
        return session

    def reading(self, session: str | None = None, *, latest: bool = True) -> Services:
        """Services that read a kept sim session: ``session`` by name, else (``latest`` and
        ``broker = "sim"``) the latest one; these services themselves when there is none.

        The session's services run on its time: a clock that starts where the session is
        (when its run stopped, or its simulated time now while it runs), so "now", "the last
        hour" and active locks mean what they meant in the session. UsageError (exit 2) for a
        session that does not exist.
        """
        from mqd_cli.history import runs as run_log
        from mqd_cli.history import sessions

        name = sessions.check_name(session) if session is not None else None
        if name is None:
            if not (latest and self.is_sim):
                return self
            name = sessions.latest(self.store_path, run_log.session_names(self.store))
            if name is None:
                return self
        path = sessions.session_path(self.store_path, name)
        if not path.is_file():
            from mqd_cli.errors import UsageError

            kept = sessions.on_disk(self.store_path)
            raise UsageError(
                f"no sim session {name!r} in {sessions.sessions_dir(self.store_path)}",
                ("kept sessions: " + ", ".join(kept[-10:]) + "; `mqd runs` lists them")
                if kept
                else 'no session is kept yet: `mqd run` with broker = "sim" keeps one per run',
            )
        from mqd_cli.clock import AcceleratedClock
        from mqd_cli.store import Store
        from mqd_cli.store.history import last_activity

        journal = Store.open(
            path, busy_timeout_ms=int(self.settings.store.busy_timeout.total_seconds() * 1000)
        )
        try:
            last = last_activity(journal)
        except BaseException:
            journal.close()
            raise
        now = run_log.as_of(
            run_log.session_runs(self.store, name),
            datetime.fromisoformat(last) if last else None,
            self.clock.now(),
        )
        settings = dataclasses.replace(
            self.settings, store=dataclasses.replace(self.settings.store, path=str(path))
        )
        reader = Services(settings, clock=AcceleratedClock(1.0, now), loaded=self.loaded)
        reader.__dict__["store"] = journal  # opened above: a cached_property takes it as is
        reader.session_name = name
        self._spawned.append(reader)
        return reader

    def history(self, *, session: str | None = None, run: int | None = None) -> HistorySource:
        """What the history commands read: a journal (``reading(session)``, or the one
        ``run`` traded on) with its runs, and ``run``'s window. UsageError (exit 2) for an
        unknown run, a backtest (only its summary is kept) or a run of another session."""
        from mqd_cli.errors import UsageError
        from mqd_cli.history import runs as run_log
        from mqd_cli.history import sessions
        from mqd_cli.history.query import HistorySource

        view = None
        if run is not None:
            view = run_log.get(self.store, run)
            if view is None:
                raise UsageError(f"no run {run} in {self.store_path}", "`mqd runs` lists them")
            if view.kind != "run":
                raise UsageError(
                    f"run {run} is a {view.kind}: only its summary is kept",
                    f"see it with `mqd runs --run {run}`",
                )
            if session is not None and view.session != sessions.check_name(session):
                raise UsageError(
                    f"run {run} traded on {_journal_name(view.session)}, not on session"
                    f" {session!r}",
                    "drop --session (--run finds its own journal)",
                )
            kept = (
                view.session is None
                or sessions.session_path(self.store_path, view.session).is_file()
            )
            if not kept:
                raise UsageError(
                    f"run {run}'s sim session {view.session!r} is no longer kept",
                    "only the last sessions are kept; its summary is in `mqd runs`",
                )
            reader = self.reading(view.session, latest=False)
        else:
            reader = self.reading(session)
        if reader.session_name is not None:
            run_ids = tuple(v.id for v in run_log.session_runs(self.store, reader.session_name))
        else:
            run_ids = tuple(v.id for v in run_log.journal_runs(self.store, self.store_path))
        return HistorySource(
            store=reader.store,
            runs_store=self.store,
            journal=reader.store_path,
            session=reader.session_name,
            clock=reader.clock,
            run_ids=(view.id,) if view is not None else run_ids,
            run=view,
            run_end=run_log.window_end(self.store, view) if view is not None else None,
        )

    def backtest_session(self, start: datetime, data: str | Path | None = None) -> Services:
        """Services for a backtest: a ``BacktestClock`` at ``start``, a store in memory, the
        simulated exchange stepped by the engine (replaying ``data`` when given)."""
        from mqd_cli.clock import BacktestClock

        s = self.settings
        # Equity before the first trade is the simulated account's starting cash.
        drawdown = dataclasses.replace(
            s.protections.max_drawdown, starting_equity=s.sim.starting_cash
        )
        settings = dataclasses.replace(
            s,
            broker="sim",
            store=dataclasses.replace(s.store, path=":memory:"),
            protections=dataclasses.replace(s.protections, max_drawdown=drawdown),
        )
        session = Services(settings, clock=BacktestClock(start), loaded=self.loaded, bar_file=data)
        session._session = True
        session._journal = False
        return session

    def backtest(
        self, *, start: datetime, data: str | Path | None = None, **kw: Any
    ) -> BacktestResult:
        """Run a backtest (``trading.backtest.run_backtest``) on a backtest session of these
        settings; returns its ``BacktestResult``."""
        from mqd_cli.trading.backtest import run_backtest

        return run_backtest(self.backtest_session(start, data), start=start, data=data, **kw)

    def live_session(
        self,
        options: RunOptions,
        *,
        listener: Callable[[EngineEvent], None] | None = None,
        on_tick: Callable[[LiveSession], None] | None = None,
        base_dir: Path | None = None,
        session: str | None = None,
    ) -> LiveSession:
        """The session behind ``mqd run``: a sim session (own clock and journal, named
        ``session`` or by the time) for the simulator, these services for Alpaca. The run is
        recorded in this store's runs table (``mqd runs``)."""
        from mqd_cli.history.runs import RunLog
        from mqd_cli.trading.live import LiveSession

        if session is not None and not self.is_sim:
            from mqd_cli.errors import UsageError

            raise UsageError(
                '--session names a sim session: it needs broker = "sim"',
                "drop --session; a run against Alpaca journals into the configured store",
            )
        services = self.sim_session(session) if self.is_sim else self
        recorder = RunLog(
            self.store,
            self.clock,
            session=services.session_name,
            journal=services.store_path,
            broker=self.settings.broker,
            speed=self.settings.sim.speed if self.is_sim else 1.0,
        )
        return LiveSession(
            services,
            options,
            owns_services=services is not self,
            listener=listener,
            on_tick=on_tick,
            base_dir=base_dir,
            recorder=recorder,
        )

    def close(self) -> None:
        """Close what was built (only what was built): the broker's session before the store."""
        if "throttler" in self.__dict__:
            self.throttler.flush()  # stats are written at most once a second: keep the last
        if "broker" in self.__dict__:
            self.broker.close()
        for reader in self._spawned:
            reader.close()
        self._spawned.clear()
        if "store" in self.__dict__:
            self.store.close()


def _journal_name(session: str | None) -> str:
    return f"sim session {session!r}" if session is not None else "the configured store"
