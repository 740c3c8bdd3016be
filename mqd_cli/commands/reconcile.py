"""`mqd reconcile`: local orders, fills and positions against the broker, for cron."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli
from mqd_cli.errors import BrokerError, ExitCode, StateError, UsageError

_COLUMNS = ("kind", "subject", "symbol", "local", "broker", "action", "detail")


def _duration(text: str, option: str):
    from mqd_cli.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}", f"for example {option} 2d") from None


def _summary(findings) -> str:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def _alert(services, title: str, lines: list[str]) -> None:
    """One alert per run when [notify.discord] is configured; never raises."""
    settings = services.settings.notify.discord
    if not settings.webhook_url.is_set():
        return
    import logging

    try:
        from mqd_cli.notify import DiscordNotifier

        notifier = DiscordNotifier(settings, clock=services.clock, throttler=services.throttler)
        notifier.send("reconcile", "\n".join([title, *lines[:15]]))
    except Exception:
        logging.getLogger(__name__).exception("reconcile alert failed")


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
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

        Exit codes: 0 in sync, 1 findings (drift), 3 the broker could not be reached or an
        order could not be verified (could not check), 4 the store is unreadable, 2 bad
        options, 70 an internal error. Never 1 unless drift was found.

        Example: mqd reconcile --lookback 2d --quiet || alert-me
        """
        lookback_td = _duration(lookback, "--lookback")
        grace_td = _duration(grace, "--grace")
        pause_td = _duration(confirm_pause, "--confirm-pause")
        if pause_td > timedelta(seconds=30):
            raise UsageError(
                f"--confirm-pause: {confirm_pause} is above 30s", "for example --confirm-pause 1s"
            )
        try:
            code = _reconcile(
                config,
                json_out,
                verbose,
                apply=apply,
                cancel_orphans=cancel_orphans,
                lookback=lookback_td,
                grace=grace_td,
                looks=looks,
                pause=pause_td,
                quiet=quiet,
            )
        except sqlite3.Error as exc:  # (a bug elsewhere exits 70 at the error boundary)
            raise StateError(
                f"the store could not be read or written: {exc}",
                "run again; if it persists, check [store] path and the disk",
            ) from exc
        raise typer.Exit(int(code))


def _reconcile(
    config,
    json_out: bool,
    verbose: bool,
    *,
    apply: bool,
    cancel_orphans: bool,
    lookback: timedelta,
    grace: timedelta,
    looks: int,
    pause: timedelta,
    quiet: bool,
) -> ExitCode:
    from decimal import Decimal

    from mqd_cli import reconcile as rc
    from mqd_cli.clock import BrokerTimeClock
    from mqd_cli.store import orders as q

    with cli(config, json_out, verbose) as c:
        services = c.services
        clock = services.clock
        store = services.store
        tracker = services.tracker
        baseline = q.last_checked_run(store)
        cash_baseline = net_baseline = None
        if baseline and baseline.get("net_traded") is not None:
            cash_baseline = Decimal(baseline["cash"])
            net_baseline = Decimal(baseline["net_traded"])
        started = clock.now()
        try:
            broker = services.broker
            # Orders, lookbacks and grace periods are in the broker's time, which a rehearsal
            # emulator may shift far from ours (`mqd sim serve --start ... --speed 60`).
            broker_clock = BrokerTimeClock(clock)
            broker_clock.sync(broker)
            checked = rc.check(
                tracker,
                broker,
                broker_clock,
                lookback=lookback,
                grace=grace,
                cash_baseline=cash_baseline,
                net_traded_baseline=net_baseline,
                looks=looks,
                pause=pause,
            )
        except BrokerError as exc:
            q.record_run(
                store,
                started_at=started,
                finished_at=clock.now(),
                outcome="unreachable",
                findings=[],
                actions=[],
                cash=None,
                net_traded=None,
                error=exc.message,
            )
            _alert(services, "mqd reconcile: could not reach the broker", [exc.message])
            raise
        report = checked.report
        actions: list = []
        applied_net = Decimal(0)
        if (apply or cancel_orphans) and report.findings:
            actions, applied_net = rc.apply_confirmed(
                tracker, broker, checked, apply=apply, cancel_orphans=cancel_orphans
            )
        outcome = "drift" if report.drift else "unverified" if report.unverified else "in_sync"
        pair = checked.baseline(applied_net)
        run_id = q.record_run(
            store,
            started_at=started,
            finished_at=clock.now(),
            outcome=outcome,
            findings=[rc.finding_doc(f) for f in report.findings],
            actions=[rc.action_doc(a) for a in actions],
            cash=None if pair is None else str(pair[0]),
            net_traded=None if pair is None else str(pair[1]),
        )
        if report.findings:
            _alert(
                services,
                f"mqd reconcile: {_summary(report.findings)}",
                [
                    f"{f.kind} {f.subject}: local {f.local}, broker {f.broker} -> {f.action}"
                    for f in report.findings
                ]
                + [f"done: {a.kind} {a.subject}: {a.result}" for a in actions],
            )
        if not (quiet and report.in_sync):
            doc = rc.report_doc(report, actions)
            doc["run_id"] = run_id
            doc["outcome"] = outcome
            if json_out:
                c.out.json(doc)
            else:
                _render(c.out, report, actions, outcome)
    if report.drift:
        return ExitCode.FOUND
    if report.unverified:
        return ExitCode.BROKER
    return ExitCode.OK


def _render(out, report, actions, outcome: str) -> None:
    if report.findings:
        out.table(
            f"Reconcile findings ({_summary(report.findings)})",
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
