"""The root Typer app and the one error boundary.

Commands raise ``MqdError`` subclasses; ``_guard`` (wrapped around every registered command
callback) prints ``error: ...`` plus a hint on stderr and exits with the error's ``ExitCode``.
Tracebacks appear only with ``--verbose``; secrets are scrubbed from every message.
"""

from __future__ import annotations

import functools
import importlib
import sys
import traceback
from typing import Annotated

import typer

from mqd_cli import __version__
from mqd_cli.errors import ExitCode, MqdError

# Command modules, in the order `mqd --help` lists them; each exposes register(app).
COMMAND_MODULES = (
    "run", "backtest", "reconcile", "stream", "symbols", "protections", "throttle", "sim",
    "config", "doctor",
)

app = typer.Typer(
    name="mqd",
    help="mqd: operate an Alpaca trading system from the terminal and from cron.\n\n"
    "Example: mqd run --config config.example.toml",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"mqd {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """mqd: operate an Alpaca trading system from the terminal and from cron."""


def _report(exc: MqdError, verbose: bool) -> None:
    from mqd_cli.config import redact

    if verbose:
        sys.stderr.write(redact(traceback.format_exc()))
    for line in exc.lines():
        sys.stderr.write(f"error: {redact(line)}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {redact(exc.hint)}\n")
    sys.stderr.flush()


def _guard(fn):
    """The error boundary around one command callback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        verbose = bool(kwargs.get("verbose"))
        try:
            return fn(*args, **kwargs)
        except MqdError as exc:
            _report(exc, verbose)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: one line, the traceback only with --verbose
            from mqd_cli.config import redact

            if verbose:
                sys.stderr.write(redact(traceback.format_exc()))
            sys.stderr.write(f"error: internal error: {type(exc).__name__}: {redact(str(exc))}\n")
            if not verbose:
                sys.stderr.write("hint: run again with --verbose for the traceback\n")
            raise typer.Exit(int(ExitCode.FOUND)) from None

    wrapper.__mqd_guarded__ = True
    return wrapper


def _guard_all(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.callback and not getattr(info.callback, "__mqd_guarded__", False):
            info.callback = _guard(info.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance)


def build_app() -> typer.Typer:
    for name in COMMAND_MODULES:
        importlib.import_module(f"mqd_cli.commands.{name}").register(app)
    _guard_all(app)
    return app


build_app()


def main() -> None:
    app()
