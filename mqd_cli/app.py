"""The root Typer app and the one error boundary.

Commands raise ``MqdError`` subclasses; ``_guard`` (wrapped around every registered command
callback) prints ``error: ...`` plus a hint on stderr and exits with the error's ``ExitCode``.
Tracebacks appear only with ``--verbose``; secrets are scrubbed from every message.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Annotated, Any

import typer

from mqd_cli import __version__
from mqd_cli.errors import ExitCode, MqdError

# Command modules, in the order `mqd --help` lists them; each exposes register(app).
COMMAND_MODULES = (
    "run",
    "backtest",
    "reconcile",
    "act",
    "stream",
    "symbols",
    "protections",
    "throttle",
    "sim",
    "config",
    "doctor",
    "orders",  # the history commands (orders ... runs) share commands/_history.py
    "fills",
    "trades",
    "positions",
    "pnl",
    "runs",
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"mqd {__version__}\n")
        raise typer.Exit(0)


def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """mqd: operate an Alpaca trading system from the terminal and from cron."""


def _report(exc: MqdError, verbose: bool) -> None:
    import traceback

    from mqd_cli.config.loading import redact

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
            from mqd_cli.errors import storage_error

            state = storage_error(exc)
            if state is not None:  # a full disk or read-only store: exit 4, not a bug
                _report(state, verbose)
                raise typer.Exit(int(state.exit_code)) from None
            hint = "" if verbose else "run again with --verbose for the traceback"
            _report(MqdError(f"internal error: {type(exc).__name__}: {exc}", hint), verbose)
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    setattr(wrapper, "__mqd_guarded__", True)  # noqa: B010 (a marker mypy cannot type)
    return wrapper


def _guard_all(typer_app: typer.Typer, prefix: str = "") -> None:
    """Guard every command callback and give it ``--log-level`` (its log lines name it)."""
    from mqd_cli.commands._common import with_log_level

    for info in typer_app.registered_commands:
        if info.callback and not getattr(info.callback, "__mqd_guarded__", False):
            name = f"{prefix}{info.name or info.callback.__name__}"
            info.callback = _guard(with_log_level(info.callback, name))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance, f"{prefix}{group.name or ''} ")


def build_app(modules: tuple[str, ...] = COMMAND_MODULES) -> typer.Typer:
    """The root app with the commands of ``modules`` registered, every callback guarded.

    The whole app has typer's shell completion (``--install-completion``, ``--show-completion``
    and the ``_MQD_COMPLETE`` protocol the installed script speaks); the slim apps ``main()``
    builds for a named command or ``--version`` never reach a root option, so they skip it.
    """
    root_app = typer.Typer(
        name="mqd",
        help="mqd: operate an Alpaca trading system from the terminal and from cron.\n\n"
        "Example: mqd run --config config.example.toml",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=modules == COMMAND_MODULES,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    root_app.callback()(root)
    for name in modules:
        importlib.import_module(f"mqd_cli.commands.{name}").register(root_app)
    _guard_all(root_app)
    return root_app


app = build_app()


def _defer_unset_coercion(command) -> None:
    """Skip typer's pydantic-backed coercion for options that were not given.

    typer builds a pydantic TypeAdapter for a parameter the first time it processes a value,
    even ``None`` (an option left out, or the implicit ``--help`` flag), and importing pydantic
    costs more than all of typer. Coercing ``None`` is the identity, so an unset option keeps
    its ``None`` without it; a given value goes through typer's own coercion unchanged. Only
    private typer attributes are touched, and only when they exist: a typer without them just
    runs as it is. bench/startup.py measures the difference.
    """
    try:
        from typer._coercion import build_runtime_param
    except ImportError:
        return

    class _UnsetFastPath:
        def coerce(self, value, param, ctx):
            if value is None and not (param.multiple or param.nargs == -1):
                return None
            param._runtime_param = build_runtime_param(param.type_descriptor)
            return param._runtime_param.coerce(value, param=param, ctx=ctx)

    fast = _UnsetFastPath()

    def install(param) -> None:
        if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
            param._runtime_param = fast

    def help_option_of(cmd):
        original = cmd.get_help_option

        def get_help_option(ctx):
            option = original(ctx)
            if option is not None:
                install(option)
            return option

        return get_help_option

    stack = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            install(param)
        if hasattr(cmd, "get_help_option"):
            cmd.get_help_option = help_option_of(cmd)


# Placeholders in --help: the option's own name (``--port PORT``), not typer's type names
# (``<int range>``, ``<list[str]>``); the ranges and defaults still follow in the help text.
_METAVARS = {"config": "PATH", "data": "FILE", "plot": "FILE", "fix": "FILE"}


def _name_metavars(command) -> None:
    stack = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
            if flag or param.metavar is not None or not param.name:
                continue
            if getattr(param, "param_type_name", "") == "argument":
                if hasattr(param, "display_type"):  # typer appends "<list[str]>" to the name
                    param.display_type = lambda ctx: None
                    param.metavar = param.name.upper()
                continue
            name = param.name.removesuffix("_")
            param.metavar = _METAVARS.get(name, name.upper().removesuffix("_OPT"))


def _command_for(argv: list[str]):
    """The click command tree ``argv`` needs.

    typer turns every registered command into a click command before parsing, which costs more
    the more commands there are; ``mqd config show`` only needs the ``config`` module. The root
    takes no options other than eager ones (--version, --help), so the first word that is not an
    option names the command. Anything else (root help, a typo) gets the whole app.
    """
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None and "--version" in argv and not {"-h", "--help"} & set(argv):
        return typer.main.get_command(build_app(()))  # eager: no command is ever reached
    module = _MODULE_OF.get(first or "", first)
    if module in COMMAND_MODULES:
        command = typer.main.get_command(build_app((module,)))
        if first in getattr(command, "commands", {}):
            return command
    return typer.main.get_command(app)


# Commands registered by a module of another name (command -> module).
_MODULE_OF = {"cancel": "act", "flatten": "act"}


# Options every command takes: given before the command, the root refuses them.
_COMMAND_OPTIONS = {"--config", "-c", "--json", "--verbose", "-v"}


def _option_error(exc: Any) -> MqdError:
    """A click usage error (unknown option, bad or out-of-range value, missing argument) in
    mqd's voice: ``error:`` with the problem, ``hint:`` with what to do."""
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "mqd"
    hint = f"see `{path} --help`"
    option = getattr(exc, "option_name", None)
    at_root = ctx is None or ctx.parent is None
    if type(exc).__name__ == "NoSuchOption" and at_root and option in _COMMAND_OPTIONS:
        hint = (
            f"options go after the command: `mqd <command> {option} ...`"
            " (for example `mqd doctor --config mqd.toml`)"
        )
    return MqdError(message, hint, exit_code=ExitCode.USAGE)


def main() -> None:
    """The console script: ``app``, built and parsed only as far as the command line needs.

    Click's own usage errors (an unknown option, a value out of range) are reported in mqd's
    ``error:``/``hint:`` form with exit 2, like every other usage error.
    """
    from typer.exceptions import TyperException

    command = _command_for(sys.argv[1:])
    _defer_unset_coercion(command)
    if {"-h", "--help"} & set(sys.argv[1:]):
        _name_metavars(command)
    try:
        code = command.main(prog_name="mqd", standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    except TyperException as exc:  # click's errors: usage (exit 2) and the others
        if type(exc).__name__ == "NoArgsIsHelpError":  # `mqd`, `mqd config`: the help
            sys.stderr.write(exc.format_message() + "\n")
            sys.exit(int(ExitCode.USAGE))
        usage = int(getattr(exc, "exit_code", 1)) == int(ExitCode.USAGE)
        if usage and hasattr(exc, "format_message"):
            error = _option_error(exc)
        else:
            error = MqdError(str(exc), exit_code=ExitCode(getattr(exc, "exit_code", 1)))
        _report(error, verbose=False)
        sys.exit(int(error.exit_code))
    sys.exit(code if isinstance(code, int) else 0)


def walk_commands():
    """Every registered command as ``(path, click command, is_leaf)``, e.g. ``("config show",
    <Command>, True)``, depth first in ``mqd --help`` order. Tests and docs iterate this, so
    commands added later are covered automatically."""
    root = typer.main.get_command(app)

    def walk(cmd, prefix):
        for name, sub in getattr(cmd, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            children = getattr(sub, "commands", None)
            yield path, sub, children is None
            if children is not None:
                yield from walk(sub, path)

    return list(walk(root, ""))
