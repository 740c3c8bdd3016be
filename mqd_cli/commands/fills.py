"""`mqd fills`: every execution a journal counted, newest last, filtered and paged."""

# No `from __future__ import annotations`: typer would eval every option's annotation text
# each time `mqd --help` builds the app (bench/startup.py); these are objects already.
import typer

from mqd_cli.commands import _history as h
from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits


def register(app: typer.Typer) -> None:
    @app.command("fills")
    @exits(
        ok="shown (also when none match)",
        usage="bad options or config (also an unknown run or session)",
    )
    def fills_cmd(
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
        """List fills from the order journal: each execution once, with its order.

        The fills the order tracker counted: every real execution, and a fill recovered after a
        stream outage (source gap_fill, marked synthetic) only for the quantity no real
        execution has replaced since, so the fills of an order sum to its filled quantity.
        Reads the store only. Times are market time; --session, --run and paging as in
        `mqd orders`.

        Example: mqd fills --since 2h --symbol MSFT
        """
        from mqd_cli.history.query import fill_doc, fills

        with cli(config, json_out, verbose) as c:
            src = h.source(c, session, run)
            f = h.filters(src.clock.now(), symbol, since, until, strategy)
            page = fills(src, f, limit=limit, offset=offset)
            if json_out:
                c.out.json(
                    {
                        **h.source_doc(src, f),
                        **page.meta(),
                        "fills": [fill_doc(x) for x in page.items],
                    }
                )
                return
            if h.nothing(c, "fills", page):
                return
            h.listing(
                c,
                h.title("Fills", page, src),
                ("time", "symbol", "side", "qty", "price", "fee", "source", "client_order_id"),
                [
                    (
                        h.when(x.timestamp),
                        x.symbol,
                        h.text(x.side),
                        h.num(x.qty),
                        h.price(x.price),
                        h.money(x.fee),
                        x.source + (" (synthetic)" if x.synthetic else ""),
                        x.client_order_id,
                    )
                    for x in page.items
                ],
                right="qty,price,fee",
            )
