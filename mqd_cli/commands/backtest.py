"""`mqd backtest`: not available until its issue lands."""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt
from mqd_cli.errors import NotAvailable


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                  verbose: VerboseOpt = False) -> None:
        """Run the trading loop over historical or synthetic bars.

        Example: mqd backtest --synthetic
        """
        raise NotAvailable("`mqd backtest` is not available yet", "it lands with the run/backtest issue")
