"""`mqd positions`: open positions with unrealized PnL, from the broker or the journal."""

# No `from __future__ import annotations`: typer would eval every option's annotation text
# each time `mqd --help` builds the app (bench/startup.py); these are objects already.
from decimal import Decimal
from typing import Annotated

import typer

from mqd_cli.commands import _history as h
from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits


def register(app: typer.Typer) -> None:
    @app.command("positions")
    @exits(
        ok="shown (also when flat)",
        usage="bad options or config (also an unknown run or session)",
        broker="the broker could not be reached (try --offline)",
    )
    def positions_cmd(
        offline: Annotated[
            bool,
            typer.Option(
                "--offline",
                help="From the journal alone, no broker call: our fills, marked at the last"
                " prices a run recorded.",
            ),
        ] = False,
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
        """Show open positions with unrealized PnL at the broker's last price.

        Online (broker = "alpaca") it asks the broker through the shared throttle budget:
        quantity, average entry, last price, market value and unrealized PnL as the broker
        computes them, beside the quantity our journal holds (a difference is drift: see
        `mqd reconcile`). --offline, a sim session (its exchange ended with its run) or
        --run read the journal alone: our fills' positions by average cost, marked at the
        prices of the run's last equity sample. --since and --until match when a position
        was opened.

        Example: mqd positions --offline --symbol AAPL
        """
        from mqd_cli.history.query import positions_offline, positions_online

        with cli(config, json_out, verbose) as c:
            src = h.source(c, session, run)
            f = h.filters(src.clock.now(), symbol, since, until, strategy)
            online = (
                not offline and src.session is None and src.run is None and not c.services.is_sim
            )
            if online:
                page = positions_online(src, c.services.broker, f, limit=limit, offset=offset)
            else:
                if not offline and src.session is not None:
                    c.out.info(
                        "a sim session's exchange ended with its run: positions from its"
                        " journal, marked at its last prices"
                    )
                page = positions_offline(src, f, limit=limit, offset=offset)
            total = sum(
                (p.unrealized_pnl for p in page.items if p.unrealized_pnl is not None),
                start=Decimal(0),
            )
            marked = [p for p in page.items if p.price_source]
            if json_out:
                c.out.json(
                    {
                        **h.source_doc(src, f),
                        "online": online,
                        **page.meta(),
                        "unrealized_pnl": total if marked else None,
                        "positions": [p.as_dict() for p in page.items],
                    }
                )
                return
            if h.nothing(c, "open positions", page):
                return
            # Online, our journal's quantity stands beside the broker's (a difference is
            # drift); offline it is the quantity.
            header = ["symbol", "qty", "avg", "price", "value", "unrealized", "realized"]
            header += ["journal"] if online else []
            rows = [
                [
                    p.symbol,
                    h.num(p.qty),
                    h.price(p.avg_price),
                    h.price(p.price),
                    h.money(p.market_value),
                    h.money(p.unrealized_pnl),
                    h.money(p.realized_pnl),
                    *([h.num(p.journal_qty)] if online else []),
                    h.when(p.opened_at),
                    p.strategy or "-",
                ]
                for p in page.items
            ]
            h.listing(
                c,
                h.title(
                    "Positions at the broker" if online else "Positions from the journal", page, src
                ),
                [*header, "opened", "strategy"],
                rows,
                right="qty,avg,price,value,unrealized,realized,journal",
            )
            if marked:
                at = max(p.price_at for p in marked if p.price_at is not None)
                where = "the broker's last prices" if online else "the run's last prices"
                c.out.line(f"unrealized {h.money(total)} at {where} ({h.when(at)} UTC)")
            else:
                c.out.line("no price to mark them at: unrealized PnL unknown (no run recorded one)")
