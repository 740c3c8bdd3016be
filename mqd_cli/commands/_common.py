"""Options shared by every leaf command and the context they build.

Declare ``config``, ``json_out`` and ``verbose`` on each leaf so ``mqd X Y --json`` works after
the command name; ``cli(config, json_out, verbose)`` loads settings and builds the services.

This module is imported by every command module when the app is built, so it imports nothing
heavy at module level: ``mqd --help`` must not pay for the config schema, the clock or the store.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mqd_cli.commands.output import Output
    from mqd_cli.config.settings import Settings
    from mqd_cli.factory import Services

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $MQD_CONFIG, then the user "
        "config dir, then built-in defaults).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
# Commands that print as they go (run, stream tail): one JSON object per line.
JsonLinesOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object per line (JSON lines) on stdout.")
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show debug messages and tracebacks.")
]


def exits(**meanings: str):
    """Decorator: append the command's exit codes, from the one table (``errors.EXIT_MEANINGS``),
    to its help, before the example. Keys are the ``ExitCode`` names in lower case (``ok``,
    ``found``, ``usage``, ``broker``, ``state``, ``interrupted``); values the command's words.
    Put it under ``@app.command``."""
    from mqd_cli.errors import ExitCode, exit_codes_text

    text = exit_codes_text({ExitCode[k.upper()]: v for k, v in meanings.items()})

    def decorate(fn):
        doc = inspect.cleandoc(fn.__doc__ or "")
        head, sep, example = doc.rpartition("\n\nExample:")
        fn.__doc__ = f"{head}\n\n{text}{sep}{example}" if sep else f"{doc}\n\n{text}"
        return fn

    return decorate


DEFAULTS_NOTE = (
    'note: no config file found; using built-in defaults (broker = "sim"). '
    "Create one with `mqd config init`."
)


@dataclass
class Cli:
    services: Services
    out: Output

    @property
    def settings(self) -> Settings:
        return self.services.settings


@contextmanager
def cli(
    config: Path | None,
    json_out: bool = False,
    verbose: bool = False,
    *,
    announce_defaults: bool = True,
) -> Iterator[Cli]:
    """Load the configuration, build the services lazily, close them afterwards.

    When no config file exists the built-in defaults apply and a note says so on stderr.
    """
    from mqd_cli.commands.output import Output
    from mqd_cli.factory import Services

    out = Output(json_mode=json_out, verbose=verbose)
    services = Services.from_config(config)
    loaded = services.loaded
    if loaded is not None:
        if loaded.path is None and announce_defaults:
            out.info(DEFAULTS_NOTE)
        elif loaded.path is not None:
            out.debug(f"config: {loaded.path} (from {loaded.origin})")
    try:
        yield Cli(services, out)
    finally:
        services.close()
