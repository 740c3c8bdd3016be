"""`mqd run`: the paper-trading loop with every safety system in the path."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mqd_cli.commands._common import ConfigOpt, JsonLinesOpt, VerboseOpt, cli, exits
from mqd_cli.commands.output import Output
from mqd_cli.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.text import Text

    from mqd_cli.trading.engine import EngineEvent, EventKind
    from mqd_cli.trading.live import LiveSession, RunSummary

# The engine is imported when `mqd run` runs, not when the CLI starts: the event tables too.


@functools.cache
def _line_events() -> frozenset[EventKind]:
    """Events worth a line when the dashboard is not drawn (a pipe, a log file, --json)."""
    from mqd_cli.trading.engine import EventKind as K

    return frozenset(
        {
            K.INFO,
            K.WARNING,
            K.SUBMITTED,
            K.WOULD_SUBMIT,
            K.FILL,
            K.TRADE,
            K.REFUSED,
            K.ADJUSTED,
            K.PROTECTION,
            K.SUBMIT_UNCERTAIN,
            K.ERROR,
        }
    )


@functools.cache
def _styles() -> dict[EventKind, str]:
    from mqd_cli.trading.engine import EventKind as K

    return {
        K.FILL: "green",
        K.TRADE: "cyan",
        K.REFUSED: "yellow",
        K.PROTECTION: "bold red",
        K.ERROR: "red",
        K.WARNING: "yellow",
        K.WOULD_SUBMIT: "magenta",
        K.ADJUSTED: "yellow",
    }


def register(app: typer.Typer) -> None:
    @app.command("run")
    @exits(
        ok="stopped (duration, SIGTERM)",
        broker="broker unreachable",
        state="refused to start (drift, stream lease held, no symbols) or the store failed",
    )
    def run_cmd(
        duration: Annotated[
            str | None,
            typer.Option(
                "--duration",
                help="Stop by itself after this long in market time, e.g. 2h (default:"
                " [run] duration; 0s = until Ctrl-C).",
                show_default=False,
            ),
        ] = None,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Everything but the submit: intents that pass every"
                " check are shown, nothing is sent.",
            ),
        ] = False,
        cancel_on_exit: Annotated[
            bool | None,
            typer.Option(
                "--cancel-on-exit/--keep-orders",
                help="Cancel our open orders at shutdown (default: [run] cancel_on_exit).",
                show_default=False,
            ),
        ] = None,
        adopt: Annotated[
            bool,
            typer.Option(
                "--adopt",
                help="Start despite unexplained drift: adopt orphan orders"
                " and accept the broker's positions.",
            ),
        ] = False,
        halt: Annotated[
            bool,
            typer.Option(
                "--halt",
                help="Start with the risk gate halted: watch only, every order is refused.",
            ),
        ] = False,
        session_name: Annotated[
            str | None,
            typer.Option(
                "--session",
                metavar="NAME",
                help='Name the sim session this run keeps (broker = "sim"; default: the UTC'
                " time it starts). `mqd orders --session NAME` and the like read it back.",
                show_default=False,
            ),
        ] = None,
        config: ConfigOpt = None,
        json_out: JsonLinesOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Run the trading loop: strategy, protections, risk gate, symbol checks, broker.

        Start-up reconciles against the broker (refuses to start on unexplained drift unless
        --adopt), loads symbol properties, restores protections and the order journal, takes
        the stream lease (Alpaca) and warms the strategy up. With broker = "sim" (the default)
        it trades offline against the simulated exchange at [sim] speed. A live dashboard
        shows equity, PnL, positions, open orders, fills, locks, throttle and stream health;
        --json prints every event as a JSON line instead, then a summary line.

        Ctrl-C or SIGTERM stops cleanly: no new orders, open orders canceled when asked, the
        lease released, a summary printed. A second Ctrl-C exits at once; the journal is
        already on disk.

        Example: mqd run --config config.example.toml
        """
        from mqd_cli.durations import parse_duration
        from mqd_cli.trading.live import RunOptions, StopReason

        span = None
        if duration is not None:
            try:
                span = parse_duration(duration)
            except ValueError as exc:
                raise UsageError(f"--duration: {exc}", "for example --duration 2h") from None
        options = RunOptions(
            duration=span, dry_run=dry_run, cancel_on_exit=cancel_on_exit, adopt=adopt, halt=halt
        )
        with quiet_logs(verbose), cli(config, json_out, verbose) as c:
            loaded = c.services.loaded
            base_dir = loaded.path.parent if loaded is not None and loaded.path else None
            view = _View(c.out, json_out)
            session = c.services.live_session(
                options,
                listener=view.event,
                on_tick=view.tick,
                base_dir=base_dir,
                session=session_name,
            )
            try:
                session.prepare()
                summary = _run(session, view)
            finally:
                view.close()
                session.close()
            view.summary(summary)
            if session.stop_reason is StopReason.INTERRUPTED:
                raise typer.Exit(int(ExitCode.INTERRUPTED))


@contextmanager
def quiet_logs(verbose: bool) -> Iterator[None]:
    """The dashboard and event lines already say what the services log: their log records
    stay off stderr for the run (--verbose shows them from info up, --log-level from its
    level); the [log] file gets them all the same."""
    from mqd_cli.commands._common import quiet_stderr

    with quiet_stderr():
        yield


def _run(session: LiveSession, view: _View) -> RunSummary:
    import asyncio

    from mqd_cli.trading.live import StopReason

    presses = {"n": 0}

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        presses["n"] += 1
        if presses["n"] > 1:
            # The journal is committed event by event: nothing is lost by leaving now.
            os.write(2, b"\ninterrupted again: exiting now (the journal is on disk)\n")
            os._exit(int(ExitCode.INTERRUPTED))
        os.write(2, b"\nstopping (Ctrl-C again to exit at once)...\n")
        session.request_stop(StopReason.INTERRUPTED)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        session.request_stop(StopReason.SIGTERM)

    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    for sig, handler in ((signal.SIGINT, on_sigint), (signal.SIGTERM, on_sigterm)):
        with contextlib.suppress(ValueError):  # not the main thread (an embedding runner)
            previous[sig] = signal.signal(sig, handler)
    try:
        view.start(session)
        return asyncio.run(session.run())
    finally:
        for sig, saved in previous.items():
            signal.signal(sig, saved)


class _View:
    """JSON lines, plain event lines, or the rich live dashboard (on a terminal)."""

    def __init__(self, out: Output, json_out: bool):
        self.out = out
        self.json = json_out
        self.live: Live | None = None
        self.dashboard = not json_out and out.stdout.isatty()
        self._console: Console | None = None if json_out else out.console()

    def start(self, session: LiveSession) -> None:
        if not self.dashboard:
            return
        from rich.live import Live

        live = self.live = Live(
            _dashboard(session, self._rows()),
            console=self._console,
            refresh_per_second=4,
            transient=False,
        )
        live.start()

    def event(self, event: EngineEvent) -> None:
        from mqd_cli.trading.engine import EventKind

        _log_event(event)
        if self.json:
            self.out.json_line(event.as_dict())
            return
        kind = event.kind
        if kind not in _line_events():
            return
        if kind in (EventKind.INFO, EventKind.WARNING) and self.live is None:
            self.out.info(("warning: " if kind is EventKind.WARNING else "") + event.message)
            return
        if self.dashboard:
            if self.live is not None and kind in (
                EventKind.WARNING,
                EventKind.ERROR,
                EventKind.PROTECTION,
            ):
                self.live.console.print(_line(event))
            return
        if self._console is not None:  # set outside --json
            self._console.print(_line(event))

    def tick(self, session: LiveSession) -> None:
        if self.live is not None:
            self.live.update(_dashboard(session, self._rows()))

    def _rows(self) -> int | None:
        return self._console.size.height if self._console is not None else None

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def summary(self, summary: RunSummary) -> None:
        if self.json:
            self.out.json_line(summary.as_dict())
            return
        _render_summary(self.out, summary)


@functools.cache
def _logged_events() -> dict[EventKind, int]:
    """Events that become log records too (level by kind), so [log] file tells the run's
    story; the others (info, warnings, refusals, protections) are logged where they happen."""
    import logging

    from mqd_cli.trading.engine import EventKind as K

    info = logging.INFO
    return {
        K.SUBMITTED: info,
        K.WOULD_SUBMIT: info,
        K.ADJUSTED: info,
        K.FILL: info,
        K.TRADE: info,
        K.SUBMIT_UNCERTAIN: logging.WARNING,
        K.ERROR: logging.ERROR,
    }


def _log_event(event: EngineEvent) -> None:
    import logging

    level = _logged_events().get(event.kind)
    if level is not None:
        logging.getLogger("mqd.run.events").log(
            level, "%s", event.message, extra={"event": event.kind.value}
        )


def _line(event: EngineEvent) -> Text:
    from rich.text import Text

    style = _styles().get(event.kind, "")
    text = Text(f"{event.at:%m-%d %H:%M:%S} ", style="dim")
    text.append(f"{event.kind:<12} ", style=style or "bold")
    text.append(event.message)
    return text


def _num(value: Decimal | None) -> str:
    from mqd_cli.trading.engine import _num as n

    return n(value)


# Below this many terminal rows the dashboard drops table borders and titles and shows fewer
# rows, so everything (the protections and the last refusal included) fits 80x24.
COMPACT_BELOW_ROWS = 40


def _dashboard(session: LiveSession, height: int | None = None) -> RenderableType:
    """The live view. ``height`` is the terminal's rows (None: full size)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    compact = height is not None and height < COMPACT_BELOW_ROWS
    rows = 3 if compact else 6
    snap = session.snapshot()
    st = snap["stats"]
    head = Text()
    head.append("mqd run ", style="bold")
    head.append(f"{'sim' if session.is_sim else 'alpaca'} ", style="cyan")
    head.append(f"{snap['market_now']:%Y-%m-%d %H:%M:%S} UTC  ")
    head.append(f"equity {snap['equity']:,.2f}  ")
    pnl = snap["pnl"]
    head.append(f"PnL {pnl:+,.2f}", style="green" if pnl >= 0 else "red")
    head.append(f"  risk {snap['risk_state']}")
    if snap["dry_run"]:
        head.append("  DRY RUN", style="magenta")
    counts = Text(
        f"bars {st.bars}  intents {st.intents}  sent {st.submitted}  fills {st.fills}  "
        f"trades {st.trades} (won {st.wins})  refused {st.refused_total}"
        + (f" ({', '.join(f'{k} {v}' for k, v in st.refused.items())})" if st.refused else ""),
        overflow="ellipsis",
        no_wrap=compact,
    )

    def table(title: str, columns: tuple[str, ...], total: int) -> Table:
        if not compact:
            t = Table(title=title, title_justify="left")
            for col in columns:
                t.add_column(col)
            return t
        # compact: the title is the first column's header, no borders; "+n" when cut
        more = f" +{total - rows}" if total > rows else ""
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
        t.add_column(f"{title}{more}", style="bold", no_wrap=True)
        for col in columns[1:]:
            t.add_column(col, no_wrap=True, overflow="ellipsis")
        return t

    positions = list(snap["positions"].items())
    pos = table("positions", ("symbol", "qty", "avg", "last"), len(positions))
    for sym, (q, avg, last) in positions[:rows] if compact else positions:
        pos.add_row(sym, _num(q), _num(avg), _num(last))
    open_orders = snap["open_orders"]
    orders = table(
        "open orders", ("client_order_id", "side", "qty", "symbol", "status"), len(open_orders)
    )
    for o in open_orders[:rows]:
        orders.add_row(o.client_order_id, o.side.value, _num(o.qty), o.symbol, o.status.value)
    last_fills = list(reversed(snap["fills"]))
    fills = table("last fills", ("time", "side", "qty", "symbol", "price"), len(last_fills))
    for f in last_fills[:rows] if compact else last_fills:
        fills.add_row(f"{f.timestamp:%H:%M:%S}", f.side.value, _num(f.qty), f.symbol, _num(f.price))
    locks: Any
    if compact:  # one line: every active lock, shortest form
        active = [f"{lk.protection} {lk.target} until {lk.end:%H:%M}" for lk in snap["locks"]]
        locks = Text(
            "protections: " + ("; ".join(active) if active else "no active lock"),
            style="red" if active else "",
            overflow="ellipsis",
            no_wrap=True,
        )
    else:
        locks = table("protections", ("protection", "scope", "until", "reason"), 0)
        for lk in snap["locks"]:
            locks.add_row(lk.protection, lk.target, f"{lk.end:%H:%M:%S}", lk.reason)
        if not snap["locks"]:
            locks.add_row("-", "no active lock", "", "")
    parts: list[Any] = [head, counts, pos, orders, fills, locks]
    health = []
    if snap["stream"] is not None:
        s = snap["stream"]
        health.append(
            f"stream {'connected' if s['connected'] else 'DISCONNECTED'}, "
            f"{s['reconnects']} reconnects, {sum(s['events'].values())} events"
        )
    if snap["throttle"]:
        health.append(
            "throttle "
            + ", ".join(
                f"{t.name} {getattr(t, 'used', '?')}/{getattr(t, 'limit', '?')}"
                for t in snap["throttle"][:3]
            )
        )
    if health:
        parts.append(Text("  ".join(health), style="dim", overflow="ellipsis", no_wrap=compact))
    if snap["refusals"]:
        r = snap["refusals"][-1]
        parts.append(
            Text(
                f"last refusal: {r.stage} ({r.rule}): {r.reason}",
                style="yellow",
                overflow="ellipsis",
                no_wrap=compact,
            )
        )
    return Group(*parts)


def _render_summary(out: Output, summary: RunSummary) -> None:
    d = summary.as_dict()
    refused = ", ".join(f"{k} {v}" for k, v in d["refused"].items()) or "none"
    positions = ", ".join(f"{s} {_num(q)}" for s, q in d["positions"].items()) or "flat"
    locks = (
        "; ".join(
            f"{lk['protection']} on {lk['scope']} until {lk['until']:%H:%M}"
            for lk in d["active_locks"]
        )
        or "none"
    )
    rows = [
        (
            "stopped",
            f"{d['reason']} at {d['stopped_at']:%Y-%m-%d %H:%M:%S} UTC"
            f" (started {d['started_at']:%H:%M:%S})",
        ),
        ("bars", d["bars"]),
        (
            "orders",
            f"{d['intents']} intents, {d['submitted']} sent"
            + (f", {d['would_submit']} would be sent (dry run)" if d["dry_run"] else "")
            + f", {d['fills']} fills",
        ),
        (
            "trades",
            f"{d['trades']} ({d['wins']} won, {d['stop_losses']} stop-losses),"
            f" realized {d['realized_pnl']:,.2f}",
        ),
        ("equity", f"{d['equity_start']:,.2f} -> {d['equity_end']:,.2f} ({d['pnl']:+,.2f})"),
        ("refused", refused),
        ("protection locks", f"{d['protection_locks']} placed; active: {locks}"),
        ("positions", positions),
        (
            "open orders",
            f"{d['open_orders']}"
            + (f" ({d['canceled_at_exit']} canceled at exit)" if d["canceled_at_exit"] else ""),
        ),
        ("journal", d["store"]),
    ]
    if d["stream"]:
        s = d["stream"]
        rows.append(
            (
                "stream",
                f"{s['connects']} connects, {s['reconnects']} reconnects, "
                f"{s['gap_fill_fills']} fills from gap fill",
            )
        )
    if d["notify"]:
        n = d["notify"]
        rows.append(("discord", f"{n['sent']} sent, {n['failed']} failed, {n['dropped']} dropped"))
    out.table("mqd run summary", ("", ""), rows)
