"""`mqd run`: not available until its issue lands."""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt
from mqd_cli.errors import NotAvailable


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                  verbose: VerboseOpt = False) -> None:
        """Run the paper-trading loop: strategy, protections, risk gate, broker.

        Example: mqd run --config config.example.toml
        """
        raise NotAvailable("`mqd run` is not available yet", "it lands with the run issue")
