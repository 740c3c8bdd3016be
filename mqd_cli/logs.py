"""Where mqd's log records go: stderr and the ``[log] file``, every line scrubbed of secrets.

``LogSetup`` attaches handlers to the ``mqd`` and ``mqd_cli`` loggers (never the root logger, so
a library's own records, httpx's request lines with their URLs included, stay out) and
``close()`` puts back what was there:

* stderr: ``warning: message`` lines at ``stderr_level`` (None: nothing on stderr);
* the file: text lines ``2026-01-05T14:30:00.123+00:00 INFO mqd run[4242] mqd.run: message``
  (the command and its process, then the logger), or JSON lines (``time``, ``level``,
  ``command``, ``pid``, ``logger``, ``message``, ``event`` when the record has one,
  ``exception``), rotated by size: ``mqd.log`` becomes ``mqd.log.1`` past ``max_bytes``, and
  ``backups`` old files are kept.

Every line, tracebacks included, goes through ``config.loading.redact``: the value of every
``Secret`` this process built (API keys, webhook and heartbeat URLs) and of every environment
variable whose name looks secret is replaced by ``***`` before it is written.

Rotation is per process: two processes writing one file each rotate it on their own (the
other keeps writing to the renamed file until it rotates too), so give processes that run at
the same time their own file (a cron job's config can name another ``[log] file``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mqd_cli.config.loading import redact
from mqd_cli.errors import UsageError

if TYPE_CHECKING:
    from mqd_cli.config.settings import LogSettings

LOGGERS = ("mqd", "mqd_cli")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
OFF = logging.CRITICAL + 10  # a logger level no record reaches


def parse_level(text: str) -> int:
    """``--log-level`` text to a level; UsageError naming the choices otherwise."""
    level = LEVELS.get(text.strip().lower())
    if level is None:
        raise UsageError(
            f"--log-level: {text!r} is not a level",
            f"use one of {', '.join(LEVELS)}",
        )
    return level


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """One line per record (a traceback follows it), secrets replaced by ``***``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return _time(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class StderrFormatter(TextFormatter):
    """``warning: message``, in the voice of mqd's own messages."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


class CommandTag(logging.Filter):
    """Names the command on every record our handlers write (``record.command``, and
    ``record.program``: ``mqd symbols sync``)."""

    def __init__(self, command: str):
        super().__init__()
        self.command = command
        self.program = f"mqd {command}" if command else "mqd"

    def filter(self, record: logging.LogRecord) -> bool:
        record.command = self.command
        record.program = self.program
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; secrets replaced by ``***`` in every text field."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "command": getattr(record, "command", ""),
            "pid": record.process,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        event = getattr(record, "event", None)
        if event is not None:
            doc["event"] = str(event)
        if record.exc_info:
            doc["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


def file_handler(settings: LogSettings, level: int, command: str = "") -> logging.Handler:
    """The ``[log] file`` handler: rotated by size, text or JSON lines. The directory is
    created; a path that cannot be written raises ``OSError`` (a state error, exit 4)."""
    import logging.handlers  # socket and pickle come with it: only when a file is asked for

    path = Path(settings.file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8"
    )
    if settings.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            TextFormatter(
                "%(asctime)s %(levelname)s %(program)s[%(process)d] %(name)s: %(message)s"
            )
        )
    handler.addFilter(CommandTag(command))
    handler.setLevel(level)
    return handler


def stderr_handler(level: int, *, detailed: bool) -> logging.Handler:
    """Records on stderr (the stream at the time of the call, so a captured one too):
    ``warning: message``, or ``WARNING mqd.run: message`` when ``detailed``."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        TextFormatter("%(levelname)s %(name)s: %(message)s") if detailed else StderrFormatter()
    )
    handler.setLevel(level)
    return handler


class LogSetup:
    """Handlers on the ``mqd`` loggers for one command; ``close()`` restores them."""

    def __init__(
        self,
        settings: LogSettings,
        *,
        stderr_level: int | None,
        file_level: int | None = None,
        detailed: bool = False,
        command: str = "",
    ):
        """``stderr_level`` None keeps stderr quiet; ``file_level`` None takes ``[log]
        level``. No file is written when ``[log] file`` is empty. The file's lines name
        ``command`` (``run``, ``symbols sync``)."""
        handlers: list[logging.Handler] = []
        if settings.file.strip():
            level = file_level if file_level is not None else LEVELS[settings.level]
            handlers.append(file_handler(settings, level, command))
        if stderr_level is not None:
            handlers.append(stderr_handler(stderr_level, detailed=detailed))
        self.handlers = handlers
        lowest = min((h.level for h in handlers), default=OFF)
        # NullHandler: with no handler of ours at all, logging's last resort would print
        # warnings on stderr anyway.
        self._null = logging.NullHandler()
        self._saved: list[tuple[logging.Logger, int]] = []
        for name in LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level))
            logger.setLevel(lowest)
            logger.addHandler(self._null)
            for handler in handlers:
                logger.addHandler(handler)

    def close(self) -> None:
        for logger, level in self._saved:
            logger.setLevel(level)
            logger.removeHandler(self._null)
            for handler in self.handlers:
                logger.removeHandler(handler)
        for handler in self.handlers:
            handler.close()
        self._saved = []
