"""One reconcile run, whole: baseline, check, apply, record, alert; and its documents.

``reconcile`` is what ``mqd reconcile`` calls: it reads the cash baseline of the last checked
run, checks on the broker's time (a rehearsal emulator may run far from ours), applies what
the operator asked for, stores the run (also when the broker could not be reached) and sends
one alert when findings were confirmed. The command only renders the ``ReconcileRun``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from mqd_cli.errors import BrokerError
from mqd_cli.reconcile import collect
from mqd_cli.reconcile.apply import Action, apply_confirmed
from mqd_cli.reconcile.diff import fmt
from mqd_cli.reconcile.model import (
    DEFAULT_CONFIRM_PAUSE,
    DEFAULT_GRACE,
    DEFAULT_LOOKBACK,
    DEFAULT_LOOKS,
    Finding,
    ReconcileReport,
)

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.clock import Clock
    from mqd_cli.notify import DiscordNotifier
    from mqd_cli.orders.tracker import OrderTracker
    from mqd_cli.store import Store

log = logging.getLogger(__name__)

Outcome = Literal["in_sync", "drift", "unverified"]


@dataclass(frozen=True, kw_only=True)
class ReconcileOptions:
    apply: bool = False
    cancel_orphans: bool = False
    lookback: timedelta = DEFAULT_LOOKBACK
    grace: timedelta = DEFAULT_GRACE
    looks: int = DEFAULT_LOOKS
    pause: timedelta = DEFAULT_CONFIRM_PAUSE


@dataclass(frozen=True, kw_only=True)
class ReconcileRun:
    report: ReconcileReport
    actions: tuple[Action, ...]
    outcome: Outcome
    run_id: int

    def doc(self) -> dict[str, Any]:
        doc = report_doc(self.report, self.actions)
        doc["run_id"] = self.run_id
        doc["outcome"] = self.outcome
        return doc


def summary(findings: Sequence[Finding]) -> str:
    """``2 orphan, 1 fill_drift``: the count of each kind, in order of first appearance."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def _alert(notifier: DiscordNotifier | None, title: str, lines: Sequence[str]) -> None:
    """One alert per run when a notifier is configured; never raises."""
    if notifier is None or not notifier.enabled:
        return
    try:
        notifier.send("reconcile", "\n".join([title, *lines[:15]]))
    except Exception:
        log.exception("reconcile alert failed")


def reconcile(
    *,
    store: Store,
    tracker: OrderTracker,
    broker: Broker,
    clock: Clock,
    notifier: DiscordNotifier | None = None,
    options: ReconcileOptions | None = None,
) -> ReconcileRun:
    """Run one reconcile and store it. Raises ``BrokerError`` (after storing an
    ``unreachable`` run and alerting) when the broker could not be read."""
    from mqd_cli.clock import BrokerTimeClock
    from mqd_cli.store import orders as q

    opts = options or ReconcileOptions()
    baseline = q.last_checked_run(store)
    cash_baseline = net_baseline = None
    if baseline and baseline.get("net_traded") is not None:
        cash_baseline = Decimal(baseline["cash"])
        net_baseline = Decimal(baseline["net_traded"])
    started = clock.now()
    try:
        # Orders, lookbacks and grace periods are in the broker's time, which a rehearsal
        # emulator may shift far from ours (`mqd sim serve --start ... --speed 60`).
        broker_clock = BrokerTimeClock(clock)
        broker_clock.sync(broker)
        checked = collect.check(
            tracker,
            broker,
            broker_clock,
            lookback=opts.lookback,
            grace=opts.grace,
            cash_baseline=cash_baseline,
            net_traded_baseline=net_baseline,
            looks=opts.looks,
            pause=opts.pause,
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
        _alert(notifier, "mqd reconcile: could not reach the broker", [exc.message])
        raise
    report = checked.report
    actions: list[Action] = []
    applied_net = Decimal(0)
    if (opts.apply or opts.cancel_orphans) and report.findings:
        actions, applied_net = apply_confirmed(
            tracker, broker, checked, apply=opts.apply, cancel_orphans=opts.cancel_orphans
        )
    outcome: Outcome = "drift" if report.drift else "unverified" if report.unverified else "in_sync"
    pair = checked.baseline(applied_net)
    run_id = q.record_run(
        store,
        started_at=started,
        finished_at=clock.now(),
        outcome=outcome,
        findings=[finding_doc(f) for f in report.findings],
        actions=[action_doc(a) for a in actions],
        cash=None if pair is None else str(pair[0]),
        net_traded=None if pair is None else str(pair[1]),
    )
    if report.findings:
        _alert(
            notifier,
            f"mqd reconcile: {summary(report.findings)}",
            [
                f"{f.kind} {f.subject}: local {f.local}, broker {f.broker} -> {f.action}"
                for f in report.findings
            ]
            + [f"done: {a.kind} {a.subject}: {a.result}" for a in actions],
        )
    return ReconcileRun(report=report, actions=tuple(actions), outcome=outcome, run_id=run_id)


def finding_doc(f: Finding) -> dict[str, Any]:
    doc = {
        "kind": f.kind,
        "subject": f.subject,
        "symbol": f.symbol,
        "local": f.local,
        "broker": f.broker,
        "action": f.action,
        "detail": f.detail,
        "broker_id": f.broker_id,
    }
    if f.kind == "fill_drift" and "fill_id" in f.data:
        doc["synthetic_fill_id"] = f.data["fill_id"]
        doc["synthetic_price"] = fmt(f.data.get("price"))
    return doc


def action_doc(a: Action) -> dict[str, Any]:
    return {"kind": a.kind, "subject": a.subject, "result": a.result}


def report_doc(report: ReconcileReport, actions: Sequence[Action] = ()) -> dict[str, Any]:
    return {
        "checked_at": report.checked_at,
        "in_sync": report.in_sync,
        "orders_checked": report.orders_checked,
        "broker_orders": report.broker_orders,
        "lookups": report.lookups,
        "looks": report.looks,
        "in_flight": report.in_flight,
        "unconfirmed": report.unconfirmed,
        "unchecked": list(report.unchecked),
        "findings": [finding_doc(f) for f in report.findings],
        "actions": [action_doc(a) for a in actions],
    }
