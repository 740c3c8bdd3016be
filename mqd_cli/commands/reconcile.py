"""`mqd reconcile`: local orders, fills and positions against the broker, for cron."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits
from mqd_cli.errors import ExitCode, StateError, UsageError, storage_error

_COLUMNS = ("kind", "subject", "symbol", "local", "broker", "action", "detail")


def _duration(text: str, option: str):
    from mqd_cli.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}", f"for example {option} 2d") from None


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
    @exits(
        ok="in sync",
        found="findings (drift)",
        broker="the broker could not be reached or an order not verified (could not check)",
    )
    def reconcile_cmd(
        apply: Annotated[
            bool,
            typer.Option(
                "--apply",
                help="Adopt orphans (marked external), apply status and fill drift, "
                "resolve confirmed shadows; every change is journaled.",
            ),
        ] = False,
        cancel_orphans: Annotated[
            bool,
            typer.Option(
                "--cancel-orphans",
                help="Cancel orphan orders at the broker (separate from --apply on purpose).",
            ),
        ] = False,
        lookback: Annotated[
            str, typer.Option("--lookback", help="How far back closed broker orders are fetched.")
        ] = "2d",
        grace: Annotated[
            str,
            typer.Option(
                "--grace", help="Orders changed more recently than this are never called shadows."
            ),
        ] = "60s",
        looks: Annotated[
            int,
            typer.Option(
                "--looks",
                min=1,
                max=5,
                help="Looks a finding must be present in to be reported; a finding that "
                "vanishes on the next look was in flight (1 = report the first look).",
            ),
        ] = 2,
        confirm_pause: Annotated[
            str,
            typer.Option("--confirm-pause", help="Pause before each further look (at most 30s)."),
        ] = "1s",
        quiet: Annotated[
            bool,
            typer.Option(
                "--quiet", "-q", help="Print nothing when everything is in sync (for cron)."
            ),
        ] = False,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Check local orders, fills and positions against the broker.

        Finds orphans (open at the broker, unknown to us), shadows (open for us, absent at the
        broker, confirmed only by a lookup answering 404), status and fill drift, position
        drift and cash drift. Read-only unless --apply / --cancel-orphans. Every run is stored
        and, with [notify.discord] set, findings are posted as one alert. Safe beside a running
        `mqd run`: orders journaled after the broker was read are in flight and not judged,
        and a finding is reported only when a second look (--looks, --confirm-pause) finds
        the same discrepancy; --apply acts only on such confirmed findings.

        Never exit 1 unless drift was found.

        Example: mqd reconcile --lookback 2d --quiet || alert-me
        """
        lookback_td = _duration(lookback, "--lookback")
        grace_td = _duration(grace, "--grace")
        pause_td = _duration(confirm_pause, "--confirm-pause")
        if pause_td > timedelta(seconds=30):
            raise UsageError(
                f"--confirm-pause: {confirm_pause} is above 30s", "for example --confirm-pause 1s"
            )
        from mqd_cli.reconcile.record import ReconcileOptions

        options = ReconcileOptions(
            apply=apply,
            cancel_orphans=cancel_orphans,
            lookback=lookback_td,
            grace=grace_td,
            looks=looks,
            pause=pause_td,
        )
        try:
            code = _reconcile(config, json_out, verbose, options, quiet=quiet)
        except sqlite3.Error as exc:  # (a bug elsewhere exits 70 at the error boundary)
            raise storage_error(exc) or StateError(
                f"the store could not be read or written: {exc}",
                "run again; if it persists, check [store] path and the disk",
            ) from exc
        raise typer.Exit(int(code))


def _reconcile(config, json_out: bool, verbose: bool, options, *, quiet: bool) -> ExitCode:
    from mqd_cli.reconcile.record import reconcile

    with cli(config, json_out, verbose) as c:
        services = c.services
        run = reconcile(
            store=services.store,
            tracker=services.tracker,
            broker=services.broker,
            clock=services.clock,
            notifier=services.notifier,
            options=options,
        )
        report = run.report
        if not (quiet and report.in_sync):
            if json_out:
                c.out.json(run.doc())
            else:
                _render(c.out, report, run.actions, run.outcome)
    if report.drift:
        return ExitCode.FOUND
    if report.unverified:
        return ExitCode.BROKER
    return ExitCode.OK


def _render(out, report, actions, outcome: str) -> None:
    from mqd_cli.reconcile.record import summary

    if report.findings:
        out.table(
            f"Reconcile findings ({summary(report.findings)})",
            _COLUMNS,
            [[getattr(f, col) for col in _COLUMNS] for f in report.findings],
        )
    if actions:
        out.table(
            "Actions taken",
            ("action", "subject", "result"),
            [[a.kind, a.subject, a.result] for a in actions],
        )
    for item in report.unchecked:
        out.line(f"not checked: {item}")
    in_flight = ""
    if report.in_flight or report.unconfirmed:
        in_flight = (
            f", {report.in_flight} in flight, {report.unconfirmed} unconfirmed over "
            f"{report.looks} looks"
        )
    out.line(
        f"{outcome}: {report.orders_checked} local orders, {report.broker_orders} broker "
        f"orders, {report.lookups} lookups, {len(report.findings)} findings{in_flight}"
        + (
            ""
            if actions or not report.drift
            else " (read-only: --apply repairs, --cancel-orphans cancels orphans)"
        )
    )
