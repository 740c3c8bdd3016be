"""`mqd orders`: the orders a journal holds, newest last, filtered and paged."""

# No `from __future__ import annotations`: typer would eval every option's annotation text
# each time `mqd --help` builds the app (bench/startup.py); these are objects already.
import typer

from mqd_cli.commands import _history as h
from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits


def register(app: typer.Typer) -> None:
    @app.command("orders")
    @exits(
        ok="shown (also when none match)",
        usage="bad options or config (also an unknown run or session)",
    )
    def orders_cmd(
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
        """List past and open orders from the order journal: status, fills, reason.

        Reads the store only (no broker call). Times are market time: the simulated time of a
        sim session. With broker = "sim" the latest kept sim session is read unless --session
        names another; --run reads the journal that run traded on, within its start and stop.
        The newest --limit orders are shown (the table says "last N of M" when cut); --offset
        pages back.

        Example: mqd orders --symbol AAPL --since 1d --limit 20
        """
        from mqd_cli.history.query import order_doc, orders

        with cli(config, json_out, verbose) as c:
            src = h.source(c, session, run)
            f = h.filters(src.clock.now(), symbol, since, until, strategy)
            page = orders(src, f, limit=limit, offset=offset)
            if json_out:
                c.out.json(
                    {
                        **h.source_doc(src, f),
                        **page.meta(),
                        "orders": [order_doc(o) for o in page.items],
                    }
                )
                return
            if h.nothing(c, "orders", page):
                return
            h.listing(
                c,
                h.title("Orders", page, src),
                (
                    "created",
                    "symbol",
                    "side",
                    "qty",
                    "type",
                    "price",
                    "filled",
                    "avg",
                    "status",
                    "reason",
                    "client_order_id",
                ),
                [
                    (
                        h.when(o.created_at),
                        o.symbol,
                        h.text(o.side),
                        h.num(o.qty) if o.qty is not None else f"${h.num(o.notional)}",
                        h.text(o.type),
                        h.price(o.limit_price if o.limit_price is not None else o.stop_price),
                        h.num(o.filled_qty),
                        h.price(o.avg_price),
                        h.text(o.status),
                        o.reason,
                        o.client_order_id,
                    )
                    for o in page.items
                ],
                right="qty,price,filled,avg",
            )
