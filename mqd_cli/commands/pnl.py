"""`mqd pnl`: realized and unrealized PnL by day or week, and the equity curve."""

# No `from __future__ import annotations`: typer would eval every option's annotation text
# each time `mqd --help` builds the app (bench/startup.py); these are objects already.
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from mqd_cli.commands import _history as h
from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits


def register(app: typer.Typer) -> None:
    @app.command("pnl")
    @exits(
        ok="shown (also when nothing traded)",
        usage="bad options or config (also an unknown run or session, --plot with no matplotlib)",
    )
    def pnl_cmd(
        by: Annotated[
            str,
            typer.Option("--by", metavar="PERIOD", help="day (UTC) or week (ISO, from Monday)."),
        ] = "day",
        plot: Annotated[
            Path | None,
            typer.Option(
                "--plot",
                help="Write the equity curve and the realized PnL of each period as a chart"
                " (PNG; needs the 'plot' extra: pip install 'mqd[plot]').",
                show_default=False,
            ),
        ] = None,
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
        """Show realized and unrealized PnL by day or by week, and the equity at each end.

        Realized: the trades closed in the period (net of fees). Unrealized and equity: the
        period's last equity sample kept by `mqd run` (every 5 minutes of market time, with
        each position at the engine's last price), so a period no run traded in has none.
        With --symbol the unrealized PnL is those symbols' and the account's equity is not
        shown; with --strategy only realized PnL is. --plot draws the equity curve over the
        periods shown, with the realized PnL of each. Reads the store only; --session, --run
        and paging (by period) as in `mqd orders`.

        Example: mqd pnl --by week --plot pnl.png
        """
        from mqd_cli.errors import UsageError
        from mqd_cli.history.pnl import PERIODS, pnl, write_plot

        period = by.strip().lower()
        if period not in PERIODS:
            raise UsageError(f"--by {by!r}: not a period", "use --by day or --by week")
        if plot is not None:
            from mqd_cli.trading.backtest import check_plot_target

            check_plot_target(plot)  # before any work, with a hint when matplotlib is missing
        with cli(config, json_out, verbose) as c:
            src = h.source(c, session, run)
            f = h.filters(src.clock.now(), symbol, since, until, strategy)
            report = pnl(src, f, by=period, limit=limit, offset=offset)
            if plot is not None:
                name = h.title("mqd pnl by " + period, report.periods, src)
                write_plot(report, plot, name)
            if json_out:
                doc = {
                    **h.source_doc(src, f),
                    "by": period,
                    **report.periods.meta(),
                    "trades": report.trades,
                    "realized_pnl": report.realized_pnl,
                    "unrealized_pnl": report.unrealized_pnl,
                    "account_wide": report.account_wide,
                    "periods": [p.as_dict() for p in report.periods.items],
                    "equity_curve": [p.as_dict() for p in report.curve],
                }
                if plot is not None:
                    doc["plot"] = str(plot)
                c.out.json(doc)
                return
            page = report.periods
            if h.nothing(c, "trades or equity samples", page):
                return
            h.listing(
                c,
                h.title(f"PnL by {period}", page, src),
                (period, "trades", "won", "realized", "unrealized", "equity"),
                [
                    (
                        p.label,
                        p.trades,
                        p.wins,
                        h.money(p.realized_pnl),
                        h.money(p.unrealized_pnl),
                        h.money(p.equity),
                    )
                    for p in page.items
                ],
                right="trades,won,realized,unrealized,equity",
            )
            shown = sum((p.realized_pnl for p in page.items), Decimal(0))
            n = len(page.items)
            line = f"realized {h.money(shown)} in the {n} {period}{'s' if n != 1 else ''} shown"
            if page.cut:
                line += f" ({h.money(report.realized_pnl)} in all {page.total})"
            last = next((p for p in reversed(page.items) if p.sampled_at is not None), None)
            if last is not None and last.unrealized_pnl is not None:
                line += f"; unrealized {h.money(last.unrealized_pnl)} at {h.when(last.sampled_at)}"
            c.out.line(line)
            if plot is not None:
                c.out.line(f"chart written to {plot}")
