"""Exit codes and the domain errors that map onto them.

Core modules raise these; the one error boundary in ``app.py`` turns them into a one-line
``error: ...`` message plus a hint on stderr and the matching exit code.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    FOUND = 1  # the check found something: drift, invalid orders, a failed doctor check
    USAGE = 2  # usage or configuration error
    BROKER = 3  # broker, network or authentication failure
    STATE = 4  # local state error: store unreadable, migration needed
    INTERNAL = 70  # a bug in mqd (EX_SOFTWARE): never 1, so `mqd reconcile || alert` is not fooled
    INTERRUPTED = 130


# The one exit-code table: what each code means for every command (README "Exit codes" shows
# it; each command's --help lists its codes from here, with its own words where it has them).
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.FOUND: "the check found something",
    ExitCode.USAGE: "bad options or config",
    ExitCode.BROKER: "the broker could not be reached or refused the keys",
    ExitCode.STATE: "the store or a file could not be read or written",
    ExitCode.INTERNAL: "an internal error (a bug)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
# Codes any command can end with: its own words may replace the meaning, never the code.
ALWAYS = (ExitCode.OK, ExitCode.USAGE, ExitCode.STATE, ExitCode.INTERNAL, ExitCode.INTERRUPTED)


def exit_codes_text(meanings: dict[ExitCode, str]) -> str:
    """``Exit codes: 0 done, 2 bad options or config, ...``: the codes in ``ALWAYS`` plus
    ``meanings`` (which also override the table's words), in numeric order."""
    codes = {c: EXIT_MEANINGS[c] for c in ALWAYS}
    codes.update(meanings)
    return "Exit codes: " + ", ".join(f"{int(c)} {codes[c]}" for c in sorted(codes)) + "."


class MqdError(Exception):
    """Base of every error the CLI reports as one line (exit 1 unless a subclass says
    otherwise: raise it for "the check found something")."""

    exit_code: ExitCode = ExitCode.FOUND

    def __init__(self, message: str, hint: str = "", *, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def lines(self) -> list[str]:
        """The lines the error boundary prints (without the ``error:`` prefix)."""
        return [self.message]


class UsageError(MqdError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """One or more configuration problems; each is printed on its own line."""

    def __init__(self, problems: list[str], hint: str = ""):
        self.problems = list(problems)
        super().__init__(problems[0] if problems else "invalid configuration", hint)

    def lines(self) -> list[str]:
        return self.problems


class StateError(MqdError):
    exit_code = ExitCode.STATE


# What the database or the OS says when the local state cannot be written: not a bug (exit 70)
# and never "found something" (exit 1), but a state error (exit 4) an operator can fix.
_STORAGE_TEXTS = (
    ("disk is full", "the disk is full", "free space on the disk that holds it"),
    (
        "readonly database",
        "the store is read-only",
        "make the store file and its directory writable",
    ),
    ("read-only file system", "the file system is read-only", "use a writable location"),
    ("unable to open database", "the store cannot be opened", "check the path and permissions"),
    ("disk i/o error", "a disk I/O error occurred", "check the disk"),
)
_STORAGE_ERRNOS = {
    2: "no such file or directory",
    13: "permission denied",
    17: "something already exists at that path",
    20: "a part of the path is not a directory",
    21: "it is a directory",
    28: "no space left on the device",
    30: "the file system is read-only",
    122: "the disk quota is exceeded",
}


def storage_error(exc: BaseException) -> StateError | None:
    """The ``StateError`` (exit 4) a full disk, a read-only store or an unwritable path raised
    as ``exc`` means, or None when ``exc`` is something else."""
    if type(exc).__module__ in ("sqlite3", "_sqlite3"):
        text = str(exc).lower()
        for needle, what, fix in _STORAGE_TEXTS:
            if needle in text:
                return StateError(f"the store could not be written: {what} ({exc})", fix)
        return None
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        where = f" ({exc.filename})" if exc.filename else ""
        return StateError(
            f"could not write{where}: {_STORAGE_ERRNOS[exc.errno]}",
            "check that the directory exists and is writable and the disk has space,"
            " or choose another path",
        )
    return None


class BrokerError(MqdError):
    """Broker, network or authentication failure (exit 3)."""

    exit_code = ExitCode.BROKER


# The broker call errors that layers below the brokers react to (the throttle retries on them)
# live here; ``mqd_cli.brokers.errors`` re-exports them beside the adapters' other errors.


class BrokerCallError(BrokerError):
    """Base of every broker failure. ``status`` is the HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        status: int | None = None,
        code: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code
        self.body = body or {}


class RateLimited(BrokerCallError):
    """429: the budget is spent. ``reset_at`` (from X-Ratelimit-Reset) or ``retry_after`` (s)."""

    def __init__(
        self,
        message: str = "rate limit exceeded",
        hint: str = "",
        *,
        reset_at: datetime | None = None,
        retry_after: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, hint or "wait for the rate-limit window to reset", **kw)
        self.reset_at = reset_at
        self.retry_after = retry_after


class BrokerUnavailable(BrokerCallError):
    """Network error, timeout or 5xx: the outcome of the request is unknown."""


def short_repr(value: Any, width: int = 60) -> str:
    """``value`` for an error message: its repr, cut to ``width`` characters."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's int->str digit limit
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= width else text[: width - 3] + "..."
