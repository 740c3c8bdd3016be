"""`mqd symbols`: not available until its issue lands."""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt
from mqd_cli.errors import NotAvailable


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="""Keep symbol properties fresh and check orders.\n\nExample: mqd symbols sync""", no_args_is_help=True)

    @group.command("sync")
    def sync_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                verbose: VerboseOpt = False) -> None:
        """Keep symbol properties fresh and check orders.

        Example: mqd symbols sync
        """
        raise NotAvailable("`mqd symbols sync` is not available yet",
                           "it lands with the symbol properties issue")

    @group.command("validate")
    def validate_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                verbose: VerboseOpt = False) -> None:
        """Keep symbol properties fresh and check orders.

        Example: mqd symbols validate
        """
        raise NotAvailable("`mqd symbols validate` is not available yet",
                           "it lands with the symbol properties issue")

    @group.command("show")
    def show_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                verbose: VerboseOpt = False) -> None:
        """Keep symbol properties fresh and check orders.

        Example: mqd symbols show
        """
        raise NotAvailable("`mqd symbols show` is not available yet",
                           "it lands with the symbol properties issue")

    app.add_typer(group, name="symbols")
