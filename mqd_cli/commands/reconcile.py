"""`mqd reconcile`: not available until its issue lands."""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt
from mqd_cli.errors import NotAvailable


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
    def reconcile_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                  verbose: VerboseOpt = False) -> None:
        """Check local orders, fills and positions against the broker.

        Example: mqd reconcile --json
        """
        raise NotAvailable("`mqd reconcile` is not available yet", "it lands with the order tracker and reconciliation issue")
