"""`mqd symbols`: sync asset properties from the broker, validate orders, show what is stored."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits
from mqd_cli.errors import ExitCode

if TYPE_CHECKING:
    from rich.progress import TaskID

    from mqd_cli.commands.output import Output
    from mqd_cli.symbols.book import SymbolBook
    from mqd_cli.symbols.properties import SymbolProperties

_SHOWN_DIFF = 20


def _age(td: timedelta) -> str:
    secs = int(td.total_seconds())
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 86400:
        return f"{secs // 3600}h{(secs % 3600) // 60:02d}m"
    return f"{secs // 86400}d{(secs % 86400) // 3600}h"


def _require_sync(book: SymbolBook, out: Output) -> dict[str, Any]:
    """The sync state; exit 4 when no sync has ever run, a warning when it is stale."""
    from mqd_cli.errors import StateError

    last = book.last_sync()
    if last is None:
        raise StateError(
            "no symbol sync has run yet: symbol properties are unknown",
            "run `mqd symbols sync` first",
        )
    age = book.clock.now() - last
    stale = age > book.stale_after
    if stale:
        out.warn(
            f"symbol properties are stale: last sync {_age(age)} ago (symbols.stale_after ="
            f" {_age(book.stale_after)}); run `mqd symbols sync`"
        )
    return {"last_sync": last, "age_seconds": int(age.total_seconds()), "stale": stale}


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Sync symbol properties from the broker and check orders against them.\n\n"
        "Example: mqd symbols validate orders.csv",
        no_args_is_help=True,
    )

    @group.command("sync")
    @exits(ok="synced", broker="broker error")
    def sync_cmd(
        asset_class: Annotated[
            str | None,
            typer.Option(
                "--asset-class",
                help="Only this class: us_equity, crypto, us_option or crypto_perp (default:"
                " every class the broker lists).",
                show_default=False,
            ),
        ] = None,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Fetch every asset from the broker and store its properties, with a diff.

        Fetches /v2/assets through the throttler, upserts all assets in one transaction and
        prints counts plus what changed since the previous sync (added, removed, changed fields
        such as tradable or fractionable). Assets of classes mqd does not trade (crypto_perp,
        us_option, new ones) are kept under their own class and counted; validation refuses
        orders for them.

        Example: mqd symbols sync --asset-class crypto
        """
        from mqd_cli.errors import UsageError
        from mqd_cli.symbols.sync import SYNC_CLASSES, sync

        if asset_class is not None and asset_class not in SYNC_CLASSES:
            raise UsageError(
                f"--asset-class {asset_class!r} is not one of {', '.join(SYNC_CLASSES)}",
                "omit it to sync every class",
            )
        with cli(config, json_out, verbose) as c:
            services = c.services
            with _progress(c.out, json_out) as progress:
                report = sync(
                    services.store,
                    services.broker,
                    services.clock,
                    asset_class=asset_class,
                    progress=progress,
                )
            if json_out:
                c.out.json(
                    {
                        "sync_id": report.sync_id,
                        "asset_classes": report.asset_classes,
                        "counts": report.counts(),
                        "by_class": report.by_class,
                        "unsupported_classes": report.unsupported,
                        "duplicates": report.duplicates,
                        "first_sync": report.first_sync,
                        "started_at": report.started_at,
                        "finished_at": report.finished_at,
                        "seconds": round(report.seconds, 3),
                        "diff": {
                            "added": report.added,
                            "removed": report.removed,
                            "changed": report.changed,
                        },
                    }
                )
                return
            _print_sync(c.out, report)

    @group.command("validate")
    @exits(
        ok="all valid",
        found="any invalid",
        usage="malformed file (with the line) or bad options",
        state="no sync has run yet, or the store failed",
    )
    def validate_cmd(
        file: Annotated[
            Path | None,
            typer.Argument(
                help="CSV or JSON list of order intents (default: the strategy "
                "universe with [symbols] nominal_qty).",
                show_default=False,
            ),
        ] = None,
        fix: Annotated[
            Path | None,
            typer.Option(
                "--fix",
                help="Write the corrected orders to this file (same format).",
                show_default=False,
            ),
        ] = None,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Check order intents against the synced symbol properties before a deploy.

        FILE columns: symbol, side, qty or notional, type, limit_price, stop_price,
        time_in_force, extended_hours (optional: price = reference price, position_qty).
        Without FILE it checks a buy of [symbols] nominal_qty for each [strategy] symbol.
        Each problem has a code, a message and a fix with the corrected value.
        Example: mqd symbols validate orders.csv --fix orders.fixed.csv
        """
        from mqd_cli.orders import files as order_files

        source = order_files.read_orders(file) if file is not None else None
        with cli(config, json_out, verbose) as c:
            book = c.services.symbols
            sync_state = _require_sync(book, c.out)
            if source is None:
                orders = _universe_orders(c.settings, book)
                where = "strategy.symbols"
            else:
                orders = source.orders
                where = str(file)
            results, fixed_rows, unfixable = [], [], []
            for order in orders:
                problems = book.validate(
                    order.intent, price=order.price, position_qty=order.position_qty
                )
                results.append((order, problems))
                if fix is not None:
                    corrected, _ = book.correct(
                        order.intent, price=order.price, position_qty=order.position_qty
                    )
                    if corrected is None:
                        unfixable.append(order)
                    else:
                        fixed_rows.append(order_files.order_values(order, corrected))
            invalid = sum(1 for _, p in results if p)
            if fix is not None:
                if source is None:
                    from mqd_cli.orders.files import OrderFile

                    source = OrderFile(where, "csv", ("symbol", "side", "qty"), [])
                order_files.write_orders(fix, source, fixed_rows)
            if json_out:
                c.out.json(
                    {
                        "source": where,
                        "orders": len(results),
                        "valid": len(results) - invalid,
                        "invalid": invalid,
                        "sync": sync_state,
                        "results": [_result_doc(o, p) for o, p in results],
                        **(
                            {
                                "fix": {
                                    "path": str(fix),
                                    "written": len(fixed_rows),
                                    "dropped_lines": [o.line for o in unfixable],
                                }
                            }
                            if fix is not None
                            else {}
                        ),
                    }
                )
            else:
                _print_validation(c.out, where, results)
                if fix is not None:
                    c.out.info(f"wrote {len(fixed_rows)} corrected orders to {fix}")
                    for o in unfixable:
                        c.out.warn(
                            f"line {o.line} ({o.intent.symbol}) cannot be fixed "
                            "automatically and was left out"
                        )
            if invalid:
                raise typer.Exit(int(ExitCode.FOUND))

    @group.command("show")
    @exits(
        ok="all found",
        found="a symbol is unknown",
        state="no sync has run yet, or the store failed",
    )
    def show_cmd(
        symbols: Annotated[list[str], typer.Argument(help="One or more symbols.")],
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Show the stored properties of symbols and the age of the last sync.

        Example: mqd symbols show AAPL BTC/USD
        """
        with cli(config, json_out, verbose) as c:
            book = c.services.symbols
            sync_state = _require_sync(book, c.out)
            found: list[SymbolProperties] = []
            unknown: list[str] = []
            for s in symbols:
                props = book.get(s)
                if props is not None:
                    found.append(props)
                else:
                    unknown.append(s)
            if json_out:
                c.out.json(
                    {"sync": sync_state, "symbols": [p.to_doc() for p in found], "unknown": unknown}
                )
            else:
                c.out.line(
                    f"last sync {sync_state['last_sync'].isoformat(timespec='seconds')}"
                    f" ({_age(timedelta(seconds=sync_state['age_seconds']))} ago)"
                )
                for p in found:
                    doc = p.to_doc()
                    if "tick_rule" in doc:
                        doc["tick_rule"] = "; ".join(
                            f"{tick} at or above ${at}" for at, tick in doc["tick_rule"]
                        )
                    rows = [(k, _cell(v)) for k, v in doc.items() if k != "symbol"]
                    c.out.table(f"{p.symbol}", ["property", "value"], rows)
            if unknown:
                from mqd_cli.errors import MqdError

                raise MqdError(
                    f"unknown symbol{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
                    "check the ticker, or run `mqd symbols sync` if it was listed recently",
                )

    app.add_typer(group, name="symbols")


# -- helpers --------------------------------------------------------------------------------


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        return None


class _RichProgress:
    """A rich progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, out: Output):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(file=out.stderr),
            transient=True,
        )
        self.task: TaskID | None = None

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task("fetching assets", total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        if total and self.task is not None:
            self.progress.update(self.task, description="comparing", completed=done, total=total)

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


def _progress(out: Output, json_out: bool):
    if json_out or not out.stderr.isatty():
        return _NoProgress()
    return _RichProgress(out)


def _print_sync(out: Output, report) -> None:
    classes = ", ".join(f"{k} {v}" for k, v in report.by_class.items())
    out.line(f"synced {report.fetched} assets ({classes}) in {report.seconds:.2f}s")
    counts = report.counts()
    out.line(
        f"added {counts['added']}, removed {counts['removed']}, changed {counts['changed']},"
        f" unchanged {counts['unchanged']}"
    )
    if report.unsupported:
        n = sum(report.unsupported.values())
        kinds = ", ".join(f"{k} {v}" for k, v in report.unsupported.items())
        out.line(
            f"kept {n} asset{'s' if n != 1 else ''} of classes mqd does not trade ({kinds}):"
            " stored and shown, orders for them are refused"
        )
    if report.duplicates:
        out.warn(
            f"{len(report.duplicates)} symbol(s) served twice under different asset ids, the"
            f" first one kept: {', '.join(report.duplicates[:_SHOWN_DIFF])}"
        )
    if report.first_sync:
        out.line("first sync: every asset is new")
        return
    for label, items in (("added", report.added), ("removed", report.removed)):
        if items:
            more = f" ... and {len(items) - _SHOWN_DIFF} more" if len(items) > _SHOWN_DIFF else ""
            out.line(f"{label}: {', '.join(items[:_SHOWN_DIFF])}{more}")
    if report.changed:
        rows = []
        for sym, fields in list(report.changed.items())[: _SHOWN_DIFF * 5]:
            for f, (a, b) in fields.items():
                rows.append((sym, f, _cell(a), _cell(b)))
        out.table("changed", ["symbol", "field", "before", "after"], rows)
        if len(report.changed) > _SHOWN_DIFF * 5:
            out.line(f"... and {len(report.changed) - _SHOWN_DIFF * 5} more (see --json)")


def _cell(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "-"
    return str(v)


def _universe_orders(settings, book: SymbolBook) -> list:
    from mqd_cli.model import OrderIntent, Side, TimeInForce
    from mqd_cli.orders.files import FileOrder

    qty = settings.symbols.nominal_qty
    orders = []
    for i, sym in enumerate(settings.strategy.symbols, 1):
        props = book.get(sym)
        tif = TimeInForce.GTC if props is not None and props.is_crypto else TimeInForce.DAY
        orders.append(FileOrder(i, OrderIntent(sym, Side.BUY, qty=qty, time_in_force=tif)))
    return orders


def _result_doc(order, problems) -> dict[str, Any]:
    from mqd_cli.commands.output import to_jsonable

    return {
        "line": order.line,
        "symbol": order.intent.symbol,
        "valid": not problems,
        "problems": [
            {
                "code": p.code,
                "message": p.message,
                "fix": p.fix,
                "corrected": _intent_doc(p.corrected) if p.corrected else None,
            }
            for p in problems
        ],
        "intent": to_jsonable(_intent_doc(order.intent)),
    }


def _intent_doc(intent) -> dict[str, Any]:
    from mqd_cli.orders.files import FileOrder, order_values

    return order_values(FileOrder(0, intent), intent)


def _print_validation(out: Output, where: str, results: list) -> None:
    rows = []
    for order, problems in results:
        for p in problems:
            rows.append((order.line, order.intent.symbol, p.code, p.message, p.fix))
    invalid = sum(1 for _, p in results if p)
    if rows:
        out.table(None, ["line", "symbol", "code", "problem", "fix"], rows)
    out.line(f"{where}: {len(results)} orders, {len(results) - invalid} valid, {invalid} invalid")
