"""Configuration machinery: discovery, TOML loading, strict validation, rendering, redaction.

The schema (one frozen dataclass per TOML table) is in ``config/settings.py`` and the field
primitives (``Secret``, ``setting``, ``table``) in ``config/fields.py``. Validation collects
every problem (unknown key with a "did you mean", wrong type, bad duration, out-of-range
number) with its TOML path, and raises one ``ConfigError`` holding all of them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from mqd_cli.config.fields import Secret, frozen_dataclass, known_secret_values
from mqd_cli.config.settings import (
    Settings,
)
from mqd_cli.durations import format_duration, parse_duration
from mqd_cli.errors import ConfigError, short_repr

ENV_CONFIG = "MQD_CONFIG"


# -- loading ------------------------------------------------------------------------------------


@frozen_dataclass
class LoadedConfig:
    """Settings plus where they came from."""

    settings: Settings
    path: Path | None  # None: built-in defaults
    origin: str  # "--config", "$MQD_CONFIG", "user config dir", "defaults"
    explicit_keys: frozenset[str]  # dotted TOML paths set in the file
    warnings: tuple[str, ...] = ()

    def source_of(self, dotted: str, value: Any) -> str:
        if isinstance(value, Secret) and value.from_env is not None:
            return "env"
        return "file" if dotted in self.explicit_keys else "default"


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("mqd")) / "config.toml"


def default_store_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("mqd")) / "mqd.db"


def discover(cli_path: str | Path | None) -> tuple[Path | None, str]:
    """The config file to use: --config, then $MQD_CONFIG, then the user config dir."""
    if cli_path:
        return Path(cli_path).expanduser(), "--config"
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser(), "$MQD_CONFIG"
    path = default_config_path()
    return (path, "user config dir") if path.exists() else (None, "defaults")


def load(cli_path: str | Path | None = None) -> LoadedConfig:
    path, origin = discover(cli_path)
    if path is None:
        return LoadedConfig(Settings(), None, origin, frozenset())
    if not path.exists():
        raise ConfigError(
            [f"config file {path} (from {origin}) does not exist"],
            "create one with `mqd config init`, or fix the path",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [f"cannot read config file {path}: {exc}"],
            "check the path and that the file is readable UTF-8 text",
        ) from exc
    return loads(text, path=path, origin=origin)


def loads(text: str, *, path: Path | None = None, origin: str = "string") -> LoadedConfig:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [f"{path or '<config>'}: TOML syntax error: {exc}"],
            "fix the syntax at that line and column",
        ) from exc
    problems: list[str] = []
    explicit: set[str] = set()
    settings = _build(Settings, data, "", problems, explicit)
    if problems:
        where = f"{path}: " if path else ""
        raise ConfigError(
            [f"{where}{p}" for p in problems], "see config.example.toml for every key"
        )
    warnings = tuple(_warnings(settings))
    return LoadedConfig(settings, path, origin, frozenset(explicit), warnings)


def _warnings(settings: Settings) -> list[str]:
    out = []
    for dotted, value, _f in iter_fields(settings):
        if isinstance(value, Secret) and value.from_env is None and value.reveal():
            out.append(
                f"{dotted} holds a literal secret in the file; prefer 'env:NAME' "
                "so the file can be shared safely"
            )
    return out


def _type_name(tp: Any) -> str:
    if tp is timedelta:
        return "a duration string like '90s', '30m', '1h', '2d'"
    if tp is Decimal:
        return "a decimal number or decimal string"
    if tp is Secret:
        return "a string ('env:NAME' or the value)"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list of strings"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _closest(word: str, choices: list[str]) -> str | None:
    """The choice ``word`` was most likely meant to be, for a "did you mean"."""
    import difflib

    near = difflib.get_close_matches(word, choices, n=1)
    return near[0] if near else None


def _convert(tp: Any, value: Any, path: str, meta: dict, problems: list[str]) -> Any:
    """Convert one TOML value to ``tp``; append a problem and return None when it does not fit."""
    bad = f"{path}: expected {_type_name(tp)}, got {short_repr(value)}"
    if meta.get("secret"):
        bad = f"{path}: expected {_type_name(tp)}, got a value of type {type(value).__name__}"
    try:
        if tp is Secret:
            if not isinstance(value, str):  # never coerce: a key of digits stays a string
                raise TypeError
            if value.startswith("env:") and not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
                problems.append(f"{path}: 'env:' must be followed by a variable name")
                return None
            return Secret(value)
        if tp is bool:
            if not isinstance(value, bool):
                raise TypeError
            out: Any = value
        elif tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            out = value
        elif tp is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise TypeError
        elif tp is Decimal:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError
            out = Decimal(str(value).strip())
            if not out.is_finite():
                raise TypeError
        elif tp is timedelta:
            if not isinstance(value, str):
                raise TypeError
            try:
                out = parse_duration(value)
            except ValueError:
                raise TypeError from None
        elif tp is str:
            if not isinstance(value, str):
                raise TypeError
            out = value
        elif typing.get_origin(tp) is Literal:
            choices = typing.get_args(tp)
            if value not in choices:
                near = _closest(str(value), [str(c) for c in choices])
                hint = f" (did you mean {near!r}?)" if near else ""
                problems.append(f"{bad}{hint}")
                return None
            out = value
        elif typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if not isinstance(value, list):
                raise TypeError
            items = []
            for i, v in enumerate(value):
                items.append(_convert(item, v, f"{path}[{i}]", {}, problems))
            out = items
        elif typing.get_origin(tp) is dict:
            _, item = typing.get_args(tp)
            if not isinstance(value, dict):
                raise TypeError
            if item is Any:
                return dict(value)
            return {k: _convert(item, v, f"{path}.{k}", {}, problems) for k, v in value.items()}
        elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise TypeError
            return _build(tp, value, path + ".", problems, None)
        else:  # pragma: no cover - a schema bug, not user input
            raise AssertionError(f"unsupported settings type {tp!r}")
    except (TypeError, InvalidOperation, ValueError):
        problems.append(bad)
        return None
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and out < lo:
        problems.append(f"{path}: must be at least {_fmt_bound(lo)}, got {_show_value(out)}")
        return None
    if hi is not None and out > hi:
        problems.append(f"{path}: must be at most {_fmt_bound(hi)}, got {_show_value(out)}")
        return None
    return out


def _fmt_bound(b: Any) -> str:
    return format_duration(b) if isinstance(b, timedelta) else str(b)


def _show_value(v: Any) -> str:
    return repr(format_duration(v)) if isinstance(v, timedelta) else short_repr(v)


def _build(cls: type, data: dict, prefix: str, problems: list[str], explicit: set[str] | None):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            near = _closest(key, list(fields))
            hint = f" (did you mean '{prefix}{near}'?)" if near else ""
            known = ", ".join(sorted(fields))
            problems.append(f"{path}: unknown key{hint}; known keys here: {known}")
            continue
        f = fields[key]
        tp = hints[key]
        if explicit is not None and not dataclasses.is_dataclass(tp):
            explicit.add(path)
        sub_explicit = explicit
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                problems.append(f"{path}: expected a table [{path}], got {short_repr(value)}")
                continue
            converted = _build(tp, value, path + ".", problems, sub_explicit)
        else:
            converted = _convert(tp, value, path, dict(f.metadata), problems)
        if converted is not None:
            kwargs[key] = converted
    try:
        return cls(**kwargs)
    except TypeError:  # a missing nested table after errors: defaults for the rest
        return cls()


def iter_fields(obj: Any, prefix: str = ""):
    """Yield ``(dotted path, value, field)`` for every leaf setting, tables depth first."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, path + ".")
        else:
            yield path, value, f


def plain(value: Any) -> Any:
    """A JSON/TOML-friendly rendering of a setting value, secrets described not revealed."""
    return _render(value, Secret.describe)


def to_toml_value(value: Any) -> Any:
    """The value as written in a config file (secrets keep their ``env:`` reference only)."""
    return _render(value, lambda s: f"env:{s.from_env}" if s.from_env else "")


def _render(value: Any, secret: Callable[[Secret], str]) -> Any:
    """``value`` as plain data: durations and decimals as strings, tables as dicts, each
    secret as ``secret(it)`` says."""
    if isinstance(value, Secret):
        return secret(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Decimal):
        return str(value)
    if dataclasses.is_dataclass(value):
        return {f.name: _render(getattr(value, f.name), secret) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _render(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render(v, secret) for v in value]
    return value


def store_path(settings: Settings) -> Path:
    return Path(settings.store.path).expanduser() if settings.store.path else default_store_path()


# -- redaction ----------------------------------------------------------------------------------

_SECRET_ENV_HINTS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "WEBHOOK")


def redact(text: str, settings: Settings | None = None) -> str:
    """Replace every secret value this process could know with ``***``.

    Covers environment variables whose names look secret, every ``env:`` variable named by a
    ``Secret`` ever constructed, and literal secrets from the settings.
    """
    values = {v for k, v in os.environ.items() if any(h in k.upper() for h in _SECRET_ENV_HINTS)}
    values |= known_secret_values()
    if settings is not None:
        values |= {v.reveal() for _, v, _ in iter_fields(settings) if isinstance(v, Secret)}
    for value in sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


# -- writing ------------------------------------------------------------------------------------


def render_commented(settings: Settings | None = None) -> str:
    """A complete, commented TOML file for ``settings`` (default: the built-in defaults).

    Every key is written with its documentation as a comment above it; secrets are written as
    their ``env:`` reference only. Used by ``mqd config init``.
    """
    import tomli_w

    settings = settings or Settings()
    lines = [
        "# mqd configuration. Every key is optional; the value shown is the default.",
        "# Durations: '250ms', '90s', '30m', '1h', '2d'. Money: a decimal string.",
        "",
    ]

    def emit_table(obj: Any, name: str) -> None:
        scalars: list[tuple[dataclasses.Field[Any], Any]] = []
        tables: list[tuple[dataclasses.Field[Any], Any]] = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            (tables if dataclasses.is_dataclass(value) else scalars).append((f, value))
        if name:
            doc = (type(obj).__doc__ or "").strip()
            lines.append(f"# {doc}" if doc else "")
            lines.append(f"[{name}]")
        for f, value in scalars:
            lines.append(f"# {f.metadata.get('doc', '')}")
            rendered = to_toml_value(value)
            if isinstance(rendered, dict) and not rendered:
                lines.append(f"# [{name + '.' if name else ''}{f.name}] (a table, empty)")
                continue
            lines.append(tomli_w.dumps({f.name: rendered}).strip())
        lines.append("")
        for f, value in tables:
            emit_table(value, f"{name}.{f.name}" if name else f.name)

    emit_table(settings, "")
    return "\n".join(lines).rstrip() + "\n"
