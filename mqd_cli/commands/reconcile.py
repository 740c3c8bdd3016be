"""`mqd reconcile`: local orders, fills and positions against the broker, for cron."""

from __future__ import annotations

from typing import Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli
from mqd_cli.errors import BrokerError, ExitCode, UsageError

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
        `mqd run`: short transactions, the shared throttle budget.

        Exit codes: 0 in sync, 1 findings (drift), 3 the broker could not be reached or an
        order could not be verified (could not check), 2 bad options.

        Example: mqd reconcile --lookback 2d --quiet || alert-me
        """
        from mqd_cli import reconcile as rc
        from mqd_cli.store import orders as q

        lookback_td = _duration(lookback, "--lookback")
        grace_td = _duration(grace, "--grace")
        with cli(config, json_out, verbose) as c:
            services = c.services
            clock = services.clock
            store = services.store
            tracker = services.tracker
            baseline = q.last_checked_run(store)
            cash_baseline = net_baseline = None
            if baseline and baseline.get("net_traded") is not None:
                from decimal import Decimal

                cash_baseline = Decimal(baseline["cash"])
                net_baseline = Decimal(baseline["net_traded"])
            started = clock.now()
            try:
                broker = services.broker
                local, snapshot, lookups = rc.collect(
                    tracker,
                    broker,
                    clock,
                    lookback=lookback_td,
                    grace=grace_td,
                    cash_baseline=cash_baseline,
                    net_traded_baseline=net_baseline,
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
            report = rc.diff(local, snapshot, lookups, now=started, grace=grace_td)
            actions = []
            if apply or cancel_orphans:
                actions = rc.apply_findings(
                    tracker, broker, report, apply=apply, cancel_orphans=cancel_orphans
                )
            outcome = "drift" if report.drift else "unverified" if report.unverified else "in_sync"
            account = snapshot.account
            run_id = q.record_run(
                store,
                started_at=started,
                finished_at=clock.now(),
                outcome=outcome,
                findings=[rc.finding_doc(f) for f in report.findings],
                actions=[rc.action_doc(a) for a in actions],
                cash=None if account is None else str(account.cash),
                net_traded=str(tracker.net_traded()),
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
        code = (
            ExitCode.FOUND
            if report.drift
            else ExitCode.BROKER
            if report.unverified
            else ExitCode.OK
        )
        raise typer.Exit(int(code))


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
    out.line(
        f"{outcome}: {report.orders_checked} local orders, {report.broker_orders} broker "
        f"orders, {report.lookups} lookups, {len(report.findings)} findings"
        + (
            ""
            if actions or not report.drift
            else " (read-only: --apply repairs, --cancel-orphans cancels orphans)"
        )
    )
