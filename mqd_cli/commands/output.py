"""Rendering for commands: JSON documents, JSON lines, rich tables, stderr messages.

With ``--json`` stdout carries one JSON document (or JSON lines for streams) and nothing else;
every message goes to stderr. rich is imported only when a table is actually drawn.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

from mqd_cli.errors import ExitCode  # re-exported: the one exit-code enum

__all__ = ["ExitCode", "Output", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    from mqd_cli.config.fields import Secret
    from mqd_cli.durations import format_duration

    if isinstance(value, Secret):
        return value.describe()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


class Output:
    def __init__(
        self,
        json_mode: bool = False,
        verbose: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ):
        self.json_mode = json_mode
        self.verbose = verbose
        self._stdout = stdout
        self._stderr = stderr

    @property
    def stdout(self) -> TextIO:
        return self._stdout or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    # -- stdout --------------------------------------------------------------------------------

    def json(self, document: Any) -> None:
        self.stdout.write(json.dumps(to_jsonable(document), indent=2, sort_keys=False) + "\n")
        self.stdout.flush()

    def json_line(self, document: Any) -> None:
        self.stdout.write(json.dumps(to_jsonable(document), separators=(",", ":")) + "\n")
        self.stdout.flush()

    def line(self, text: str = "") -> None:
        """A plain line on stdout (only outside --json)."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def console(self):
        from rich.console import Console

        return Console(file=self.stdout, highlight=False, soft_wrap=True)

    def table(
        self,
        title: str | None,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        styles: Sequence[str | None] | None = None,
    ) -> None:
        from rich.table import Table

        # A table whose columns have no names (key/value summaries) draws no header row.
        t = Table(title=title, title_justify="left", header_style="bold", show_header=any(columns))
        for i, col in enumerate(columns):
            style = styles[i] if styles and i < len(styles) else None
            t.add_column(col, style=style)
        for row in rows:
            t.add_row(*("" if v is None else str(v) for v in row))
        self.console().print(t)

    # -- stderr --------------------------------------------------------------------------------

    def info(self, message: str) -> None:
        self.stderr.write(message + "\n")
        self.stderr.flush()

    def warn(self, message: str) -> None:
        self.info(f"warning: {message}")

    def debug(self, message: str) -> None:
        if self.verbose:
            self.info(message)
