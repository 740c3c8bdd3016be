"""`mqd trades`: closed round trips with their PnL and exit reason, newest last."""

# No `from __future__ import annotations`: typer would eval every option's annotation text
# each time `mqd --help` builds the app (bench/startup.py); these are objects already.
import typer

from mqd_cli.commands import _history as h
from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits


def register(app: typer.Typer) -> None:
    @app.command("trades")
    @exits(
        ok="shown (also when none match)",
        usage="bad options or config (also an unknown run or session)",
    )
    def trades_cmd(
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
        """List closed trades (entry to full exit): PnL, exit reason, how long held.

        PnL is realized and net of fees. --since and --until match the close time. The last
        line totals every trade that matches, not only the ones shown: count, wins, realized
        PnL and the exit reasons. Reads the store only; --session, --run and paging as in
        `mqd orders`.

        Example: mqd trades --since 7d --strategy sma_cross
        """
        from mqd_cli.history.query import trade_doc, trades

        with cli(config, json_out, verbose) as c:
            src = h.source(c, session, run)
            f = h.filters(src.clock.now(), symbol, since, until, strategy)
            page, totals = trades(src, f, limit=limit, offset=offset)
            if json_out:
                c.out.json(
                    {
                        **h.source_doc(src, f),
                        **page.meta(),
                        "totals": {
                            "trades": totals.trades,
                            "wins": totals.wins,
                            "win_rate": None
                            if totals.win_rate is None
                            else round(totals.win_rate, 4),
                            "realized_pnl": totals.realized_pnl,
                            "exit_reasons": totals.by_reason,
                        },
                        "trades": [trade_doc(t) for t in page.items],
                    }
                )
                return
            if h.nothing(c, "trades", page):
                return
            h.listing(
                c,
                h.title("Trades", page, src),
                (
                    "closed",
                    "symbol",
                    "side",
                    "qty",
                    "entry",
                    "exit",
                    "pnl",
                    "fees",
                    "held",
                    "reason",
                ),
                [
                    (
                        h.when(t.closed_at),
                        t.symbol,
                        t.side,
                        h.num(t.qty),
                        h.price(t.entry_price),
                        h.price(t.exit_price),
                        h.money(t.pnl),
                        h.money(t.fees),
                        h.span(t.closed_at - t.opened_at),
                        t.exit_reason,
                    )
                    for t in page.items
                ],
                right="qty,entry,exit,pnl,fees,held",
            )
            reasons = ", ".join(f"{k} {v}" for k, v in totals.by_reason.items())
            rate = f"{totals.win_rate:.0%}" if totals.win_rate is not None else "-"
            c.out.line(
                f"{totals.trades} trades, {totals.wins} won ({rate}), realized"
                f" {h.money(totals.realized_pnl)}" + (f"; {reasons}" if reasons else "")
            )
