"""``load_strategy``: the ``[strategy]`` table -> a ready ``Strategy`` instance.

``name`` is a built-in (``sma_cross``, ``buy_and_hold``), ``"package.module:Class"`` imported
from ``sys.path``, or ``"path/to/file.py:Class"`` loaded from a file (relative paths are taken
from ``base_dir``, typically the config file's directory, else the working directory).
``[strategy.params]`` is validated against the class's ``PARAMS`` when it declares them (a class
without ``PARAMS`` receives the table as given). Every problem is a ``ConfigError`` (exit 2)
naming the TOML path.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from mqd_cli.config.settings import StrategySettings
from mqd_cli.errors import ConfigError
from mqd_cli.strategies.base import Strategy, validate_params


def builtin_strategies() -> dict[str, type]:
    from mqd_cli.strategies.buy_and_hold import BuyAndHold
    from mqd_cli.strategies.sma_cross import SmaCross

    return {"sma_cross": SmaCross, "buy_and_hold": BuyAndHold}


_HOOKS = ("on_start", "on_bar", "on_fill", "on_stop")


def load_strategy(settings: StrategySettings, *, base_dir: Path | None = None) -> Strategy:
    """Build the configured strategy with validated params; ``ConfigError`` on any problem."""
    cls = resolve_strategy_class(settings.name, base_dir=base_dir)
    label = getattr(cls, "name", "") or cls.__name__
    spec = getattr(cls, "PARAMS", None)
    params: dict[str, Any] = dict(settings.params)
    if spec is not None:
        params = validate_params(spec, params, strategy=label)
        check = getattr(cls, "check_params", None)
        if callable(check):
            check(params, "strategy.params")
    try:
        instance = cls(params=params, symbols=tuple(settings.symbols))
    except TypeError as exc:
        raise ConfigError(
            [f"strategy.name: cannot construct {settings.name!r}: {exc}"],
            "a strategy class must accept (params=dict, symbols=tuple); subclass "
            "mqd_cli.strategies.base.BaseStrategy to get that for free",
        ) from exc
    if not getattr(instance, "name", ""):
        instance.name = cls.__name__
    return instance


def resolve_strategy_class(name: str, *, base_dir: Path | None = None) -> type:
    builtins = builtin_strategies()
    if name in builtins:
        return builtins[name]
    if ":" not in name:
        import difflib

        near = difflib.get_close_matches(name, list(builtins), n=1, cutoff=0.6)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ConfigError(
            [f"strategy.name: unknown strategy {name!r}{hint}"],
            f"use a built-in ({', '.join(sorted(builtins))}), 'package.module:Class' or "
            "'path/to/file.py:Class'",
        )
    where, _, class_name = name.rpartition(":")
    if not where or not class_name.isidentifier():
        raise ConfigError(
            [f"strategy.name: {name!r} is not 'module:Class' or 'path/to/file.py:Class'"],
            "use a built-in name (sma_cross, buy_and_hold) or point at your class",
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(where, base_dir)
    else:
        module = _import_module(where)
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        found = sorted(
            n
            for n, v in vars(module).items()
            if inspect.isclass(v) and v.__module__ == module.__name__
        )
        raise ConfigError(
            [f"strategy.name: {where} has no class {class_name!r}"],
            f"classes defined there: {', '.join(found) or 'none'}",
        )
    missing = [h for h in _HOOKS if not callable(getattr(cls, h, None))]
    if missing:
        raise ConfigError(
            [f"strategy.name: {class_name} is not a strategy: it lacks {', '.join(missing)}"],
            "subclass mqd_cli.strategies.base.BaseStrategy and override on_bar",
        )
    return cls


def _import_module(dotted: str):
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name and dotted.startswith(exc.name):
            raise ConfigError(
                [f"strategy.name: module {dotted!r} not found"],
                "install it, add its directory to PYTHONPATH, or use 'path/to/file.py:Class'",
            ) from exc
        raise _import_failed(dotted, exc) from exc
    except Exception as exc:
        raise _import_failed(dotted, exc) from exc


def _load_file(where: str, base_dir: Path | None) -> Any:
    path = Path(where).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(
            [f"strategy.name: strategy file {where!r} not found (looked at {path})"],
            "relative paths are resolved from the config file's directory",
        )
    module_name = "mqd_user_strategy_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(
            [f"strategy.name: cannot load {path} as Python"],
            "the file must be a Python module (a .py file) defining the class",
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise _import_failed(str(path), exc) from exc
    return module


def _import_failed(where: str, exc: BaseException) -> ConfigError:
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        detail = f"SyntaxError at line {exc.lineno}: {exc.msg}"
    return ConfigError(
        [f"strategy.name: importing {where} failed: {detail}"],
        "run the file with python to see the full traceback",
    )
