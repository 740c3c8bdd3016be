"""`mqd sim`: not available until its issue lands."""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt
from mqd_cli.errors import NotAvailable


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="""The Alpaca-compatible emulator.\n\nExample: mqd sim serve --port 8765""", no_args_is_help=True)

    @group.command("serve")
    def serve_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                verbose: VerboseOpt = False) -> None:
        """The Alpaca-compatible emulator.

        Example: mqd sim serve
        """
        raise NotAvailable("`mqd sim serve` is not available yet",
                           "it lands with the emulator issue")

    app.add_typer(group, name="sim")
