"""What the settings schema is declared with: ``Secret``, ``setting()`` and ``table()``.

Shared by the schema (``settings.py``) and the machinery that loads, validates and renders it
(``config.py``), so neither imports the other's internals.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Any

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
