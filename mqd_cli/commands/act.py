"""`mqd cancel` and `mqd flatten`: act on the broker from the terminal, journaled like any order."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits
from mqd_cli.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from datetime import timedelta

    from mqd_cli.commands._common import Cli
    from mqd_cli.commands.output import Output
    from mqd_cli.trading.manual import (
        CancelOutcome,
        CloseOutcome,
        ClosePlan,
        Desk,
        Missing,
        OrderLine,
    )

YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Act without asking (scripts, cron); required without a terminal."
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Act even while an `mqd run` holds this account's stream lease."),
]
WaitOpt = Annotated[
    str,
    typer.Option(
        "--wait",
        help="How long to wait for the broker to confirm the cancels (and flatten's fills).",
    ),
]
_EXITS = {
    "usage": 'bad options or config; broker = "sim"; no terminal to confirm on and no --yes',
    "broker": "the broker could not be reached or refused the keys",
    "state": "an `mqd run` holds the account (use --force), or the store failed",
}


def _wait(text: str) -> timedelta:
    from datetime import timedelta

    from mqd_cli.durations import parse_duration

    try:
        span = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--wait: {exc}", "for example --wait 30s") from None
    if not timedelta(0) <= span <= timedelta(minutes=10):
        raise UsageError(f"--wait: {text} is outside 0s..10m", "for example --wait 30s")
    return span


def _desk(c: Cli, what: str, wait: timedelta, force: bool) -> Desk:
    """The desk over the factory's broker (through the throttler) and the journal, after the
    checks: a broker that keeps state between commands, and no `mqd run` on the account."""
    from mqd_cli.trading.manual import Desk, refuse_while_running

    services = c.services
    if services.is_sim:
        raise UsageError(
            f'{what} needs a broker that keeps its orders between commands; with broker = "sim"'
            " the simulated exchange lives inside `mqd run` and ends with it",
            'rehearse against `mqd sim serve` with broker = "alpaca" and [alpaca] base_url'
            " pointing at it, or stop the sim run (--cancel-on-exit cancels its orders)",
        )
    holder = refuse_while_running(services.stream_lease, what, force=force)
    if holder is not None:
        c.out.warn(f"--force: {holder.holder} holds the run; acting beside it")
    broker = services.broker
    clock = services.market_clock
    sync = getattr(clock, "sync", None)
    if sync is not None:
        sync(broker)  # the journal's times are the broker's, as in `mqd run`
    return Desk(broker, services.session_tracker(), services.clock, wait=wait)


def _confirm(out: Output, question: str, yes: bool) -> bool:
    """``--yes``, or the operator's answer on the terminal; never a hang without one."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            "this needs a confirmation and stdin is not a terminal",
            "add --yes to act without asking (scripts, cron)",
        )
    return typer.confirm(question, default=False, err=True)


def register(app: typer.Typer) -> None:
    @app.command("cancel")
    @exits(
        ok="every order named is canceled (or was already)",
        found="an order could not be canceled (filled first, still open, not found),"
        " or the question was answered no",
        **_EXITS,
    )
    def cancel_cmd(
        orders: Annotated[
            list[str] | None,
            typer.Argument(
                help="Orders to cancel: client_order_id or broker order id.", show_default=False
            ),
        ] = None,
        all_orders: Annotated[
            bool, typer.Option("--all", help="Cancel every open order of the account.")
        ] = False,
        yes: YesOpt = False,
        force: ForceOpt = False,
        wait: WaitOpt = "10s",
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Cancel open orders at the broker: the ones named, or --all.

        Shows the orders (ours, legs of ours, or external) and asks before acting; --yes
        skips the question. Each cancel is journaled before it is sent and its result
        afterwards, and the command waits (--wait) until the broker confirms each one.
        Cancelling one leg of a bracket or OCO order cancels its group at Alpaca. Refuses
        while an `mqd run` holds the account (its stream lease), unless --force. With
        broker = "sim" there is nothing to cancel between runs: rehearse against
        `mqd sim serve`.

        Example: mqd cancel --all --yes
        """
        if bool(orders) == all_orders:
            raise UsageError(
                "name the orders to cancel, or --all (not both)",
                "for example `mqd cancel mqd-1a2b3c-smacross-AAPL-7` or `mqd cancel --all`",
            )
        span = _wait(wait)
        with cli(config, json_out, verbose) as c:
            desk = _desk(c, "cancel", span, force)
            missing: list[Missing] = []
            if all_orders:
                lines = desk.open_orders()
            else:
                lines, missing = desk.resolve(orders or [])
            out = c.out
            for m in missing:
                out.info(f"{m.target}: {m.reason}")
            done: list[CancelOutcome] = []
            if lines:
                _cancel_plan(out, lines, json_out)
                if not _confirm(out, f"Cancel {_n(len(lines), 'order')}?", yes):
                    out.info("not confirmed: nothing canceled")
                    _cancel_report(out, [], missing, json_out, confirmed=False)
                    raise typer.Exit(int(ExitCode.FOUND))
                done = desk.cancel(lines)
            elif not missing:
                out.info("no open orders")
            _cancel_report(out, done, missing, json_out, confirmed=bool(lines))
            failed = [x for x in done if not x.ok] + [m for m in missing if not m.ok]
            raise typer.Exit(int(ExitCode.FOUND if failed else ExitCode.OK))

    @app.command("flatten")
    @exits(
        ok="every position named is flat",
        found="a position is not flat (an order would not cancel, the closing order was"
        " rejected or not filled within --wait), or the question was answered no",
        **_EXITS,
    )
    def flatten_cmd(
        symbols: Annotated[
            list[str] | None,
            typer.Argument(help="Symbols to close, e.g. AAPL BTC/USD.", show_default=False),
        ] = None,
        all_positions: Annotated[
            bool, typer.Option("--all", help="Close every position of the account.")
        ] = False,
        yes: YesOpt = False,
        force: ForceOpt = False,
        wait: WaitOpt = "10s",
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Close positions with market orders: the symbols named, or --all.

        Shows each position, the open orders on its symbol and the closing order, and asks
        before acting; --yes skips the question. The open orders on the symbol (protective
        stop legs of bracket and OTO orders included) are canceled first and the command
        waits until the broker confirms them; then the position is read again and one market
        order closes exactly what is left (never twice, never past zero). Closing orders are
        journaled with deterministic client_order_ids (strategy "flatten"), and the command
        waits (--wait) for their fills. Refuses while an `mqd run` holds the account, unless
        --force. With broker = "sim" there are no positions between runs: rehearse against
        `mqd sim serve`.

        Example: mqd flatten AAPL BTC/USD
        """
        if bool(symbols) == all_positions:
            raise UsageError(
                "name the symbols to close, or --all (not both)",
                "for example `mqd flatten AAPL` or `mqd flatten --all`",
            )
        span = _wait(wait)
        with cli(config, json_out, verbose) as c:
            desk = _desk(c, "flatten", span, force)
            plans, missing = desk.plan_flatten(None if all_positions else symbols)
            out = c.out
            for m in missing:
                out.info(f"{m.target}: {m.reason}")
            if not plans:
                if not missing:
                    out.info("no open positions")
                _flatten_report(out, [], missing, json_out, confirmed=False)
                raise typer.Exit(int(ExitCode.OK))
            _flatten_plan(out, plans, json_out)
            if not _confirm(out, f"Close {_n(len(plans), 'position')}?", yes):
                out.info("not confirmed: nothing done")
                _flatten_report(out, [], missing, json_out, confirmed=False)
                raise typer.Exit(int(ExitCode.FOUND))
            done = desk.flatten(plans)
            _flatten_report(out, done, missing, json_out, confirmed=True)
            failed = [x for x in done if not x.ok]
            raise typer.Exit(int(ExitCode.FOUND if failed else ExitCode.OK))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _num(value) -> str:
    from mqd_cli.trading.manual import _num as n

    return n(value)


# -- rendering: the plan on stdout (stderr with --json, where stdout holds the result) ----------


def _plan(out: Output, json_out: bool, title: str, lines: list[str]) -> None:
    """The plan, one line per order or position: on stdout, or on stderr with --json (stdout
    holds the result document)."""
    say = out.info if json_out else out.line
    say(title)
    for line in lines:
        say(f"  {line}")


def _cancel_plan(out: Output, lines: list[OrderLine], json_out: bool) -> None:
    _plan(
        out,
        json_out,
        f"to cancel: {_n(len(lines), 'order')}",
        [
            f"{o.client_order_id}  {o.symbol} {o.terms()}, {o.report.raw_status} ({o.role()})"
            for o in lines
        ],
    )


def _cancel_report(
    out: Output,
    done: list[CancelOutcome],
    missing: list[Missing],
    json_out: bool,
    *,
    confirmed: bool,
) -> None:
    if json_out:
        out.json(
            {
                "confirmed": confirmed,
                "orders": [x.as_dict() for x in done],
                "not_open": [m.as_dict() for m in missing],
                "canceled": sum(1 for x in done if x.ok),
                "failed": sum(1 for x in done if not x.ok) + sum(1 for m in missing if not m.ok),
            }
        )
        return
    for x in done:
        out.line(f"{x.order.client_order_id} ({x.order.symbol} {x.order.terms()}): {x.detail}")
    if done:
        ok = sum(1 for x in done if x.ok)
        out.line(f"{ok} of {_n(len(done), 'order')} canceled")


def _flatten_plan(out: Output, plans: list[ClosePlan], json_out: bool) -> None:
    rows = []
    for p in plans:
        pos = p.position
        first = "; ".join(f"{o.terms()} ({o.role()})" for o in p.orders)
        then = f"{p.side.value} {_num(abs(pos.qty))} market"
        rows.append(
            f"{p.symbol} {_num(pos.qty)} @ {_num(pos.avg_entry_price)}: "
            + (f"cancel {first}, then {then}" if first else then)
        )
    _plan(out, json_out, f"to close: {_n(len(plans), 'position')}", rows)


def _flatten_report(
    out: Output,
    done: list[CloseOutcome],
    missing: list[Missing],
    json_out: bool,
    *,
    confirmed: bool,
) -> None:
    if json_out:
        out.json(
            {
                "confirmed": confirmed,
                "positions": [x.as_dict() for x in done],
                "no_position": [m.target for m in missing],
                "closed": sum(1 for x in done if x.ok),
                "failed": sum(1 for x in done if not x.ok),
            }
        )
        return
    for x in done:
        for c in x.canceled:
            line = c.order
            out.line(f"{x.plan.symbol}: {line.client_order_id} ({line.terms()}): {c.detail}")
        out.line(f"{x.plan.symbol}: {x.detail}; position now {_num(x.qty_after)}")
    if done:
        ok = sum(1 for x in done if x.ok)
        out.line(f"{ok} of {_n(len(done), 'position')} flat")
