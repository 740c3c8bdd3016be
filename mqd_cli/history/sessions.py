"""Sim sessions: one database per ``mqd run`` on the simulated exchange, kept by name.

The simulated exchange lives in the memory of the process that runs it, so each sim run
journals into a database of its own, ``sim-sessions/<NAME>.db`` next to the configured store:
``NAME`` is ``--session NAME`` or the local UTC time the run began (``20260105T143000Z``). The
last ``KEEP_SESSIONS`` are kept; starting a new one removes the oldest beyond that (never one
whose run is still going). The configured store's ``runs`` table says which run each session
belongs to and keeps the run's summary after its session is removed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from mqd_cli.errors import UsageError

SESSIONS_DIR = "sim-sessions"
KEEP_SESSIONS = 20  # sim sessions kept on disk; the oldest beyond this go when a new one starts
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SUFFIXES = ("", "-wal", "-shm", "-journal")


def sessions_dir(store_path: Path) -> Path:
    """Where the sessions of the store at ``store_path`` live: next to it."""
    return store_path.expanduser().parent / SESSIONS_DIR


def session_path(store_path: Path, name: str) -> Path:
    return sessions_dir(store_path) / f"{name}.db"


def check_name(name: str) -> str:
    """A session name is a file name: letters, digits, ``.``, ``_`` and ``-``, up to 64."""
    text = name.strip()
    if text.endswith(".db"):
        text = text[:-3]
    if not _NAME.fullmatch(text):
        raise UsageError(
            f"--session {name!r} is not a session name",
            "use letters, digits, '.', '_' and '-' (up to 64, starting with a letter or digit),"
            " for example --session monday-demo",
        )
    return text


def default_name(now: datetime) -> str:
    """The name of an unnamed session: when it began, in UTC (``20260105T143000Z``)."""
    return f"{now:%Y%m%dT%H%M%SZ}"


def on_disk(store_path: Path) -> list[str]:
    """Names of the sessions whose database exists, in name order."""
    folder = sessions_dir(store_path)
    if not folder.is_dir():
        return []
    return sorted(p.name[:-3] for p in folder.glob("*.db") if p.is_file())


def create(store_path: Path, name: str | None, now: datetime) -> tuple[str, Path]:
    """Reserve a new session database (an empty file) and return its name and path.

    A given name must be new: a session's exchange ended with its run, so its journal cannot
    be continued. An unnamed session gets the time, with ``-2``, ``-3`` ... when that is taken.
    """
    folder = sessions_dir(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    if name is not None:
        name = check_name(name)
        path = session_path(store_path, name)
        try:
            path.open("x").close()
        except FileExistsError:
            raise UsageError(
                f"sim session {name!r} exists ({path})",
                "pick another --session name; a session's exchange ended with its run, so it"
                " cannot be continued",
            ) from None
        return name, path
    base = default_name(now)
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        path = session_path(store_path, candidate)
        try:
            path.open("x").close()
        except FileExistsError:
            continue
        return candidate, path
    raise UsageError(  # a thousand sessions begun in one second: something loops
        f"cannot name a new sim session in {folder}: {base} to {base}-999 are taken",
        "name it with --session NAME",
    )


def ordered(store_path: Path, by_runs: Sequence[str]) -> list[str]:
    """The sessions on disk, oldest first: those no run names (by file time), then those the
    runs table names, in the order of their runs (``by_runs``, oldest first)."""
    present = set(on_disk(store_path))
    known = [n for n in by_runs if n in present]
    seen = set(known)
    folder = sessions_dir(store_path)

    def mtime(name: str) -> float:
        try:
            return (folder / f"{name}.db").stat().st_mtime
        except OSError:
            return 0.0

    loose = sorted((n for n in present if n not in seen), key=lambda n: (mtime(n), n))
    return loose + known


def latest(store_path: Path, by_runs: Sequence[str]) -> str | None:
    """The newest session a run wrote (a reserved file with no run yet does not count);
    without any, the newest file."""
    present = set(on_disk(store_path))
    for name in reversed(list(by_runs)):
        if name in present:
            return name
    rest = ordered(store_path, ())
    return rest[-1] if rest else None


def prune(
    store_path: Path, by_runs: Sequence[str], *, keep: int, protect: Iterable[str] = ()
) -> list[str]:
    """Remove the oldest sessions beyond ``keep`` (never those in ``protect``); returns the
    names removed."""
    guarded = set(protect)
    names = ordered(store_path, by_runs)
    excess = len(names) - max(1, keep)
    removed: list[str] = []
    for name in names:
        if excess <= 0:
            break
        if name in guarded:
            continue
        remove(store_path, name)
        removed.append(name)
        excess -= 1
    return removed


def remove(store_path: Path, name: str) -> None:
    path = session_path(store_path, name)
    for suffix in _SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            Path(str(path) + suffix).unlink()
