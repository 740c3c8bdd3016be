"""Reconciliation: our orders, fills and positions against the broker's truth.

``diff(local, broker, lookups, ...)`` is a pure function of two snapshots plus the answers of
targeted lookups; each kind of finding has its own small helper with a direct unit test.
``collect`` (not pure) fetches the broker snapshots and performs the targeted lookups, and
``apply_findings`` (not pure) performs the repairs an operator asked for.

Rules that matter at 3 a.m.:

* a *shadow* (we hold an order open, the broker does not) is only ever confirmed by a targeted
  lookup by id or client_order_id answering 404. A network error, timeout or 429 makes the
  order *unverified*, never a shadow. Orders younger than the grace period are skipped;
* fill drift (broker ``filled_qty`` above ours) is repaired by a synthetic fill whose id is a
  hash of (client_order_id, broker cumulative qty) and whose price makes our average equal the
  broker's, so two runs in a row produce the same id and the second changes nothing;
* position drift is reported only when the fills the findings would add do not explain it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from mqd_cli.model import AccountReport, OrderReport, OrderStatus, PositionReport, Side

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.clock import Clock
    from mqd_cli.orders import OrderTracker

ZERO = Decimal(0)
DEFAULT_GRACE = timedelta(seconds=60)
DEFAULT_LOOKBACK = timedelta(days=2)
CASH_TOLERANCE = Decimal("1.00")  # dollars; the larger of this and CASH_TOLERANCE_RATIO*equity
CASH_TOLERANCE_RATIO = Decimal("0.0005")
QTY_TOLERANCE = Decimal("0.000000001")  # Alpaca quantities have up to 9 decimals

Kind = Literal[
    "orphan",
    "shadow",
    "unverified",
    "status_drift",
    "fill_drift",
    "position_drift",
    "cash_drift",
    "equity_drift",
]


# -- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalOrder:
    client_order_id: str
    broker_id: str | None
    symbol: str
    side: Side
    status: OrderStatus
    filled_qty: Decimal
    avg_price: Decimal | None
    created_at: datetime | None
    updated_at: datetime | None
    is_open: bool
    external: bool = False


@dataclass(frozen=True)
class LocalState:
    orders: tuple[LocalOrder, ...]
    positions: Mapping[str, Decimal]  # signed quantity per symbol, from our fills
    cash_baseline: Decimal | None = None  # broker cash at the previous checked run
    net_traded_since_baseline: Decimal = ZERO


@dataclass(frozen=True)
class BrokerSnapshot:
    orders: tuple[OrderReport, ...]  # open plus closed within the lookback
    positions: tuple[PositionReport, ...]
    account: AccountReport | None
    taken_at: datetime


@dataclass(frozen=True)
class Lookup:
    """The answer of one targeted lookup: found (with the report), not_found (404) or error."""

    client_order_id: str
    outcome: Literal["found", "not_found", "error"]
    report: OrderReport | None = None
    error: str = ""


# -- output ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: Kind
    subject: str  # client_order_id or symbol or "account"
    symbol: str
    local: str
    broker: str
    action: str  # suggested action (what --apply / --cancel-orphans would do, or "review")
    detail: str = ""
    broker_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ReconcileReport:
    checked_at: datetime
    findings: tuple[Finding, ...]
    orders_checked: int
    broker_orders: int
    lookups: int

    @property
    def in_sync(self) -> bool:
        return not self.findings

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def orphans(self) -> list[Finding]:
        return self.of("orphan")

    @property
    def shadows(self) -> list[Finding]:
        return self.of("shadow")

    @property
    def unverified(self) -> bool:
        return any(f.kind == "unverified" for f in self.findings)

    @property
    def drift(self) -> bool:
        return any(f.kind != "unverified" for f in self.findings)


# -- building the local snapshot ------------------------------------------------------------------


def local_state(
    tracker: OrderTracker,
    *,
    cash_baseline: Decimal | None = None,
    net_traded_baseline: Decimal | None = None,
) -> LocalState:
    orders = tuple(
        LocalOrder(
            o.client_order_id,
            o.broker_id,
            o.symbol,
            o.side,
            o.status,
            o.filled_qty,
            o.avg_price,
            o.created_at,
            o.updated_at,
            o.is_open,
            o.external,
        )
        for o in tracker.orders()
    )
    positions = {s: p.qty for s, p in tracker.positions().items()}
    since = ZERO
    if cash_baseline is not None and net_traded_baseline is not None:
        since = tracker.net_traded() - net_traded_baseline
    else:
        cash_baseline = None
    return LocalState(orders, positions, cash_baseline, since)


# -- small pure helpers ---------------------------------------------------------------------------


def index_broker_orders(
    orders: Iterable[OrderReport],
) -> tuple[dict[str, OrderReport], dict[str, OrderReport]]:
    """(by client_order_id, by broker id); the newest report wins on duplicates."""
    by_cid: dict[str, OrderReport] = {}
    by_id: dict[str, OrderReport] = {}
    for r in orders:
        old = by_cid.get(r.client_order_id)
        if old is None or (r.updated_at or r.created_at) >= (old.updated_at or old.created_at):
            by_cid[r.client_order_id] = r
            by_id[r.id] = r
    return by_cid, by_id


def match(
    local: LocalOrder, by_cid: Mapping[str, OrderReport], by_id: Mapping[str, OrderReport]
) -> OrderReport | None:
    r = by_cid.get(local.client_order_id)
    if r is None and local.broker_id:
        r = by_id.get(local.broker_id)
    return r


def within_grace(local: LocalOrder, now: datetime, grace: timedelta) -> bool:
    """Orders submitted (or changed) within the grace period are too young to judge."""
    stamp = local.updated_at or local.created_at
    return stamp is not None and now - stamp < grace


def shadow_candidates(
    local: LocalState, broker: BrokerSnapshot, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> list[LocalOrder]:
    """Our open orders that the broker's listings do not show: each needs a targeted lookup."""
    by_cid, by_id = index_broker_orders(broker.orders)
    return [
        o
        for o in local.orders
        if o.is_open and match(o, by_cid, by_id) is None and not within_grace(o, now, grace)
    ]


def synthetic_fill_price(
    local_qty: Decimal, local_avg: Decimal | None, broker_qty: Decimal, broker_avg: Decimal | None
) -> Decimal | None:
    """The price of the missing quantity that makes our average equal the broker's."""
    delta = broker_qty - local_qty
    if delta <= 0 or broker_avg is None:
        return None
    return (broker_avg * broker_qty - (local_avg or ZERO) * local_qty) / delta


def signed(side: Side, qty: Decimal) -> Decimal:
    return qty if side is Side.BUY else -qty


def cash_tolerance(account: AccountReport) -> Decimal:
    return max(CASH_TOLERANCE, abs(account.equity) * CASH_TOLERANCE_RATIO)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value == value.to_integral() else f"{value:f}"
    if hasattr(value, "value"):
        return str(value.value)
    return str(value)


# -- findings per kind ----------------------------------------------------------------------------


def orphan_findings(local: LocalState, broker: BrokerSnapshot) -> list[Finding]:
    """Open at the broker, unknown to us or known to us as closed."""
    known_cid = {o.client_order_id: o for o in local.orders}
    known_id = {o.broker_id: o for o in local.orders if o.broker_id}
    out = []
    for r in broker.orders:
        if not r.status.is_open:
            continue
        mine = known_cid.get(r.client_order_id) or known_id.get(r.id)
        if mine is None:
            out.append(
                Finding(
                    "orphan",
                    r.client_order_id,
                    r.symbol,
                    "unknown",
                    fmt(r.status),
                    "adopt (--apply) or cancel (--cancel-orphans)",
                    f"{fmt(r.side)} {fmt(r.qty or r.notional)} {fmt(r.type)}, filled "
                    f"{fmt(r.filled_qty)}",
                    r.id,
                    {"report": r},
                )
            )
        elif not mine.is_open:
            out.append(
                Finding(
                    "orphan",
                    r.client_order_id,
                    r.symbol,
                    fmt(mine.status),
                    fmt(r.status),
                    "cancel (--cancel-orphans) or review",
                    "open at the broker but closed in our records",
                    r.id,
                    {"report": r},
                )
            )
    return out


def shadow_findings(
    local: LocalState,
    broker: BrokerSnapshot,
    lookups: Mapping[str, Lookup],
    now: datetime,
    grace: timedelta,
) -> tuple[list[Finding], list[OrderReport]]:
    """Shadows confirmed by a 404, unverified orders, and the reports lookups found."""
    findings: list[Finding] = []
    found: list[OrderReport] = []
    for o in shadow_candidates(local, broker, now, grace):
        lk = lookups.get(o.client_order_id)
        if lk is None:
            findings.append(
                Finding(
                    "unverified",
                    o.client_order_id,
                    o.symbol,
                    fmt(o.status),
                    "not listed",
                    "run again",
                    "absent from the listings and not looked up",
                    o.broker_id,
                )
            )
        elif lk.outcome == "found" and lk.report is not None:
            found.append(lk.report)
        elif lk.outcome == "not_found":
            resolved = "rejected" if o.status in _BEFORE_VENUE else "canceled"
            findings.append(
                Finding(
                    "shadow",
                    o.client_order_id,
                    o.symbol,
                    fmt(o.status),
                    "not found",
                    f"mark {resolved} locally (--apply)",
                    "absent from the listings; a lookup by id answered 404",
                    o.broker_id,
                )
            )
        else:
            findings.append(
                Finding(
                    "unverified",
                    o.client_order_id,
                    o.symbol,
                    fmt(o.status),
                    "lookup failed",
                    "run again",
                    lk.error,
                    o.broker_id,
                )
            )
    return findings, found


_BEFORE_VENUE = frozenset(
    {
        OrderStatus.PENDING_NEW,
        OrderStatus.ACCEPTED,
        OrderStatus.ACCEPTED_FOR_BIDDING,
        OrderStatus.PENDING_REVIEW,
        OrderStatus.HELD,
    }
)


def order_drift(o: LocalOrder, r: OrderReport) -> list[Finding]:
    """Status and fill drift of one order we and the broker both know."""
    out = []
    if r.filled_qty > o.filled_qty:
        price = synthetic_fill_price(o.filled_qty, o.avg_price, r.filled_qty, r.filled_avg_price)
        from mqd_cli.orders import synthetic_fill_id

        out.append(
            Finding(
                "fill_drift",
                o.client_order_id,
                o.symbol,
                fmt(o.filled_qty),
                fmt(r.filled_qty),
                "add synthetic fill (--apply)",
                f"missing {fmt(r.filled_qty - o.filled_qty)} @ {fmt(price)}",
                r.id,
                {
                    "report": r,
                    "fill_id": synthetic_fill_id(o.client_order_id, r.filled_qty),
                    "qty": r.filled_qty - o.filled_qty,
                    "price": price,
                },
            )
        )
    elif r.filled_qty < o.filled_qty:
        out.append(
            Finding(
                "fill_drift",
                o.client_order_id,
                o.symbol,
                fmt(o.filled_qty),
                fmt(r.filled_qty),
                "review",
                "the broker reports less than our fills (busted trade or double count)",
                r.id,
            )
        )
    if r.status is not o.status:
        out.append(
            Finding(
                "status_drift",
                o.client_order_id,
                o.symbol,
                fmt(o.status),
                fmt(r.status),
                "apply broker status (--apply)",
                "",
                r.id,
                {"report": r},
            )
        )
    return out


def position_findings(
    local: LocalState, broker: BrokerSnapshot, pending: Mapping[str, Decimal]
) -> list[Finding]:
    """Broker positions against ours plus what pending repairs would add."""
    theirs = {p.symbol: p.qty for p in broker.positions}
    out = []
    for sym in sorted(set(theirs) | set(local.positions) | set(pending)):
        ours = local.positions.get(sym, ZERO)
        expected = ours + pending.get(sym, ZERO)
        broker_qty = theirs.get(sym, ZERO)
        if abs(expected - broker_qty) <= QTY_TOLERANCE:
            continue
        out.append(
            Finding(
                "position_drift",
                sym,
                sym,
                fmt(ours),
                fmt(broker_qty),
                "review",
                f"difference {fmt(broker_qty - expected)} after pending repairs: trades outside "
                "mqd, a position older than the store, or a corporate action",
            )
        )
    return out


def account_findings(
    local: LocalState, account: AccountReport | None, unexplained_fills: bool
) -> list[Finding]:
    if account is None:
        return []
    out = []
    tol = cash_tolerance(account)
    if local.cash_baseline is not None:
        expected = local.cash_baseline + local.net_traded_since_baseline
        if abs(account.cash - expected) > tol:
            hint = "; fill drift may explain it" if unexplained_fills else ""
            out.append(
                Finding(
                    "cash_drift",
                    "account",
                    "",
                    fmt(expected),
                    fmt(account.cash),
                    "review",
                    f"cash moved {fmt(account.cash - expected)} beyond fills we know (tolerance "
                    f"{fmt(tol)}): deposit, withdrawal, fee, dividend or a missed fill{hint}",
                )
            )
    parts = account.cash + account.long_market_value + account.short_market_value
    if account.equity and abs(account.equity - parts) > tol:
        out.append(
            Finding(
                "equity_drift",
                "account",
                "",
                fmt(parts),
                fmt(account.equity),
                "review",
                "broker equity differs from cash + long + short market value",
            )
        )
    return out


# -- the diff -------------------------------------------------------------------------------------


def diff(
    local: LocalState,
    broker: BrokerSnapshot,
    lookups: Mapping[str, Lookup] | None = None,
    *,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
) -> ReconcileReport:
    """Compare our state with the broker's. Pure: same inputs, same report."""
    now = now or broker.taken_at
    lookups = lookups or {}
    findings = orphan_findings(local, broker)
    shadows, found = shadow_findings(local, broker, lookups, now, grace)
    findings += shadows
    by_cid, by_id = index_broker_orders((*broker.orders, *found))
    pending: dict[str, Decimal] = {}
    for f in findings:
        r = f.data.get("report")
        if f.kind == "orphan" and f.local == "unknown" and r is not None and r.filled_qty:
            pending[r.symbol] = pending.get(r.symbol, ZERO) + signed(r.side, r.filled_qty)
    for o in local.orders:
        r = match(o, by_cid, by_id)
        if r is None:
            continue
        for f in order_drift(o, r):
            findings.append(f)
            if f.kind == "fill_drift" and f.action != "review":
                pending[o.symbol] = pending.get(o.symbol, ZERO) + signed(o.side, f.data["qty"])
    findings += position_findings(local, broker, pending)
    findings += account_findings(local, broker.account, bool(pending))
    return ReconcileReport(
        now, tuple(findings), len(local.orders), len(broker.orders), len(lookups)
    )


# -- orchestration (not pure) ---------------------------------------------------------------------


def collect(
    tracker: OrderTracker,
    broker: Broker,
    clock: Clock,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    grace: timedelta = DEFAULT_GRACE,
    cash_baseline: Decimal | None = None,
    net_traded_baseline: Decimal | None = None,
) -> tuple[LocalState, BrokerSnapshot, dict[str, Lookup]]:
    """Fetch the broker's snapshots, then look up each shadow candidate individually.

    A failing listing raises (the command exits 3: could not check). A failing lookup only
    makes that order ``unverified``: a network error, a timeout or a 429 never confirms a
    shadow; only ``NotFound`` does.
    """
    from mqd_cli.brokers.errors import AuthFailed, BrokerCallError, NotFound

    now = clock.now()
    open_orders = broker.list_orders("open")
    closed = broker.list_orders("closed", after=now - lookback)
    positions = broker.list_positions()
    account = broker.get_account()
    snapshot = BrokerSnapshot(tuple(open_orders) + tuple(closed), tuple(positions), account, now)
    local = local_state(
        tracker, cash_baseline=cash_baseline, net_traded_baseline=net_traded_baseline
    )
    lookups: dict[str, Lookup] = {}
    for o in shadow_candidates(local, snapshot, now, grace):
        try:
            if o.broker_id:
                report = broker.get_order(o.broker_id)
            else:
                report = broker.get_order_by_client_id(o.client_order_id)
            lookups[o.client_order_id] = Lookup(o.client_order_id, "found", report)
        except NotFound:
            lookups[o.client_order_id] = Lookup(o.client_order_id, "not_found")
        except AuthFailed:
            raise
        except BrokerCallError as exc:
            lookups[o.client_order_id] = Lookup(
                o.client_order_id, "error", error=f"{type(exc).__name__}: {exc}"
            )
    return local, snapshot, lookups


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
            actions.append(
                Action(
                    "adopt",
                    f.subject,
                    f"tracked as external, {fmt(res.status)}"
                    f", filled {fmt(tracker.order(res.client_order_id).filled_qty)}"
                    if res.client_order_id and tracker.order(res.client_order_id)
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
        "findings": [finding_doc(f) for f in report.findings],
        "actions": [action_doc(a) for a in actions],
    }
