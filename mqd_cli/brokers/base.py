"""The Broker protocol: the one interface every part of mqd uses to talk to a broker.

Implementations: ``SimBroker`` (brokers/sim.py, in-process simulated exchange) and
``AlpacaBroker`` (brokers/alpaca.py, alpaca-py over the network). Both return only mqd domain
types (model.py) and raise only the typed errors of brokers/errors.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

from mqd_cli.brokers.errors import (
    AuthFailed,
    BrokerCallError,
    BrokerUnavailable,
    InsufficientFunds,
    NotFound,
    OrderRejected,
    RateLimited,
)
from mqd_cli.model import (
    AccountReport,
    AssetInfo,
    CalendarDay,
    CancelResult,
    ClockReport,
    OrderIntent,
    OrderReport,
    PositionReport,
    TimeInForce,
)

OrderListStatus = Literal["open", "closed", "all"]

__all__ = [
    "AuthFailed",
    "Broker",
    "BrokerCallError",
    "BrokerUnavailable",
    "InsufficientFunds",
    "NotFound",
    "OrderListStatus",
    "OrderRejected",
    "RateLimited",
]


@runtime_checkable
class Broker(Protocol):
    """What mqd needs from a broker. Every method may raise a ``BrokerCallError`` subclass."""

    name: str

    def get_account(self) -> AccountReport: ...

    def list_positions(self) -> list[PositionReport]: ...

    def get_position(self, symbol: str) -> PositionReport:
        """Raises ``NotFound`` when there is no position."""
        ...

    def list_orders(
        self,
        status: OrderListStatus = "open",
        *,
        after: datetime | None = None,
        until: datetime | None = None,
        symbols: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[OrderReport]:
        """Orders by submission time, newest first; pages through the API internally.

        ``limit=None`` returns every matching order.
        """
        ...

    def get_order(self, order_id: str) -> OrderReport: ...

    def get_order_by_client_id(self, client_order_id: str) -> OrderReport: ...

    def submit_order(self, intent: OrderIntent) -> OrderReport:
        """Submit once. ``intent.client_order_id`` must be set; never retried blindly."""
        ...

    def cancel_order(self, order_id: str) -> None: ...

    def cancel_all_orders(self) -> list[CancelResult]: ...

    def replace_order(
        self,
        order_id: str,
        *,
        qty: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        trail: Decimal | None = None,
        time_in_force: TimeInForce | None = None,
        client_order_id: str | None = None,
    ) -> OrderReport: ...

    def list_assets(
        self, asset_class: str | None = None, status: str | None = None
    ) -> list[AssetInfo]: ...

    def get_asset(self, symbol: str) -> AssetInfo: ...

    def get_clock(self) -> ClockReport: ...

    def get_calendar(self, start: date, end: date) -> list[CalendarDay]: ...

    def close(self) -> None: ...
