"""Repairs an operator asked for (``--apply``, ``--cancel-orphans``), each journaled."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.reconcile.collect import Checked, journaled_since, read_local
from mqd_cli.reconcile.diff import fmt
from mqd_cli.reconcile.model import ReconcileReport


def apply_confirmed(
    tracker: OrderTracker,
    broker: Broker | None,
    checked: Checked,
    *,
    apply: bool,
    cancel_orphans: bool,
) -> tuple[list[Action], Decimal]:
    """``apply_findings`` on the confirmed findings, after reloading what the running loop
    journaled since the last look began; a finding about an order journaled since then is
    left alone (it is in flight again). Returns the actions and the cash our net traded
    moved by them (for the baseline)."""
    look = checked.looks[-1]
    read_local(tracker)
    moved = {cid for _, cid in journaled_since(tracker, look.journal_from)}
    report = checked.report
    if moved:
        report = replace(
            report, findings=tuple(f for f in report.findings if f.subject not in moved)
        )
    before = tracker.net_traded()
    actions = apply_findings(tracker, broker, report, apply=apply, cancel_orphans=cancel_orphans)
    return actions, tracker.net_traded() - before


@dataclass(frozen=True)
class Action:
    kind: str  # adopt | apply_status | apply_fill | mark_not_found | cancel_orphan
    subject: str
    result: str


def apply_findings(
    tracker: OrderTracker,
    broker: Broker | None,
    report: ReconcileReport,
    *,
    apply: bool,
    cancel_orphans: bool,
) -> list[Action]:
    """Perform the repairs asked for; returns what was done (idempotent across runs)."""
    from mqd_cli.brokers.errors import BrokerCallError

    actions: list[Action] = []
    applied_reports: set[str] = set()
    for f in report.findings:
        report_ = f.data.get("report")
        if apply and f.kind == "orphan" and f.local == "unknown" and report_ is not None:
            res = tracker.adopt(report_)
            adopted = tracker.order(res.client_order_id) if res.client_order_id else None
            actions.append(
                Action(
                    "adopt",
                    f.subject,
                    f"tracked as external, {fmt(res.status)}, filled {fmt(adopted.filled_qty)}"
                    if adopted is not None
                    else "tracked as external",
                )
            )
        elif (
            apply
            and f.kind in ("status_drift", "fill_drift")
            and report_ is not None
            and f.action != "review"
            and f.subject not in applied_reports
        ):
            applied_reports.add(f.subject)
            res = tracker.apply_order_report(report_, source="reconcile")
            if res.illegal:
                actions.append(
                    Action("apply_status", f.subject, f"kept as evidence: {res.illegal}")
                )
            else:
                kind = "apply_fill" if res.new_fills else "apply_status"
                ids = ",".join(x.fill_id for x in res.new_fills)
                actions.append(
                    Action(
                        kind,
                        f.subject,
                        f"{fmt(res.status_before)} -> "
                        f"{fmt(res.status)}" + (f", fills {ids}" if ids else ""),
                    )
                )
        elif apply and f.kind == "shadow":
            res = tracker.mark_not_found(f.subject)
            actions.append(
                Action(
                    "mark_not_found", f.subject, f"{fmt(res.status_before)} -> {fmt(res.status)}"
                )
            )
        if cancel_orphans and f.kind == "orphan" and broker is not None and f.broker_id:
            try:
                broker.cancel_order(f.broker_id)
                actions.append(Action("cancel_orphan", f.subject, "cancel requested"))
            except BrokerCallError as exc:
                actions.append(
                    Action("cancel_orphan", f.subject, f"failed: {type(exc).__name__}: {exc}")
                )
    return actions
