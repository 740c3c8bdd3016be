"""Closed trades: one round trip (entry to full exit) with its realized PnL.

The order tracker builds these from fills and stores them (``mqd_cli.store.trades``);
protections, reports and backtests read them. Money and quantities are ``Decimal``; times are
aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mqd_cli.store import Store

Side = Literal["long", "short"]
SIDES: tuple[str, ...] = ("long", "short")

# Exit reasons the order tracker writes; other strings are accepted and kept as given.
STOP_LOSS = "stop_loss"
TRAILING_STOP = "trailing_stop"
TAKE_PROFIT = "take_profit"
SIGNAL = "signal"
MANUAL = "manual"
LIQUIDATION = "liquidation"
STOP_EXIT_REASONS = frozenset({STOP_LOSS, TRAILING_STOP, LIQUIDATION})


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"ClosedTrade.{name} must be an aware datetime, got {value.isoformat()}")
    return value.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class ClosedTrade:
    """A finished round trip. ``pnl`` is realized and already net of ``fees``."""

    trade_id: str
    symbol: str
    side: Side
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    opened_at: datetime
    closed_at: datetime
    pnl: Decimal
    fees: Decimal
    exit_reason: str
    strategy: str

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"ClosedTrade.side must be 'long' or 'short', got {self.side!r}")
        for name in ("qty", "entry_price", "exit_price", "pnl", "fees"):
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                raise TypeError(f"ClosedTrade.{name} must be a Decimal, got {value!r}")
        object.__setattr__(self, "opened_at", _utc(self.opened_at, "opened_at"))
        object.__setattr__(self, "closed_at", _utc(self.closed_at, "closed_at"))

    @property
    def stake(self) -> Decimal:
        """Entry notional: ``qty * entry_price`` (always positive)."""
        return abs(self.qty * self.entry_price)

    @property
    def profit_ratio(self) -> Decimal:
        """Realized PnL over the stake (-0.1 = lost 10 % of the stake); 0 for a zero stake."""
        stake = self.stake
        return self.pnl / stake if stake else Decimal(0)

    @property
    def is_loss(self) -> bool:
        return self.pnl < 0

    @property
    def is_stop_exit(self) -> bool:
        """Closed by a stop (stop-loss, trailing stop or liquidation), whatever the result."""
        return self.exit_reason in STOP_EXIT_REASONS


def make_trade_id(symbol: str, side: str, opened_at: datetime, entry_key: str) -> str:
    """A deterministic id for a round trip: the same entry always gives the same id.

    ``entry_key`` is whatever identifies the entry uniquely (for example the entry order's
    client_order_id), so replaying the same fills after a restart never doubles a trade.
    """
    import hashlib

    raw = f"{symbol}|{side}|{_utc(opened_at, 'opened_at').isoformat()}|{entry_key}"
    return "t-" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def closed_trades(
    store: Store, since: datetime | None = None, symbol: str | None = None
) -> list[ClosedTrade]:
    """Stored closed trades with ``closed_at >= since`` (all when None), oldest first."""
    from mqd_cli.store.trades import closed_trade_rows

    return [ClosedTrade(**row) for row in closed_trade_rows(store, since, symbol)]
