"""`mqd throttle stats`: how close every API budget is to its limit, across all mqd processes."""

from __future__ import annotations

from typing import Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits

COLUMNS = (
    "limit",
    "limit/window",
    "used now",
    "remaining",
    "requests",
    "waits",
    "wait mean/max",
    "429s",
    "last 429",
)


def _seconds(s: float) -> str:
    if s <= 0:
        return "0"
    return f"{s * 1000:.0f}ms" if s < 1 else f"{s:.1f}s"


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else ""


def _short(dt, now) -> str:
    if dt is None:
        return ""
    return dt.strftime("%H:%M:%S" if dt.date() == now.date() else "%m-%d %H:%M")


def _rows(stats, now) -> list[list[str]]:
    from mqd_cli.durations import format_duration

    rows = []
    for s in stats:
        if s.limit:
            budget = f"{s.limit}/{format_duration(s.window)}"
            if s.budget != s.limit:
                budget += f" ({s.budget})"
        else:
            budget = "not configured"
        last = _short(s.last_429, now)
        if s.hold_until is not None:
            last += f" (held to {_short(s.hold_until, now)})"
        rows.append(
            [
                s.name,
                budget,
                str(s.used) + (f" +{s.queued}q" if s.queued else ""),
                str(s.remaining),
                str(s.requests),
                str(s.waits),
                f"{_seconds(s.wait_mean)}/{_seconds(s.wait_max)}",
                str(s.rate_limited),
                last,
            ]
        )
    return rows


def _table(stats, now, title: str):
    from rich import box
    from rich.table import Table

    t = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in COLUMNS:
        t.add_column(col, no_wrap=col == "limit")
    for row in _rows(stats, now):
        t.add_row(*row)
    return t


def _doc(stats, settings, now) -> dict:
    return {
        "at": now,
        "shared": settings.throttle.shared,
        "safety_margin": settings.throttle.safety_margin,
        "limits": [_limit_doc(s) for s in stats],
    }


def _limit_doc(s) -> dict:
    from mqd_cli.commands.output import to_jsonable

    doc = to_jsonable(s)
    doc["window_seconds"] = s.window.total_seconds()
    doc["wait_mean"] = s.wait_mean
    return doc


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Show every API budget and how close it is to its limit.\n\n"
        "Example: mqd throttle stats",
        no_args_is_help=True,
    )

    @group.command("stats")
    @exits(ok="shown", usage="a bad [throttle] config")
    def stats_cmd(
        watch: Annotated[
            bool, typer.Option("--watch", "-w", help="Refresh in place until Ctrl-C.")
        ] = False,
        interval: Annotated[
            float,
            typer.Option("--interval", min=0.1, max=3600, help="Seconds between refreshes."),
        ] = 1.0,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Show each budget: limit/window, used now, remaining, requests, waits, 429s.

        Reads the store only (no network), so it works while `mqd run` or a cron job
        spends the budget in another process. "limit/window" shows in parentheses what the
        throttler actually admits per window (the limit less the safety margin); "used now"
        counts the last window (with shared = false, only the counters are visible from
        another process). After a 429, "last 429" adds "(held to HH:MM:SS)" until the
        server's reset. With --watch the table refreshes in place (JSON lines with --json)
        until Ctrl-C.

        Example: mqd throttle stats --watch
        """
        from mqd_cli.throttle import read_stats, resolve_limits

        with cli(config, json_out, verbose, announce_defaults=False) as c:
            limits = resolve_limits(c.settings.throttle)
            margin = c.settings.throttle.safety_margin
            clock = c.services.clock
            store = c.services.store

            def snapshot():
                now = clock.now()
                return now, read_stats(store, limits, margin, now)

            if not watch:
                now, stats = snapshot()
                if json_out:
                    c.out.json(_doc(stats, c.settings, now))
                else:
                    _console(c).print(_table(stats, now, _title(now, c.settings)))
                return
            try:
                if json_out:
                    while True:
                        now, stats = snapshot()
                        c.out.json_line(_doc(stats, c.settings, now))
                        clock.sleep(interval)
                _watch_table(c, snapshot, clock, interval)
            except KeyboardInterrupt:
                return

    app.add_typer(group, name="throttle")


def _console(c):
    console = c.out.console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console.width = max(console.width, 140)
    return console


def _title(now, settings) -> str:
    scope = "shared by every mqd process" if settings.throttle.shared else "per process"
    margin = f"{settings.throttle.safety_margin:.0%}"
    return (
        f"throttle budgets at {_when(now)}, {scope}; "
        f"limit/window (admitted after the {margin} safety margin)"
    )


def _watch_table(c, snapshot, clock, interval: float) -> None:
    from rich.live import Live

    def render():
        now, stats = snapshot()
        return _table(stats, now, _title(now, c.settings) + " - Ctrl-C to stop")

    with Live(render(), console=_console(c), auto_refresh=False) as live:
        while True:
            clock.sleep(interval)
            live.update(render(), refresh=True)
