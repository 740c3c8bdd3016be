"""`mqd backtest`: the trading engine over historical or synthetic bars."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits
from mqd_cli.commands.run import quiet_logs
from mqd_cli.errors import ExitCode, MqdError, UsageError


def parse_when(text: str, option: str) -> datetime:
    """RFC 3339 or ``YYYY-MM-DD[ HH:MM[:SS]]``; a time without a zone is UTC."""
    from mqd_cli.wire.parse import as_utc

    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not a date or time",
            f"use RFC 3339 or YYYY-MM-DD, for example {option} 2026-01-05",
        ) from None
    return as_utc(value)


def _symbols(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [s.strip().upper() for v in values for s in v.split(",") if s.strip()]
    return out or None


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    @exits(
        usage="bad options, config or data file",
        interrupted="interrupted (Ctrl-C or SIGTERM: a partial report)",
    )
    def backtest_cmd(
        data: Annotated[
            Path | None,
            typer.Option(
                "--data",
                help="CSV of bars (timestamp,open,high,low,close,volume[,symbol]); fills use it.",
                show_default=False,
            ),
        ] = None,
        synthetic: Annotated[
            bool,
            typer.Option("--synthetic", help="Use the simulator's seeded random walk (default)."),
        ] = False,
        start: Annotated[
            str | None,
            typer.Option(
                "--from", help="First bar (RFC 3339 or YYYY-MM-DD, UTC).", show_default=False
            ),
        ] = None,
        end: Annotated[
            str | None,
            typer.Option(
                "--to",
                help="End, exclusive (default: --from + [backtest] period, or the end of --data).",
                show_default=False,
            ),
        ] = None,
        symbols: Annotated[
            list[str] | None,
            typer.Option(
                "--symbols",
                help="Symbols (comma-separated or repeated; default:"
                " [strategy] symbols, or every symbol of --data).",
                show_default=False,
            ),
        ] = None,
        seed: Annotated[
            int | None,
            typer.Option(
                "--seed", help="Seed of prices and fills (default: [sim] seed).", show_default=False
            ),
        ] = None,
        plot: Annotated[
            Path | None,
            typer.Option(
                "--plot",
                help="Write an equity and drawdown chart (PNG; needs the"
                " 'plot' extra: pip install 'mqd[plot]').",
                show_default=False,
            ),
        ] = None,
        trades: Annotated[
            int, typer.Option("--trades", help="Trades listed in the report (last N).", min=0)
        ] = 10,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Run the trading loop over historical or synthetic bars and report the results.

        The same engine as `mqd run` (strategy, protections, risk gate, symbol checks, order
        tracker) on a simulated clock against the simulated exchange, whose fills come from
        the same bars, with [sim] fee_per_share and slippage_bps. The report: trades, win
        rate, PnL, max drawdown of equity, exposure, protection triggers and lock time, and
        every refused order by stage. Same data and seed, same result.

        A symbol missing from --data is refused at once. Ctrl-C or SIGTERM stops after the
        current bar with a partial report (exit 130).

        Example: mqd backtest --synthetic --from 2026-01-05 --to 2026-01-10 --plot equity.png
        """
        from dataclasses import replace

        from mqd_cli.brokers.sim.prices import DEFAULT_ORIGIN, CsvPrices
        from mqd_cli.factory import Services
        from mqd_cli.trading.backtest import csv_span

        if data is not None and synthetic:
            raise UsageError("--data and --synthetic exclude each other", "pick one source")
        with quiet_logs(verbose), cli(config, json_out, verbose) as c:
            if plot is not None:
                from mqd_cli.trading.backtest import check_plot_target

                check_plot_target(plot)  # before the run, not after it
            settings = c.settings
            if seed is not None:
                settings = replace(settings, sim=replace(settings.sim, seed=seed))
            chosen = _symbols(symbols)
            first = last = None
            if data is not None:
                probe = Services(settings).backtest_session(DEFAULT_ORIGIN, data).sim_broker
                prices = probe.prices
                assert isinstance(prices, CsvPrices), "--data replays a CSV"
                in_file = sorted(prices.symbols)
                if chosen is None:
                    wanted = [s for s in settings.strategy.symbols if s.upper() in in_file]
                    chosen = wanted or in_file
                span = csv_span(probe, chosen)
                if span is not None:
                    first, last = span
            if start is not None:
                begin = parse_when(start, "--from")
            elif first is not None:
                begin = first
            elif settings.backtest.start:
                begin = parse_when(settings.backtest.start, "[backtest] start")
            else:
                begin = DEFAULT_ORIGIN
            if end is not None:
                finish = parse_when(end, "--to")
            elif last is not None:
                finish = last
            else:
                finish = begin + settings.backtest.period
            loaded = c.services.loaded
            base_dir = loaded.path.parent if loaded is not None and loaded.path else None
            progress = _progress(c.out)
            began = c.services.clock.now()
            try:
                with _stop_on_signals() as stop:
                    result = Services(settings, loaded=loaded).backtest(
                        start=begin,
                        end=finish,
                        symbols=chosen,
                        data=data,
                        base_dir=base_dir,
                        progress=progress.update if progress else None,
                        stop=stop.is_set,
                    )
            finally:
                if progress:
                    progress.close()
            run_id = _keep(c, result, began)
            if plot is not None:
                from mqd_cli.trading.backtest import write_plot

                write_plot(result, plot)
            if json_out:
                doc = result.as_dict()
                if plot is not None:
                    doc["plot"] = str(plot)
                doc["run_id"] = run_id
                c.out.json(doc)
            else:
                render(c.out, result, trades)
                if plot is not None:
                    c.out.line(f"chart written to {plot}")
            if run_id is not None:
                c.out.info(f"kept as run {run_id}: mqd runs --run {run_id}")
            if result.interrupted_at is not None:
                c.out.info(
                    f"interrupted at {result.interrupted_at:%Y-%m-%d %H:%M} UTC: the report"
                    " covers the bars up to then"
                )
                raise typer.Exit(int(ExitCode.INTERRUPTED))


def _keep(c, result, began: datetime) -> int | None:
    """Keep the result's summary in the configured store (`mqd runs`); a store that cannot be
    written is a warning: the report is still printed."""
    from mqd_cli.errors import storage_error
    from mqd_cli.history.runs import record_backtest

    try:
        return record_backtest(
            c.services.store,
            result=result,
            settings=c.settings,
            recorded_at=began,
            finished_at=c.services.clock.now(),
        )
    except Exception as exc:
        problem = exc if isinstance(exc, MqdError) else storage_error(exc)
        if problem is None:
            raise
        c.out.warn(f"the result was not kept in the store: {problem.message}")
        return None


class _Bar:
    """A rich progress bar on stderr (only on a terminal)."""

    def __init__(self, out):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("backtest"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} bars"),
            TimeRemainingColumn(),
            console=Console(file=out.stderr),
            transient=True,
        )
        self.task = self.progress.add_task("bars", total=1)
        self.progress.start()

    def update(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=max(total, done))

    def close(self) -> None:
        self.progress.stop()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C and SIGTERM ask the backtest to stop after the bar it is at (a partial report
    follows, then exit 130); a second one stops at once."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach the main thread only: nothing to install
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _progress(out):
    if not out.stderr.isatty():
        return None
    return _Bar(out)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _money(value) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _span(value) -> str:
    from mqd_cli.durations import format_span

    return format_span(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def render(out, result, n_trades: int) -> None:
    from mqd_cli.trading.engine import _num

    d = result.as_dict(trades=False)
    m = d["metrics"]
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(d["exit_reasons"].items())) or "-"
    triggers = ", ".join(f"{k} {v}" for k, v in sorted(d["protection_triggers"].items())) or "none"
    refused = ", ".join(f"{k} {v}" for k, v in sorted(d["refused"].items())) or "none"
    positions = ", ".join(f"{s} {_num(q)}" for s, q in d["open_positions"].items()) or "flat"
    rows = [
        ("strategy", f"{d['strategy']} on {', '.join(d['symbols'])}"),
        *(
            [("interrupted", f"at {d['interrupted_at']:%Y-%m-%d %H:%M} UTC (partial report)")]
            if d["interrupted_at"] is not None
            else []
        ),
        (
            "period",
            f"{d['start']:%Y-%m-%d %H:%M} .. {d['end']:%Y-%m-%d %H:%M} UTC"
            f" ({d['bars']:,} bars, {d['data']}, seed {d['seed']})",
        ),
        ("orders", f"{d['orders']['submitted']} sent, {d['orders']['fills']} fills"),
        ("trades", f"{d['trades_count']} ({reasons})"),
        ("win rate", _pct(d["win_rate"])),
        ("realized PnL", f"{result.realized_pnl:,.2f}"),
        (
            "net PnL",
            f"{result.net_pnl:,.2f} (equity {result.final_equity:,.2f}, fees {result.fees:,.2f})",
        ),
        ("max drawdown", f"{_pct(d['max_drawdown'])} ({result.max_drawdown_amount:,.2f})"),
        ("longest drawdown", _span(m["longest_drawdown"])),
        (
            "Sharpe / Sortino",
            f"{_ratio(m['sharpe'])} / {_ratio(m['sortino'])}"
            f" ({m['daily_returns']} daily returns, annualised)",
        ),
        (
            "profit factor",
            f"{_ratio(m['profit_factor'])} (expectancy {_money(m['expectancy'])} a trade)",
        ),
        ("exposure", _pct(d["exposure"])),
        ("protection triggers", triggers),
        ("lock time", d["lock_time"]),
        ("refused orders", refused),
        ("open positions", positions),
        ("speed", f"{d['bars'] / d['seconds']:,.0f} bars/s" if d["seconds"] else "-"),
    ]
    out.table("Backtest", ("metric", "value"), rows)
    if len(d["by_symbol"]) > 1:
        out.table(
            "By symbol",
            ("symbol", "trades", "win rate", "pnl"),
            [
                (sym, st["trades"], _pct(st["win_rate"]), f"{st['pnl']:,.2f}")
                for sym, st in d["by_symbol"].items()
            ],
        )
    if n_trades and result.trades:
        shown = result.trades[-n_trades:]
        out.table(
            f"Trades (last {len(shown)} of {len(result.trades)})",
            ("closed", "symbol", "side", "qty", "entry", "exit", "pnl", "reason"),
            [
                (
                    f"{t.closed_at:%m-%d %H:%M}",
                    t.symbol,
                    t.side,
                    _num(t.qty),
                    _num(t.entry_price),
                    _num(t.exit_price),
                    f"{t.pnl:,.2f}",
                    t.exit_reason,
                )
                for t in shown
            ],
        )
    if result.locks:
        shown_locks = min(10, len(result.locks))
        out.table(
            "Protection locks"
            + (
                f" (last {shown_locks} of {len(result.locks)})"
                if shown_locks < len(result.locks)
                else ""
            ),
            ("protection", "scope", "from", "until", "reason"),
            [
                (
                    lock.protection,
                    lock.target,
                    f"{lock.start:%m-%d %H:%M}",
                    f"{lock.end:%m-%d %H:%M}",
                    lock.reason.split(";")[0],
                )
                for lock in result.locks[-10:]
            ],
        )
