"""`mqd protections`: not available until its issue lands."""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt
from mqd_cli.errors import NotAvailable


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="""Show and manage the circuit breakers.\n\nExample: mqd protections status""", no_args_is_help=True)

    @group.command("status")
    def status_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                verbose: VerboseOpt = False) -> None:
        """Show and manage the circuit breakers.

        Example: mqd protections status
        """
        raise NotAvailable("`mqd protections status` is not available yet",
                           "it lands with the protections issue")

    @group.command("unlock")
    def unlock_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                verbose: VerboseOpt = False) -> None:
        """Show and manage the circuit breakers.

        Example: mqd protections unlock
        """
        raise NotAvailable("`mqd protections unlock` is not available yet",
                           "it lands with the protections issue")

    app.add_typer(group, name="protections")
