"""`mqd runs`: every `mqd run` and `mqd backtest` with its summary."""

# No `from __future__ import annotations`: typer would eval every option's annotation text
# each time `mqd --help` builds the app (bench/startup.py); these are objects already.
import typer

from mqd_cli.commands import _history as h
from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits


def register(app: typer.Typer) -> None:
    @app.command("runs")
    @exits(ok="shown (also when none match)", usage="bad options or config (also an unknown run)")
    def runs_cmd(
        symbol: h.SymbolOpt = None,
        since: h.SinceOpt = None,
        until: h.UntilOpt = None,
        strategy: h.StrategyOpt = None,
        run: h.RunOpt = None,
        session: h.SessionOpt = None,
        limit: h.LimitOpt = h.DEFAULT_LIMIT,
        offset: h.OffsetOpt = 0,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """List every run and backtest with its summary; --run ID shows one in full.

        `mqd run` records itself at start and at stop (a run killed with kill -9 shows
        "ended without a summary"), `mqd backtest` its result. Each sim run names the session
        that keeps its journal (sim-sessions/NAME.db next to the store; the last 20 are kept,
        older ones are removed, their summaries stay). --since and --until match when a run
        was started (your clock; its period is in market time); --session NAME lists that
        session's run. Reads the store only.

        Example: mqd runs --since 7d
        """
        from mqd_cli.history import runs as run_log

        with cli(config, json_out, verbose) as c:
            store = c.services.store
            if run is not None:
                view = run_log.get(store, run)
                if view is None:
                    from mqd_cli.errors import UsageError

                    raise UsageError(
                        f"no run {run} in {c.services.store_path}", "`mqd runs` lists them"
                    )
                if json_out:
                    c.out.json(view.as_dict())
                else:
                    _detail(c, view)
                return
            f = h.filters(c.services.clock.now(), symbol, since, until, strategy)
            from mqd_cli.history.query import Paged
            from mqd_cli.history.sessions import check_name

            total, views = run_log.views(
                store,
                limit=limit,
                offset=offset,
                symbols=f.symbols,
                strategy=f.strategy,
                since=f.since,
                until=f.until,
                session=check_name(session) if session is not None else None,
            )
            page = Paged(views, total, offset, limit)
            if json_out:
                c.out.json(
                    {
                        "store": str(c.services.store_path),
                        **page.meta(),
                        "runs": [v.as_dict() for v in page.items],
                    }
                )
                return
            if h.nothing(c, "runs", page):
                return
            h.listing(
                c,
                h.title("Runs", page),
                (
                    "id",
                    "kind",
                    "started",
                    "market period",
                    "where",
                    "strategy",
                    "state",
                    "trades",
                    "net pnl",
                    "equity",
                ),
                [
                    (
                        v.id,
                        v.kind + (" (dry)" if v.dry_run else ""),
                        f"{v.recorded_at.astimezone():%Y-%m-%d %H:%M}",
                        _period(v),
                        _where(v),
                        v.strategy,
                        v.state,
                        h.num(v.figure("trades")),
                        h.money(v.figure("pnl")),
                        h.money(v.figure("equity_end")),
                    )
                    for v in page.items
                ],
                right="id,trades,net pnl,equity",
            )


def _period(v) -> str:
    start = f"{v.started_at:%Y-%m-%d %H:%M}"
    if v.stopped_at is None:
        return f"{start} ..."
    fmt = "%H:%M" if v.stopped_at.date() == v.started_at.date() else "%Y-%m-%d %H:%M"
    return f"{start}..{v.stopped_at:{fmt}}"


def _where(v) -> str:
    if v.kind == "backtest":
        data = v.summary.get("data") or "synthetic"
        return f"backtest ({data})"
    if v.session is not None:
        return f"sim {v.session}" + ("" if v.journal_kept else " (removed)")
    return v.broker


def _detail(c, v) -> None:
    """One run in full: what it was, then every figure of its summary."""
    s = v.summary
    rows = [
        ("id", v.id),
        ("kind", v.kind + (" (dry run)" if v.dry_run else "")),
        ("state", v.state + (f": {v.reason}" if v.reason else "")),
        ("strategy", f"{v.strategy} on {', '.join(v.symbols)}"),
        ("started", f"{v.recorded_at.astimezone():%Y-%m-%d %H:%M:%S %Z} (your clock)"),
        ("market period", f"{h.when(v.started_at)} .. {h.when(v.stopped_at)} UTC"),
        ("where", _where(v)),
        *([("journal", v.journal)] if v.journal else []),
    ]
    skip = {"event", "started_at", "stopped_at", "reason", "dry_run", "broker", "store", "marks"}
    skip |= {"strategy", "symbols", "start", "end"}  # in the rows above
    for key, value in s.items():
        if key in skip or value in (None, {}, []):
            continue
        rows.append((key.replace("_", " "), _flat(value)))
    c.out.table(f"Run {v.id}", ("", ""), rows)


def _flat(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return str(value)
