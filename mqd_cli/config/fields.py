"""What the settings schema is declared with: ``Secret``, ``setting()``, ``table()`` and
``frozen_dataclass``.

Shared by the schema (``settings.py``) and the machinery that loads, validates and renders it
(``config.py``), so neither imports the other's internals.
"""

from __future__ import annotations

import os
import reprlib
from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

# Everything a Secret could reveal, so error messages and logs can be scrubbed (config.redact()).
_SECRET_ENV_NAMES: set[str] = set()
_LITERAL_SECRETS: set[str] = set()


class Secret:
    """A credential. Never printed: ``str``/``repr`` are redacted; ``reveal()`` gives the value.

    ``env:NAME`` reads the environment variable NAME when revealed.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: str):
        self._raw = raw
        if raw.startswith("env:"):
            _SECRET_ENV_NAMES.add(raw[4:])
        elif raw:
            _LITERAL_SECRETS.add(raw)

    @property
    def from_env(self) -> str | None:
        return self._raw[4:] if self._raw.startswith("env:") else None

    def reveal(self) -> str:
        name = self.from_env
        if name is not None:
            return os.environ.get(name, "")
        return self._raw

    def is_set(self) -> bool:
        return bool(self.reveal())

    def describe(self) -> str:
        """Safe description: where the secret comes from, never its value."""
        name = self.from_env
        if name is not None:
            state = "set" if os.environ.get(name) else "not set"
            return f"env:{name} ({state})"
        return "<redacted literal>" if self._raw else "<empty>"

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(("secret", self._raw))


def known_secret_values() -> set[str]:
    """Every value a Secret ever constructed in this process could reveal (empty ones included):
    the current value of each ``env:`` variable named, and each literal."""
    return {os.environ.get(n, "") for n in _SECRET_ENV_NAMES} | _LITERAL_SECRETS


def setting(default: Any, doc: str, *, min: Any = None, max: Any = None, secret: bool = False):
    """A documented settings field. ``min``/``max`` bound numbers and durations (inclusive)."""
    meta = {"doc": doc, "min": min, "max": max, "secret": secret}
    if isinstance(default, list | dict):

        def fresh_copy() -> Any:
            return type(default)(default)

        return field(default_factory=fresh_copy, metadata=meta)
    return field(default=default, metadata=meta)


def table(cls: type, doc: str = ""):
    """A nested table field whose defaults come from ``cls()``."""
    return field(default_factory=cls, metadata={"doc": doc or (cls.__doc__ or "").strip()})


# -- frozen_dataclass: @dataclass(frozen=True) without compiling methods per class ---------------


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen_dataclass(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True)``, cheaper to import: for the schema's tables.

    The dataclass machinery compiles every method it generates (six per class, the ``__init__``
    of a table with many defaults a long one), and over the schema's twenty tables that took
    longer than importing typer: every command paid for it before reading its config
    (bench/startup.py). Here the class is still a dataclass (``fields``, ``replace``,
    ``asdict``, mypy) but nothing is generated: ``__init__``, ``repr``, ``==``, ``hash`` and the
    frozen ``__setattr__``/``__delattr__`` are the same code for every class, written once
    below, and behave as the generated ones, error messages included (tests/test_startup.py
    compares them). Not supported, as the schema needs none of them: ``InitVar``,
    ``kw_only``, ``slots`` and ``inspect.signature`` of the class.
    """
    frozen_cls = dataclass(cls, init=False, repr=False, eq=False)
    _FROZEN.add(frozen_cls)
    for name, method in _FROZEN_METHODS.items():
        if name not in frozen_cls.__dict__:  # like dataclass: a method the class defines stays
            setattr(frozen_cls, name, method)
    return frozen_cls


_FROZEN: set[type] = set()


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = self.__class__
    init = [f for f in fields(cls) if f.init]
    required = [f.name for f in init if f.default is MISSING and f.default_factory is MISSING]
    where = f"{cls.__qualname__}.__init__()"
    if len(args) > len(init):
        low, high = len(required) + 1, len(init) + 1
        takes = f"from {low} to {high}" if low != high else str(high)
        plural = "" if high == 1 else "s"
        raise TypeError(
            f"{where} takes {takes} positional argument{plural} but {len(args) + 1} were given"
        )
    values = dict(zip((f.name for f in init), args, strict=False))
    for name, value in kwargs.items():
        if name in values:
            raise TypeError(f"{where} got multiple values for argument {name!r}")
        if not any(f.name == name for f in init):
            raise TypeError(f"{where} got an unexpected keyword argument {name!r}")
        values[name] = value
    missing = [repr(name) for name in required if name not in values]
    if missing:
        names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1])
        if len(missing) == 2:
            names += f" and {missing[1]}"
        elif len(missing) > 2:
            names += f", and {missing[-1]}"
        plural = "" if len(missing) == 1 else "s"
        raise TypeError(
            f"{where} missing {len(missing)} required positional argument{plural}: {names}"
        )
    for f in fields(cls):
        if f.name in values:
            value = values[f.name]
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        else:
            value = f.default
        object.__setattr__(self, f.name, value)
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
    return f"{self.__class__.__qualname__}({shown})"


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is self.__class__:
        return _compared(self) == _compared(other)
    return NotImplemented


def _compared(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in fields(obj) if f.compare)


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, f.name) for f in fields(self) if _hashed(f)))


def _hashed(f: Any) -> bool:
    return bool(f.compare if f.hash is None else f.hash)


def _setattr(self: Any, name: str, value: Any) -> None:
    if type(self) in _FROZEN or name in self.__dataclass_fields__:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _delattr(self: Any, name: str) -> None:
    if type(self) in _FROZEN or name in self.__dataclass_fields__:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


_FROZEN_METHODS = {
    "__init__": _init,
    "__repr__": _repr,
    "__eq__": _eq,
    "__hash__": _hash,
    "__setattr__": _setattr,
    "__delattr__": _delattr,
}
