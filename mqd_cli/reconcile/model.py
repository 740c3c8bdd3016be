"""What reconciliation reads and reports: the two sides' snapshots, findings, the report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from mqd_cli.model import AccountReport, OrderReport, OrderStatus, PositionReport, Side

if TYPE_CHECKING:
    pass


ZERO = Decimal(0)
DEFAULT_GRACE = timedelta(seconds=60)
DEFAULT_LOOKBACK = timedelta(days=2)
CASH_TOLERANCE = Decimal("1.00")  # dollars; the larger of this and CASH_TOLERANCE_RATIO*equity
CASH_TOLERANCE_RATIO = Decimal("0.0005")
QTY_TOLERANCE = Decimal("0.000000001")  # Alpaca quantities have up to 9 decimals
DEFAULT_LOOKS = 2  # looks a finding must be present in (1 = no confirmation)
MAX_LOOKS = 5
DEFAULT_CONFIRM_PAUSE = timedelta(seconds=1)  # between two looks
MAX_CONFIRM_PAUSE = timedelta(seconds=30)

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


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class LocalState:
    orders: tuple[LocalOrder, ...]
    positions: Mapping[str, Decimal]  # signed quantity per symbol, from our fills
    cash_baseline: Decimal | None = None  # broker cash at the previous checked run
    net_traded_since_baseline: Decimal = ZERO
    # client_order_ids with a journal row written after the broker was read: in flight
    in_flight: frozenset[str] = frozenset()
    net_traded: Decimal | None = None  # what all our fills moved in cash, at the read


@dataclass(frozen=True, kw_only=True)
class BrokerSnapshot:
    orders: tuple[OrderReport, ...]  # open plus closed within the lookback
    positions: tuple[PositionReport, ...]
    account: AccountReport | None
    taken_at: datetime
    # the positions and account read before the orders were listed (None: not read; the
    # fields above are then the only reading)
    positions_before: tuple[PositionReport, ...] | None = None
    account_before: AccountReport | None = None
    # the open orders listed again after the second reading (None: not listed again)
    open_after: tuple[OrderReport, ...] | None = None


@dataclass(frozen=True)
class Lookup:
    """The answer of one targeted lookup: found (with the report), not_found (404) or error."""

    client_order_id: str
    outcome: Literal["found", "not_found", "error"]
    report: OrderReport | None = None
    error: str = ""


# -- output ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class ReconcileReport:
    checked_at: datetime
    findings: tuple[Finding, ...]
    orders_checked: int
    broker_orders: int
    lookups: int
    looks: int = 1  # how many looks the findings were confirmed in
    unconfirmed: int = 0  # findings present in some looks only: in flight, not reported
    in_flight: int = 0  # orders skipped as in flight (journaled after the broker was read;
    # the most of any look)
    unchecked: tuple[str, ...] = ()  # what moved during every look and could not be judged

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
