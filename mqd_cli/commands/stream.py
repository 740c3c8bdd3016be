"""`mqd stream tail`: watch order events (fills) live, from the journal or the stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonLinesOpt, VerboseOpt, cli, exits

if TYPE_CHECKING:
    from mqd_cli.stream.tail import TailEvent

# event -> (label, rich style); fills and partial fills must differ even without colour.
_STYLES = {
    "fill": ("FILL", "bold green"),
    "partial_fill": ("partial_fill", "yellow"),
    "new": ("new", "cyan"),
    "accepted": ("accepted", "cyan"),
    "pending_new": ("pending_new", "cyan"),
    "canceled": ("canceled", "red"),
    "expired": ("expired", "red"),
    "rejected": ("rejected", "bold red"),
    "done_for_day": ("done_for_day", "red"),
    "replaced": ("replaced", "magenta"),
    "trade_bust": ("TRADE_BUST", "bold red"),
}


def _num(value) -> str:
    return "-" if value is None else f"{value.normalize():f}"


def render_line(ev: TailEvent) -> str:
    """One rich-markup line: time, event, symbol, side, filled/ordered, price, order id."""
    from rich.markup import escape

    label, style = _STYLES.get(ev.event, (ev.event, "white"))
    when = ev.time.strftime("%H:%M:%S.%f")[:-3] if ev.time else "--:--:--.---"
    size = f"{_num(ev.filled_qty)}/{_num(ev.order_qty)}"
    price = f"@ {_num(ev.price)}" if ev.price is not None else ""
    exec_qty = f"+{_num(ev.qty)}" if ev.qty is not None else ""
    source = "" if ev.source in ("stream", "direct") else f" [dim]({escape(ev.source)})[/]"
    text = (
        f"{when}  {label:<13} {ev.symbol:<9} {ev.side:<4} {size:>13} {price:<14}"
        f" {exec_qty:<8} {ev.order_id[:8]}"
    )
    return f"[{style}]{escape(text)}[/]{source}"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Watch live trade updates (fills).\n\nExample: mqd stream tail --events fill",
        no_args_is_help=True,
    )

    @group.command("tail")
    @exits(
        ok="done, or stopped by Ctrl-C",
        usage='bad option, or broker = "sim" with no holder and no --journal',
        broker="the stream refused the API keys",
    )
    def tail_cmd(
        symbol: Annotated[
            list[str] | None,
            typer.Option(
                "--symbol", "-s", metavar="SYMBOL", help="Only this symbol (repeat for more)."
            ),
        ] = None,
        events: Annotated[
            str | None,
            typer.Option(
                metavar="EVENTS", help="Only these events, comma-separated: fill,partial_fill,..."
            ),
        ] = None,
        since: Annotated[
            str | None,
            typer.Option(
                metavar="DURATION", help="First replay the journal of this long ago (10m, 2h, 1d)."
            ),
        ] = None,
        count: Annotated[
            int | None, typer.Option(metavar="N", help="Exit after N events (for scripts).", min=1)
        ] = None,
        direct: Annotated[
            bool,
            typer.Option(
                "--direct",
                help="Connect to the stream even when another process holds it (it may be"
                " refused with 429 or displace that holder).",
            ),
        ] = False,
        journal: Annotated[
            bool,
            typer.Option(
                "--journal", help="Only follow the journal; never connect (works with broker sim)."
            ),
        ] = False,
        session: Annotated[
            str | None,
            typer.Option(
                "--session",
                metavar="NAME",
                help="Follow this kept sim session's journal (implies --journal; with broker ="
                ' "sim" --journal reads the latest session).',
                show_default=False,
            ),
        ] = None,
        config: ConfigOpt = None,
        json_out: JsonLinesOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Watch order events live: one line per event, partial fills apart from fills.

        While a process (`mqd run`) holds the account's trade_updates stream, tail follows
        that holder's order journal and never opens a second connection (Alpaca allows one
        per account). With no live holder it connects directly (broker = "alpaca"), writes
        nothing, and hands over to the journal as soon as a holder appears. --direct forces
        the connection; --journal never connects. The source and reconnects are reported on
        stderr; Ctrl-C prints a one-line summary. With --json, stdout carries one JSON object
        per event. With broker = "sim" each `mqd run` keeps its journal as a sim session:
        --journal follows the latest, --session NAME another; --since counts back from the
        session's own time.

        Example: mqd stream tail --events fill,partial_fill --since 10m
        """
        import asyncio
        import contextlib
        import logging
        import signal

        from mqd_cli.durations import parse_duration
        from mqd_cli.errors import UsageError
        from mqd_cli.stream.tail import StreamTail, TailFilter, parse_events

        if direct and session is not None:
            raise UsageError(
                "--direct and --session exclude each other",
                "--session reads a sim session's journal; --direct connects to the stream",
            )
        if direct and journal:
            raise UsageError(
                "--direct and --journal exclude each other",
                "--direct connects to the stream, --journal only reads the journal: pick one",
            )
        span = None
        if since:
            try:
                span = parse_duration(since)
            except ValueError as exc:
                raise UsageError(f"--since: {exc}", "for example --since 10m or 2h") from None
        filt = TailFilter(
            symbols=frozenset(s.strip().upper() for s in symbol or () if s.strip()),
            events=parse_events(events),
        )
        with cli(config, json_out, verbose, announce_defaults=False) as c:
            out = c.out
            console = None if json_out else out.console()

            def emit(ev: TailEvent) -> None:
                if json_out:
                    out.json_line(ev.as_dict())
                elif console is not None:
                    console.print(render_line(ev))
                    out.stdout.flush()

            def status(text: str) -> None:
                out.info(f"tail: {text}")

            services = c.services.reading(session)
            if services.session_name is not None:
                journal = journal or session is not None
                if journal:
                    out.info(f"tail: sim session {services.session_name}")
            tail = StreamTail(
                services,
                emit=emit,
                status=status,
                filt=filt,
                count=count,
                since=span,
                direct=direct,
                journal=journal,
            )
            if direct:
                out.warn("--direct opens a connection even if `mqd run` holds the stream")

            async def main() -> None:
                loop = asyncio.get_running_loop()
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(signal.SIGTERM, tail.stop)
                try:
                    await tail.run()
                finally:
                    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                        loop.remove_signal_handler(signal.SIGTERM)

            stream_log = logging.getLogger("mqd.stream")
            level = stream_log.level
            if not verbose:  # the status lines say it once, in plain words
                stream_log.setLevel(logging.ERROR)
            try:
                asyncio.run(main())
            except KeyboardInterrupt:
                pass
            finally:
                stream_log.setLevel(level)
            out.info(tail.summary())

    app.add_typer(group, name="stream")
