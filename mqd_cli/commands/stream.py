"""`mqd stream`: not available until its issue lands."""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt
from mqd_cli.errors import NotAvailable


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="""Watch live trade updates (fills).\n\nExample: mqd stream tail --count 10""", no_args_is_help=True)

    @group.command("tail")
    def tail_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                verbose: VerboseOpt = False) -> None:
        """Watch live trade updates (fills).

        Example: mqd stream tail
        """
        raise NotAvailable("`mqd stream tail` is not available yet",
                           "it lands with the user stream issue")

    app.add_typer(group, name="stream")
