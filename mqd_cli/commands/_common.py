"""Options shared by every leaf command and the context they build.

Declare ``config``, ``json_out`` and ``verbose`` on each leaf so ``mqd X Y --json`` works after
the command name; ``cli(config, json_out, verbose)`` loads settings and builds the services.
``--log-level`` is added to every leaf by the app (``with_log_level``), and ``cli()`` sends the
``mqd`` log records to stderr and the ``[log] file`` (``mqd_cli/logs.py``) for the command.

This module is imported by every command module when the app is built, so it imports nothing
heavy at module level: ``mqd --help`` must not pay for the config schema, the clock or the store.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mqd_cli.commands.output import Output
    from mqd_cli.config.settings import Settings
    from mqd_cli.factory import Services
    from mqd_cli.logs import LogSetup

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
LogLevelOpt = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        metavar="LEVEL",
        help="Log records from this level up (debug, info, warning, error) on stderr and in"
        " [log] file (default: warnings on stderr, info with --verbose; [log] level in the file).",
        show_default=False,
    ),
]
# The --log-level of the command running, and whether it keeps its log records off stderr
# (`mqd run` and `mqd backtest` show events instead): read by cli().
_LOG_LEVEL: ContextVar[str | None] = ContextVar("mqd_log_level", default=None)
_QUIET_STDERR: ContextVar[bool] = ContextVar("mqd_quiet_stderr", default=False)
_COMMAND: ContextVar[str] = ContextVar("mqd_command", default="")


def with_log_level(fn: Callable, command: str = "") -> Callable:
    """``fn`` (the callback of leaf ``command``, e.g. "symbols sync") with a ``--log-level``
    option, which ``cli()`` applies; its log lines name the command. The app wraps every leaf
    with it, so no command declares the option itself."""
    sig = inspect.signature(fn, eval_str=True)
    if "log_level" in sig.parameters:
        return fn

    @functools.wraps(fn)
    def wrapper(*args, log_level: str | None = None, **kwargs):
        if log_level is not None:
            from mqd_cli.logs import parse_level

            parse_level(log_level)  # a bad level is a usage error before anything runs
        token, named = _LOG_LEVEL.set(log_level), _COMMAND.set(command)
        try:
            return fn(*args, **kwargs)
        finally:
            _LOG_LEVEL.reset(token)
            _COMMAND.reset(named)

    option = inspect.Parameter(
        "log_level", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=LogLevelOpt
    )
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), option])  # type: ignore[attr-defined]
    return wrapper


@contextmanager
def quiet_stderr(quiet: bool = True) -> Iterator[None]:
    """Inside it, ``cli()`` keeps log records off stderr unless --log-level asks for them
    (the [log] file gets them all the same)."""
    token = _QUIET_STDERR.set(quiet)
    try:
        yield
    finally:
        _QUIET_STDERR.reset(token)


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
    logs = _log_setup(services.settings, verbose)
    try:
        yield Cli(services, out)
    finally:
        try:
            services.close()
        finally:
            logs.close()


def _log_setup(settings: Settings, verbose: bool) -> LogSetup:
    """This command's log destinations: --log-level on both; else stderr at warning (info
    with --verbose, nothing in a quiet command) and the file at [log] level."""
    import logging

    from mqd_cli.logs import LogSetup, parse_level

    text = _LOG_LEVEL.get()
    level = parse_level(text) if text is not None else None
    if level is not None:
        stderr: int | None = level
    elif _QUIET_STDERR.get():
        stderr = logging.INFO if verbose else None
    else:
        stderr = logging.INFO if verbose else logging.WARNING
    detailed = verbose or level is not None
    return LogSetup(
        settings.log,
        stderr_level=stderr,
        file_level=level,
        detailed=detailed,
        command=_COMMAND.get(),
    )
