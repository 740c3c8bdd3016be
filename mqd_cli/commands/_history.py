"""What the history commands share (``mqd orders``, ``fills``, ``trades``, ``positions``,
``pnl``, ``runs``): their filter and paging options, reading them, and rendering pages.

Imported when the app is built: nothing heavy at module level.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mqd_cli.errors import UsageError

if TYPE_CHECKING:
    from mqd_cli.commands._common import Cli
    from mqd_cli.history.query import Filters, HistorySource, Paged

SymbolOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--symbol",
        "-s",
        metavar="SYMBOL",
        help="Only this symbol (repeat, or separate with commas, for more).",
        show_default=False,
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="From this time on: RFC 3339, YYYY-MM-DD (UTC), or a span back from now (2h, 7d).",
        show_default=False,
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="WHEN",
        help="Before this time (same forms as --since).",
        show_default=False,
    ),
]
StrategyOpt = Annotated[
    str | None,
    typer.Option(
        "--strategy",
        metavar="NAME",
        help="Only this strategy (e.g. sma_cross).",
        show_default=False,
    ),
]
RunOpt = Annotated[
    int | None,
    typer.Option(
        "--run",
        metavar="ID",
        min=1,
        help="Only what run ID did, in the journal it traded on (ids: `mqd runs`).",
        show_default=False,
    ),
]
SessionOpt = Annotated[
    str | None,
    typer.Option(
        "--session",
        metavar="NAME",
        help='Read this kept sim session (default with broker = "sim": the latest).',
        show_default=False,
    ),
]
LimitOpt = Annotated[
    int, typer.Option("--limit", metavar="N", min=1, help="Show at most N rows, the newest.")
]
OffsetOpt = Annotated[
    int,
    typer.Option("--offset", metavar="N", min=0, help="Skip the N newest rows first (page back)."),
]
DEFAULT_LIMIT = 50


def parse_when(text: str, option: str, now: datetime) -> datetime:
    """RFC 3339, ``YYYY-MM-DD[ HH:MM[:SS]]`` (UTC when no zone is given), or a span back from
    ``now`` (``2h``, ``7d``)."""
    from mqd_cli.durations import parse_duration
    from mqd_cli.wire.parse import as_utc

    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is neither a time nor a span",
            f"use RFC 3339, YYYY-MM-DD (UTC) or a span back from now: {option} 2026-01-05,"
            f" {option} 2026-01-05T14:30:00Z or {option} 2h",
        ) from None


def symbols_of(values: list[str] | None) -> list[str]:
    out = [s.strip().upper() for v in values or () for s in v.split(",") if s.strip()]
    for s in out:
        if any(c.isspace() for c in s) or len(s) > 32:
            raise UsageError(f"--symbol {s!r} is not a symbol", "for example --symbol AAPL")
    return out


def filters(
    now: datetime,
    symbol: list[str] | None,
    since: str | None,
    until: str | None,
    strategy: str | None,
) -> Filters:
    """The filter options, checked: a time each, and --since before --until."""
    from mqd_cli.history.query import Filters

    start = parse_when(since, "--since", now) if since else None
    end = parse_when(until, "--until", now) if until else None
    if start is not None and end is not None and start >= end:
        raise UsageError(
            f"--since {since} is not before --until {until}",
            "the window is [--since, --until): put the earlier time first",
        )
    name = strategy.strip() if strategy is not None else None
    if strategy is not None and not name:
        raise UsageError("--strategy is empty", "name a strategy, for example --strategy sma_cross")
    return Filters.of(symbols_of(symbol), name, start, end)


def source(c: Cli, session: str | None, run: int | None) -> HistorySource:
    """The journal to read, said on stderr when it is a sim session the options did not name."""
    src = c.services.history(session=session, run=run)
    if src.session is not None and session is None and run is None:
        c.out.info(f"session: {src.session} (the latest sim session; --session NAME for another)")
    elif src.session is None and c.services.is_sim and run is None:
        c.out.info("note: no sim session is kept yet; `mqd run` keeps one per run")
    return src


def source_doc(src: HistorySource, f: Filters) -> dict[str, Any]:
    return {
        "store": str(src.journal),
        "session": src.session,
        "run": src.run.id if src.run is not None else None,
        "as_of": src.clock.now(),
        "filters": {
            "symbols": list(f.symbols),
            "strategy": f.strategy,
            "since": f.since,
            "until": f.until,
        },
    }


def title(name: str, page: Paged[Any], src: HistorySource | None = None) -> str:
    parts = [p for p in (page.label(), _where(src)) if p]
    return f"{name} ({'; '.join(parts)})" if parts else name


def _where(src: HistorySource | None) -> str:
    if src is None:
        return ""
    where = f"sim session {src.session}" if src.session is not None else ""
    if src.run is not None:
        where = f"run {src.run.id}" + (f" in {where}" if where else "")
    return where


def listing(
    c: Cli, heading: str, header: Sequence[str], rows: Iterable[Sequence[Any]], right: str = ""
) -> None:
    """A title line, then aligned columns (two spaces apart) with a header: one line per row,
    never wrapped, so it pipes into grep and less. Columns whose header is in ``right`` are
    numbers and align right."""
    table = [list(header)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    numeric = [bool(h) and h in right.split(",") for h in header]
    c.out.line(heading)
    for r in table:
        cells = [
            v.rjust(w) if num_ else v.ljust(w)
            for v, w, num_ in zip(r, widths, numeric, strict=True)
        ]
        c.out.line("  ".join(cells).rstrip())


def nothing(c: Cli, what: str, page: Paged[Any]) -> bool:
    """Say so when there is nothing to show (stdout); True then."""
    if page.items:
        return False
    if page.total:
        c.out.line(f"no {what} past --offset {page.offset} ({page.total} match)")
    else:
        c.out.line(f"no {what} match")
    return True


def num(value: Decimal | None) -> str:
    """A quantity or price as exact as stored, without trailing zeros."""
    if value is None:
        return "-"
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def price(value: Decimal | None) -> str:
    """A price with two decimals at least and four at most (eight below 1): an average of
    fills can carry many more digits."""
    if value is None:
        return "-"
    step = Decimal("0.0001") if abs(value) >= 1 else Decimal("0.00000001")
    text = num(value.quantize(step))
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def span(value: timedelta) -> str:
    """How long: ``45s``, ``12m``, ``3h05m``, ``2d 4h``."""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def text(value: Any) -> str:
    """An enum as its value, anything else as str."""
    return str(getattr(value, "value", value))
