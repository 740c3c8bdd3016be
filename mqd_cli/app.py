"""The root Typer app and the one error boundary.

Commands raise ``MqdError`` subclasses; ``_guard`` (wrapped around every registered command
callback) prints ``error: ...`` plus a hint on stderr and exits with the error's ``ExitCode``.
Tracebacks appear only with ``--verbose``; secrets are scrubbed from every message.

Start-up is a feature (bench/startup.py): importing this module imports neither typer nor a
command module. ``main()`` answers ``mqd --version`` before typer is imported and builds only
the command module a command line names; ``app``, the whole app (root ``--help``, shell
completion, tests), is built on first use.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from mqd_cli import __version__
from mqd_cli.errors import ExitCode, MqdError

if TYPE_CHECKING:
    import typer

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

# Every root command as `mqd --help` lists it (commands, then groups, as typer orders them):
# name, the module that registers it, and the first paragraph of its help. The root help is
# drawn from this table without importing a command module; tests/test_startup.py checks it
# against what the modules register, so a new command or a reworded summary fails a test
# until the line here matches.
ROOT_COMMANDS = (
    (
        "run",
        "run",
        "Run the trading loop: strategy, protections, risk gate, symbol checks, broker.",
    ),
    (
        "backtest",
        "backtest",
        "Run the trading loop over historical or synthetic bars and report the results.",
    ),
    ("reconcile", "reconcile", "Check local orders, fills and positions against the broker."),
    ("cancel", "act", "Cancel open orders at the broker: the ones named, or --all."),
    ("flatten", "act", "Close positions with market orders: the symbols named, or --all."),
    ("doctor", "doctor", "Check config, credentials, store, broker reachability and clock skew."),
    (
        "orders",
        "orders",
        "List past and open orders from the order journal: status, fills, reason.",
    ),
    ("fills", "fills", "List fills from the order journal: each execution once, with its order."),
    (
        "trades",
        "trades",
        "List closed trades (entry to full exit): PnL, exit reason, how long held.",
    ),
    (
        "positions",
        "positions",
        "Show open positions with unrealized PnL at the broker's last price.",
    ),
    (
        "pnl",
        "pnl",
        "Show realized and unrealized PnL by day or by week, and the equity at each end.",
    ),
    ("runs", "runs", "List every run and backtest with its summary; --run ID shows one in full."),
    ("stream", "stream", "Watch live trade updates (fills)."),
    ("symbols", "symbols", "Sync symbol properties from the broker and check orders against them."),
    (
        "protections",
        "protections",
        "Show and manage the circuit breakers (protections) and their locks.",
    ),
    ("throttle", "throttle", "Show every API budget and how close it is to its limit."),
    ("sim", "sim", "The Alpaca-compatible emulator."),
    ("config", "config", "Write, show and validate the configuration."),
)

# The module that registers each root command (``cancel`` and ``flatten``: ``act``).
_MODULE_OF = {name: module for name, module, _summary in ROOT_COMMANDS}


def _version(value: bool) -> None:
    if value:
        import typer

        sys.stdout.write(f"mqd {__version__}\n")
        raise typer.Exit(0)


def _root_callback():
    """The root callback: ``--version`` and the app's help text. Built on demand because
    typer reads its option from the signature, and this module does not import typer."""
    import typer

    def root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ) -> None:
        """mqd: operate an Alpaca trading system from the terminal and from cron."""

    return root


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

    import typer

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
    for info in typer_app.registered_commands:
        if info.callback and not getattr(info.callback, "__mqd_guarded__", False):
            from mqd_cli.commands._common import with_log_level

            name = f"{prefix}{info.name or info.callback.__name__}"
            info.callback = _guard(with_log_level(info.callback, name))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance, f"{prefix}{group.name or ''} ")


def build_app(
    modules: tuple[str, ...] = COMMAND_MODULES,
    *,
    completion: bool | None = None,
    only: tuple[str, str] | None = None,
) -> typer.Typer:
    """The root app with the commands of ``modules`` registered, every callback guarded.

    The whole app has typer's shell completion (``--install-completion``, ``--show-completion``
    and the ``_MQD_COMPLETE`` protocol the installed script speaks); the slim apps ``main()``
    builds for a named command or ``--version`` never reach a root option, so they skip it.
    ``completion`` overrides that (the root help shows the options). ``only`` = (group,
    command) keeps just that command of the group (``mqd config show`` needs no ``init``).
    """
    import typer

    root_app = typer.Typer(
        name="mqd",
        help="mqd: operate an Alpaca trading system from the terminal and from cron.\n\n"
        "Example: mqd run --config config.example.toml",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=modules == COMMAND_MODULES if completion is None else completion,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    root_app.callback()(_root_callback())
    for name in modules:
        importlib.import_module(f"mqd_cli.commands.{name}").register(root_app)
    if only is not None:
        _keep_only(root_app, *only)
    _guard_all(root_app)
    return root_app


def _keep_only(root_app: typer.Typer, group_name: str, name: str) -> None:
    """Drop the commands of group ``group_name`` other than ``name`` (when it has one of that
    name): typer would convert each of them for click, only for the one named to run."""
    from typer.main import get_command_name

    for group in root_app.registered_groups:
        sub = group.typer_instance
        if group.name != group_name or sub is None:
            continue
        commands = [
            c
            for c in sub.registered_commands
            if (c.name or get_command_name(getattr(c.callback, "__name__", ""))) == name
        ]
        groups = [g for g in sub.registered_groups if g.name == name]
        if commands or groups:
            sub.registered_commands, sub.registered_groups = commands, groups


def _root_listing():
    """The root command for ``mqd --help`` (and a bare ``mqd``): the root options, and each
    command as a stand-in that carries only its summary (``ROOT_COMMANDS``). The help only
    lists them, so no command module is imported and no command is converted for click."""
    import typer.main
    from typer.core import TyperCommand

    root = typer.main.get_command(build_app((), completion=True))
    for name, _module, summary in ROOT_COMMANDS:
        root.commands[name] = TyperCommand(name, help=summary)  # type: ignore[attr-defined]
    return root


@functools.cache
def full_app() -> typer.Typer:
    """The whole app, every command registered: built once, on first use."""
    return build_app()


def __getattr__(name: str) -> Any:
    """``mqd_cli.app.app`` is the whole app, built on first access (``from mqd_cli.app import
    app`` in tests and tools), so that importing this module stays cheap."""
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _defer_unset_coercion(command) -> None:
    """Skip typer's pydantic-backed coercion where it cannot change the value.

    typer builds a pydantic TypeAdapter for a parameter the first time it processes a value,
    even ``None`` (an option left out, or the implicit ``--help`` flag) or a default, and
    importing pydantic costs more than all of typer. Coercion is the identity for:

    * ``None`` (an unset option);
    * a ``str``, ``int`` or ``float`` that already is the declared type and inside its
      ``min``/``max`` (a default, a given ``str``);
    * a ``Path`` (``--config PATH``): the ``Path(text)`` pydantic would make goes straight
      to typer's own path checks, when it prints as the text given (so any message about
      it is word for word typer's).

    Every other value goes through typer's own coercion unchanged. Only private typer
    attributes are touched, and only when they exist: a typer without them just runs as it is.
    bench/startup.py measures the difference.
    """
    try:
        from pathlib import Path

        from typer._coercion import build_runtime_param
        from typer._param_types import coerce_cli_path
    except ImportError:
        return

    def unchanged(value, desc) -> bool:
        info = desc.parameter_info
        if type(value) is not desc.annotation or info.parser is not None:
            return False
        if desc.annotation is str:
            return True
        low, high = info.min, info.max
        return (low is None or value >= low) and (high is None or value <= high)

    def plain_path(value, desc) -> bool:
        info = desc.parameter_info
        return (
            desc.annotation is Path
            and type(value) is str
            and desc.file_annotation is None
            and info.parser is None
            and info.path_type is None
            and str(Path(value)) == value
        )

    class _UnsetFastPath:
        def coerce(self, value, param, ctx):
            if not (param.multiple or param.nargs == -1):
                desc = param.type_descriptor
                if value is None:
                    return None
                if desc.annotation in (str, int, float) and unchanged(value, desc):
                    return value
                if plain_path(value, desc):
                    info = desc.parameter_info
                    return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
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
    import typer.main

    first = next((a for a in argv if not a.startswith("-")), None)
    wants_help = bool({"-h", "--help"} & set(argv))
    if first is None and "--version" in argv and not wants_help:
        return typer.main.get_command(build_app(()))  # eager: no command is ever reached
    if first is None and (wants_help or not argv) and "_MQD_COMPLETE" not in os.environ:
        return _root_listing()  # the root help: eager, or `mqd` alone; no command is reached
    module = _MODULE_OF.get(first or "", first)
    if module in COMMAND_MODULES:
        # `mqd GROUP COMMAND ...`: only that command of the group (`mqd GROUP --help COMMAND`
        # shows the group's help, so the words must come first, in that order).
        only = (argv[0], argv[1]) if len(argv) > 1 and argv[0] == first else None
        command = typer.main.get_command(build_app((module,), only=only))
        if first in getattr(command, "commands", {}):
            return command
    return typer.main.get_command(full_app())


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
    argv = sys.argv[1:]
    if argv == ["--version"] and "_MQD_COMPLETE" not in os.environ:
        sys.stdout.write(f"mqd {__version__}\n")  # what the eager option prints, without typer
        sys.exit(0)
    import typer
    from typer.exceptions import TyperException

    command = _command_for(argv)
    _defer_unset_coercion(command)
    if {"-h", "--help"} & set(argv):
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
    import typer.main

    root = typer.main.get_command(full_app())

    def walk(cmd, prefix):
        for name, sub in getattr(cmd, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            children = getattr(sub, "commands", None)
            yield path, sub, children is None
            if children is not None:
                yield from walk(sub, path)

    return list(walk(root, ""))
