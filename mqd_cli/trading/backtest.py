"""Backtests: the live engine on a ``BacktestClock`` against the simulated exchange.

The bars the strategy sees and the prices orders fill at come from the same source: the
``SimBroker``'s own price feed (its seeded random walk, or a CSV replayed through
``SimBroker.load_csv_prices``). Each bar is processed when it completes (the clock is moved to
the bar's end first), so a market order sent on a bar fills at the next bar's open, with the
configured slippage and fees. Everything is in memory (tracker, locks, symbol properties in an
in-memory SQLite store): same seed and data, same report. Finished orders are let go every
``FORGET_EVERY`` submits (``OrderTracker.forget_closed``, ``SimBroker.archive_finished``):
nothing in a backtest looks at them again, and a million-bar run keeps only what may trade.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mqd_cli.durations import format_duration
from mqd_cli.errors import UsageError
from mqd_cli.model import Bar
from mqd_cli.trading.engine import Engine, EngineEvent

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.clock import Clock
    from mqd_cli.config.settings import Settings
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.orders.trades import ClosedTrade
    from mqd_cli.protections.base import Lock, ProtectionEvent
    from mqd_cli.protections.manager import ProtectionManager
    from mqd_cli.store import Store
    from mqd_cli.strategies.base import Strategy

ZERO = Decimal(0)
_CHUNK = timedelta(days=2)  # bars generated per symbol at a time (bounded memory)
FORGET_EVERY = 64  # submits between two clear-outs of finished orders
_RATIO = Decimal("0.000001")


@dataclass(frozen=True)
class EquityPoint:
    at: datetime
    equity: Decimal
    drawdown: Decimal  # fraction below the running peak (0.05 = 5 %)


@dataclass
class BacktestResult:
    """Everything the report shows. Money and the drawdown (a ratio of money) are Decimal;
    win rate and exposure (ratios of counts) are floats."""

    strategy: str
    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    timeframe: timedelta
    seed: int
    data: str
    bars: int
    starting_cash: Decimal
    final_equity: Decimal
    fees: Decimal
    max_drawdown: Decimal
    max_drawdown_amount: Decimal
    exposure: float
    trades: list[ClosedTrade]
    stats: dict[str, Any]
    locks: list[Lock]
    lock_seconds: float
    refusals: dict[str, int]
    equity_curve: list[EquityPoint] = field(default_factory=list)
    open_positions: dict[str, Decimal] = field(default_factory=dict)
    signals: int | None = None
    seconds: float = 0.0
    interrupted_at: datetime | None = None  # stopped by Ctrl-C or SIGTERM: ``end`` is this

    @property
    def net_pnl(self) -> Decimal:
        return self.final_equity - self.starting_cash

    @property
    def realized_pnl(self) -> Decimal:
        return sum((t.pnl for t in self.trades), ZERO)

    @property
    def win_rate(self) -> float | None:
        if not self.trades:
            return None
        return sum(1 for t in self.trades if t.pnl > 0) / len(self.trades)

    def metrics(self) -> dict[str, Any]:
        """Risk-adjusted and per-trade measures (``trading.metrics``)."""
        from mqd_cli.trading import metrics as m

        returns = m.daily_returns(self.equity_curve)
        sharpe, sortino = m.sharpe(returns), m.sortino(returns)
        factor, mean = m.profit_factor(self.trades), m.expectancy(self.trades)
        return {
            "sharpe": None if sharpe is None else round(sharpe, 4),
            "sortino": None if sortino is None else round(sortino, 4),
            "daily_returns": len(returns),
            "profit_factor": None if factor is None else factor.quantize(_RATIO),
            "expectancy": None if mean is None else mean.quantize(Decimal("0.0001")),
            "longest_drawdown": m.longest_drawdown(self.equity_curve),
        }

    def by_symbol(self) -> dict[str, dict[str, Any]]:
        from mqd_cli.trading.metrics import by_symbol

        return {
            s: {"trades": st.trades, "win_rate": round(st.win_rate, 4), "pnl": st.pnl}
            for s, st in by_symbol(self.trades).items()
        }

    def locks_by_protection(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for lock in self.locks:
            out[lock.protection] = out.get(lock.protection, 0) + 1
        return out

    def exit_reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trades:
            out[t.exit_reason] = out.get(t.exit_reason, 0) + 1
        return out

    def as_dict(self, *, trades: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "strategy": self.strategy,
            "symbols": list(self.symbols),
            "start": self.start,
            "end": self.end,
            "timeframe": self.timeframe,
            "seed": self.seed,
            "data": self.data,
            "bars": self.bars,
            "starting_cash": self.starting_cash,
            "final_equity": self.final_equity,
            "net_pnl": self.net_pnl,
            "realized_pnl": self.realized_pnl,
            "fees": self.fees,
            "trades_count": len(self.trades),
            "win_rate": None if self.win_rate is None else round(self.win_rate, 4),
            "exit_reasons": self.exit_reasons(),
            "max_drawdown": self.max_drawdown.quantize(_RATIO),
            "max_drawdown_amount": self.max_drawdown_amount,
            "exposure": round(self.exposure, 4),
            "protection_triggers": self.locks_by_protection(),
            "lock_time": _fmt_seconds(self.lock_seconds),
            "lock_seconds": self.lock_seconds,
            "refused": self.refusals,
            "open_positions": self.open_positions,
            "orders": {k: self.stats[k] for k in ("intents", "submitted", "fills")},
            "seconds": round(self.seconds, 3),
            "interrupted_at": self.interrupted_at,
            "metrics": self.metrics(),
            "by_symbol": self.by_symbol(),
        }
        if self.signals is not None:
            doc["signals"] = self.signals
        if trades:
            doc["trades"] = [
                {
                    "symbol": t.symbol,
                    "side": t.side,
                    "qty": t.qty,
                    "entry_price": t.entry_price,
                    "exit_price": t.exit_price,
                    "opened_at": t.opened_at,
                    "closed_at": t.closed_at,
                    "pnl": t.pnl,
                    "exit_reason": t.exit_reason,
                }
                for t in self.trades
            ]
        return doc


def _fmt_seconds(seconds: float) -> str:
    from mqd_cli.protections.manager import format_remaining

    return format_remaining(seconds)


# The most bars one backtest runs (range / timeframe x symbols): a typo in a date must not
# start a walk from 1970 that fills the memory. 100 million one-minute bars is 190 years of
# one symbol, or 50 symbols over four years.
MAX_BARS = 100_000_000
_STOP_EVERY = 64  # bars between two looks at the stop request (Ctrl-C, SIGTERM)


def merged(streams: Sequence[Iterable[Bar]]) -> Iterator[Bar]:
    """One stream in (time, symbol) order."""
    if len(streams) == 1:
        return iter(streams[0])
    return heapq.merge(*streams, key=lambda b: (b.timestamp, b.symbol))


def sim_bars(
    broker: SimBroker, symbol: str, start: datetime, end: datetime, timeframe: timedelta
) -> Iterator[Bar]:
    """The simulated exchange's bars of ``symbol`` in [start, end), generated chunk by chunk."""
    lo = start
    while lo < end:
        hi = min(end, lo + max(_CHUNK, timeframe))
        yield from broker.bars(symbol, lo, hi, timeframe)
        lo = hi


def csv_span(broker: SimBroker, symbols: Sequence[str]) -> tuple[datetime, datetime] | None:
    """First bar start and last bar end of the CSV the broker replays."""
    prices = broker.prices
    in_file = set(getattr(prices, "symbols", ()))
    firsts: list[datetime] = []
    lasts: list[datetime] = []
    for s in symbols:
        if s.upper() not in in_file:
            continue  # not in the CSV: its bars would be a synthetic walk without end
        series = prices.bars(s, datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
        if series:
            firsts.append(series[0].timestamp)
            lasts.append(series[-1].timestamp + prices.timeframe_of(s))
    if not firsts:
        return None
    return min(firsts), max(lasts)


class BacktestServices(Protocol):
    """What a backtest takes from the factory (``Services.backtest_session``)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def sim_broker(self) -> SimBroker: ...
    @property
    def store(self) -> Store: ...

    def session_tracker(self, strategy: str | None = None) -> OrderTracker: ...
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


def run_backtest(
    services: BacktestServices,
    *,
    start: datetime,
    end: datetime,
    symbols: Sequence[str] | None = None,
    data: str | Path | None = None,
    bars: Iterable[Bar] | None = None,
    strategy: Strategy | None = None,
    base_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    listener: Callable[[EngineEvent], None] | None = None,
    curve_points: int = 2000,
    stop: Callable[[], bool] | None = None,
) -> BacktestResult:
    """Run ``[strategy]`` over [start, end) on the simulated exchange; see the module doc.

    ``bars`` overrides the bar stream (they must come from the same price source the
    simulated exchange fills on, e.g. ``sim_bars`` of an identical broker: benchmarks).
    ``stop`` is asked between bars: once it answers True the run ends after the bar it is at,
    and the result covers [start, that bar's end) with ``interrupted_at`` set.
    """
    from dataclasses import replace

    from mqd_cli.brokers.errors import NotFound
    from mqd_cli.store.trades import insert_closed_trade
    from mqd_cli.strategies.loader import load_strategy
    from mqd_cli.symbols.sync import sync as sync_symbols

    settings = services.settings
    if end <= start:
        raise UsageError(
            f"the backtest range is empty ({start.isoformat()} .. {end.isoformat()})",
            "--to must be after --from",
        )
    timeframe = settings.strategy.timeframe
    symbols = tuple(s.upper() for s in (symbols or settings.strategy.symbols))
    if not symbols:
        raise UsageError("no symbols to backtest", "set [strategy] symbols or pass --symbols")
    clock = services.clock
    broker = services.sim_broker
    if data is not None:
        in_file = set(getattr(broker.prices, "symbols", ()))
        missing = [s for s in symbols if s not in in_file]
        if missing:
            raise UsageError(
                f"{', '.join(missing)} not in {data} (it has {', '.join(sorted(in_file))})",
                "backtest the symbols the file has (--symbols), or add bars of the others to it;"
                " a file without a symbol column holds the symbol of its name (aapl.csv: AAPL)",
            )
    span_bars = (end - start) / timeframe * len(symbols)
    if span_bars > MAX_BARS:
        raise UsageError(
            f"{start.isoformat()} .. {end.isoformat()} is {span_bars:,.0f} bars of"
            f" {len(symbols)} symbol(s) at {format_duration(timeframe)}: more than {MAX_BARS:,}",
            "shorten the range (--from/--to), or use fewer symbols or a longer timeframe",
        )
    for s in symbols:
        try:
            broker.get_asset(s)
        except NotFound:
            raise UsageError(
                f"{s} is not an asset of the simulated exchange",
                "use a symbol of the sim universe (mqd symbols show) or one in the --data file",
            ) from None
    store = services.store
    try:
        sync_symbols(store, broker, clock)
        if strategy is None:
            strategy = load_strategy(
                replace(settings.strategy, symbols=list(symbols)), base_dir=base_dir
            )
        tracker = services.session_tracker(getattr(strategy, "name", ""))
        protections = services.session_protections()
        # Closed trades go to the store (the protections read them there) and are kept here
        # as well, for the report: one per trade_id, as the store keeps them.
        kept: dict[str, ClosedTrade] = {}

        def keep_trade(trade: ClosedTrade) -> None:
            # TradeLike declares settable fields; a frozen ClosedTrade has read-only ones.
            insert_closed_trade(store, trade)  # type: ignore[arg-type]
            kept.setdefault(trade.trade_id, trade)

        engine = services.engine(
            strategy,
            tracker=tracker,
            protections=protections,
            starting_cash=settings.sim.starting_cash,
            listener=listener,
            trade_sink=keep_trade,
        )
        locks: list[Lock] = []

        def on_protection(event: ProtectionEvent) -> None:
            if event.kind == "locked":
                locks.append(event.lock)
            engine.on_protection(event)

        protections.notify = on_protection
        broker.subscribe(engine.on_trade_update)
        engine.after_submit = _forget_finished_orders(tracker, broker)
        if bars is None:
            bars = merged([sim_bars(broker, s, start, end, timeframe) for s in symbols])
        expected = max(1, int((end - start) / timeframe) * len(symbols))
        result = _drive(engine, clock, bars, timeframe, expected, progress, curve_points, stop)
        n_bars, curve, max_dd, max_dd_amount, exposed, seconds, stopped_at = result
        if stopped_at is not None:
            end = stopped_at
        engine.stop()
        final_equity = broker.get_account().equity
        trades = sorted(kept.values(), key=lambda t: (t.closed_at, t.trade_id))  # the store's order
    finally:
        store.close()
    signals = getattr(strategy, "signals", None)
    return BacktestResult(
        strategy=getattr(strategy, "name", type(strategy).__name__),
        symbols=symbols,
        start=start,
        end=end,
        timeframe=timeframe,
        seed=settings.sim.seed,
        data=str(data) if data else "synthetic",
        bars=n_bars,
        starting_cash=Decimal(settings.sim.starting_cash),
        final_equity=final_equity,
        fees=broker.fees_paid,
        max_drawdown=max_dd,
        max_drawdown_amount=max_dd_amount,
        exposure=exposed / n_bars if n_bars else 0.0,
        trades=trades,
        stats=engine.stats.as_dict(),
        locks=locks,
        lock_seconds=_lock_seconds(locks, end),
        refusals=dict(engine.stats.refused),
        equity_curve=curve,
        open_positions=engine.positions(),
        signals=len(signals) if isinstance(signals, list) else None,
        seconds=seconds,
        interrupted_at=stopped_at,
    )


def _forget_finished_orders(tracker: OrderTracker, broker: SimBroker) -> Callable[[], None]:
    """``Engine.after_submit``: every ``FORGET_EVERY`` submits, the tracker and the simulated
    exchange let go of their finished orders (positions, cash and trades are unaffected)."""
    count = 0

    def after_submit() -> None:
        nonlocal count
        count += 1
        if count % FORGET_EVERY == 0:
            tracker.forget_closed()
            broker.archive_finished()

    return after_submit


def _ratio(amount: Decimal, peak: Decimal) -> Decimal:
    """``amount`` as a fraction of ``peak`` (0 when there is no positive peak)."""
    return amount / peak if peak > 0 else ZERO


def _drive(
    engine: Engine,
    clock: Clock,
    bars: Iterable[Bar],
    timeframe: timedelta,
    expected: int,
    progress: Callable[[int, int], None] | None,
    curve_points: int,
    stop: Callable[[], bool] | None = None,
) -> tuple[int, list[EquityPoint], Decimal, Decimal, int, float, datetime | None]:
    """The hot loop: move the clock to each bar's end, hand the bar to the engine, follow
    equity (peak, drawdown) and exposure. Returns (bars, curve, max dd, max dd amount,
    bars with a position, seconds, the time it was stopped at or None). ``stop`` is asked
    every ``_STOP_EVERY`` bars, always after a whole bar."""
    from mqd_cli.clock import RealTimeClock

    stopwatch = RealTimeClock()  # the run's duration for the report, never a market time
    on_bar = engine.on_bar
    sample = max(1, expected // max(1, curve_points))
    report_every = max(1, expected // 200)
    curve: list[EquityPoint] = []
    peak = engine.equity
    max_dd = ZERO
    max_dd_amount = ZERO
    exposed = 0
    n = 0
    now = clock.now()
    start: datetime | None = None  # the start of the last bar, whose end ``now`` may be
    # The cash and market value the drawdown was last followed from: while both are the same
    # objects (no fill, no bar of a held symbol since), equity has not moved.
    cash: Decimal | None = None
    value: Decimal | None = None
    stopped_at: datetime | None = None
    t0 = stopwatch.monotonic()
    # Everything built so far (bars handed in, caches, the store) lives for the whole run:
    # keep it out of the cyclic collector, whose full passes would otherwise rescan it again
    # and again (a third of the time of a million-bar run).
    gc.freeze()
    try:
        for bar in bars:
            if bar.timestamp != start:  # the symbols of one bar time share its end
                start = bar.timestamp
                bar_end = start + timeframe
                if bar_end > now:
                    engine.due = now = bar_end  # the clock follows when something reads it
            on_bar(bar)
            n += 1
            if engine.in_market:
                exposed += 1
                if engine.cash is not cash or engine.market_value is not value:
                    cash, value = engine.cash, engine.market_value
                    equity = cash + value
                    if equity > peak:
                        peak = equity
                    elif equity < peak:
                        amount = peak - equity
                        if amount > max_dd_amount:
                            max_dd_amount = amount
                            max_dd = _ratio(amount, peak)
            else:
                cash = None
                if engine.cash > peak:
                    peak = engine.cash
            if n % sample == 0:
                equity = engine.equity
                curve.append(EquityPoint(now, equity, _ratio(peak - equity, peak)))
            if progress is not None and n % report_every == 0:
                progress(n, expected)
            if stop is not None and not n % _STOP_EVERY and stop():
                stopped_at = now
                break
    finally:
        gc.unfreeze()
    seconds = stopwatch.monotonic() - t0
    engine.sync_clock()
    if progress is not None:
        progress(n, n)
    equity = engine.equity
    curve.append(EquityPoint(now, equity, _ratio(peak - equity, peak)))
    return n, curve, max_dd, max_dd_amount, exposed, seconds, stopped_at


def _lock_seconds(locks: list[Lock], end: datetime) -> float:
    """Time covered by at least one lock (overlaps counted once), up to ``end``."""
    spans = sorted((lock.start, min(lock.end, end)) for lock in locks if lock.start < end)
    total = 0.0
    cur_start: datetime | None = None
    cur_end: datetime | None = None
    for s, e in spans:
        if cur_end is None or s > cur_end:
            if cur_end is not None and cur_start is not None:
                total += (cur_end - cur_start).total_seconds()
            cur_start, cur_end = s, e
        elif e > cur_end:
            cur_end = e
    if cur_end is not None and cur_start is not None:
        total += (cur_end - cur_start).total_seconds()
    return total


# What matplotlib's Agg canvas writes (``FigureCanvasAgg.get_supported_filetypes()``).
PLOT_FORMATS = (
    "eps", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz", "tif", "tiff",
    "webp",
)  # fmt: skip


def check_plot_target(path: str | Path) -> Path:
    """Refuse a ``--plot`` target before the run rather than after it: a format matplotlib
    cannot write, a directory that does not exist or cannot be written, or no matplotlib."""
    import importlib.util
    import os

    target = Path(path).expanduser()
    suffix = target.suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise UsageError(
            f"--plot {path}: cannot write a {suffix or 'suffix-less'} file",
            "end the name with one of: " + ", ".join(f".{k}" for k in PLOT_FORMATS),
        )
    folder = target.parent
    if not folder.is_dir():
        raise UsageError(f"--plot {path}: no directory {folder}", "create it, or pick another")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--plot {path}: {folder} is not writable", "pick a writable directory")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(
            "--plot needs matplotlib, which is not installed",
            "pip install 'mqd[plot]' (or pip install matplotlib)",
        )
    return target


def write_plot(result: BacktestResult, path: str | Path) -> Path:
    """Equity and drawdown chart as PNG (matplotlib, the optional 'plot' extra)."""
    try:
        # matplotlib is the optional 'plot' extra: without it installed there is nothing to check.
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed",
            "pip install 'mqd[plot]' (or pip install matplotlib)",
        ) from None
    path = Path(path).expanduser()
    fig = plot_figure(result, plt)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise UsageError(
            f"cannot write the chart to {path}: {exc.strerror}", "choose a writable --plot path"
        ) from None
    finally:
        plt.close(fig)
    return path


MAX_MARKERS = 2000  # trades marked on the chart at most (the latest), so a long run stays legible


def plot_figure(result: BacktestResult, plt: Any) -> Any:
    """The chart: equity with entry and exit markers and the lock periods, drawdown below, and
    a legend naming each."""
    import bisect

    times = [p.at for p in result.equity_curve]
    equity = [float(p.equity) for p in result.equity_curve]
    drawdown = [-float(p.drawdown) * 100 for p in result.equity_curve]  # floats for plotting
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 6), gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot(times, equity, color="tab:blue", linewidth=1, label="equity")
    top.axhline(
        float(result.starting_cash),
        color="grey",
        linewidth=0.6,
        linestyle="--",
        label="starting cash",
    )

    def at(t: datetime) -> float:
        i = bisect.bisect_right(times, t) - 1
        return equity[max(0, min(i, len(equity) - 1))]

    trades = result.trades[-MAX_MARKERS:]
    if trades and times:
        top.scatter(
            [t.opened_at for t in trades],
            [at(t.opened_at) for t in trades],
            marker="^",
            s=18,
            color="tab:green",
            label="entry",
            zorder=3,
        )
        for won, color, label in (
            (True, "tab:olive", "exit, won"),
            (False, "tab:red", "exit, lost"),
        ):
            exits = [t for t in trades if (t.pnl > 0) is won]
            if exits:
                top.scatter(
                    [t.closed_at for t in exits],
                    [at(t.closed_at) for t in exits],
                    marker="v",
                    s=18,
                    color=color,
                    label=label,
                    zorder=3,
                )
    top.set_ylabel("equity")
    top.ticklabel_format(axis="y", style="plain", useOffset=False)
    marked = f" (the last {len(trades)} marked)" if len(trades) < len(result.trades) else ""
    title = (
        f"{result.strategy} on {', '.join(result.symbols)}: net {result.net_pnl:,.2f}, "
        f"max drawdown {result.max_drawdown * 100:.2f}%, {len(result.trades)} trades{marked}"
    )
    top.set_title(title)
    for n, lock in enumerate(result.locks):
        top.axvspan(
            lock.start,
            min(lock.end, result.end),
            color="tab:red",
            alpha=0.12,
            label="protection lock" if n == 0 else None,
        )
    top.legend(loc="best", fontsize="small")
    bottom.fill_between(
        times, drawdown, 0, color="tab:red", alpha=0.4, step="post", label="drawdown"
    )
    bottom.set_ylabel("drawdown %")
    bottom.legend(loc="lower left", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
