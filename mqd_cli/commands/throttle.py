"""`mqd throttle`: not available until its issue lands."""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt
from mqd_cli.errors import NotAvailable


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="""Show every API budget and how close it is to its limit.\n\nExample: mqd throttle stats""", no_args_is_help=True)

    @group.command("stats")
    def stats_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                verbose: VerboseOpt = False) -> None:
        """Show every API budget and how close it is to its limit.

        Example: mqd throttle stats
        """
        raise NotAvailable("`mqd throttle stats` is not available yet",
                           "it lands with the throttler issue")

    app.add_typer(group, name="throttle")
