"""Domain types: what the broker says (immutable reports) and what we ask of it (intents).

Every price, quantity and amount is a ``Decimal``. Enums accept unknown values: an unknown wire
value becomes ``UNKNOWN`` and the raw text is kept on the report (``raw``), so a new Alpaca
status never crashes a parser. Converting to and from Alpaca's JSON lives in ``wire.py``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any, Self


class WireEnum(StrEnum):
    """A str enum whose unknown values parse to ``UNKNOWN`` instead of raising."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, str):
            lowered = value.strip().lower()
            for member in cls:
                if member.value == lowered:
                    return member
        return cls.__members__.get("UNKNOWN")

    def __str__(self) -> str:
        return self.value


class Side(WireEnum):
    BUY = "buy"
    SELL = "sell"
    UNKNOWN = "unknown"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(WireEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"
    UNKNOWN = "unknown"


class TimeInForce(WireEnum):
    DAY = "day"
    GTC = "gtc"
    OPG = "opg"
    CLS = "cls"
    IOC = "ioc"
    FOK = "fok"
    UNKNOWN = "unknown"


class OrderClass(WireEnum):
    """Alpaca's ``order_class``. The wire's ``""`` (what Alpaca sends for a simple order) and a
    missing value parse to ``SIMPLE``; ``mleg`` is options only."""

    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"
    OTO = "oto"
    MLEG = "mleg"
    UNKNOWN = "unknown"


class OrderStatus(WireEnum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    DONE_FOR_DAY = "done_for_day"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    PENDING_REVIEW = "pending_review"
    ACCEPTED = "accepted"
    PENDING_NEW = "pending_new"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    STOPPED = "stopped"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    CALCULATED = "calculated"
    HELD = "held"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        return self not in TERMINAL_STATUSES and self is not OrderStatus.UNKNOWN


# Alpaca's `status=closed` group; everything else is open (accepted, pending_*, held, ...).
# done_for_day is closed for today's listing although the order may resume the next day.
TERMINAL_STATUSES = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REPLACED,
        OrderStatus.REJECTED,
        OrderStatus.DONE_FOR_DAY,
    }
)


class AssetClass(WireEnum):
    US_EQUITY = "us_equity"
    US_OPTION = "us_option"
    CRYPTO = "crypto"
    CRYPTO_PERP = "crypto_perp"
    UNKNOWN = "unknown"


class AssetStatus(WireEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"


class PositionSide(WireEnum):
    LONG = "long"
    SHORT = "short"
    UNKNOWN = "unknown"


class TradeEvent(WireEnum):
    NEW = "new"
    FILL = "fill"
    PARTIAL_FILL = "partial_fill"
    CANCELED = "canceled"
    EXPIRED = "expired"
    DONE_FOR_DAY = "done_for_day"
    REPLACED = "replaced"
    REJECTED = "rejected"
    PENDING_NEW = "pending_new"
    STOPPED = "stopped"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    CALCULATED = "calculated"
    SUSPENDED = "suspended"
    ORDER_REPLACE_REJECTED = "order_replace_rejected"
    ORDER_CANCEL_REJECTED = "order_cancel_rejected"
    ACCEPTED = "accepted"
    RESTATED = "restated"
    TRADE_BUST = "trade_bust"
    # Not in Alpaca's documented list: mqd's simulated exchange announces with it the order
    # that replaces a held bracket/oco leg (it starts held, so no `new` is sent for it).
    HELD = "held"
    UNKNOWN = "unknown"

    @property
    def is_fill(self) -> bool:
        return self in (TradeEvent.FILL, TradeEvent.PARTIAL_FILL)


# -- broker truth ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderReport:
    """An order as the broker reports it (REST or the ``order`` of a trade update)."""

    id: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    status: OrderStatus
    qty: Decimal | None
    notional: Decimal | None
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    created_at: datetime
    updated_at: datetime | None = None
    submitted_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    extended_hours: bool = False
    asset_class: AssetClass = AssetClass.US_EQUITY
    asset_id: str | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    # The child orders of a bracket, oco or oto order (a nested listing or a single order);
    # empty for a leg itself and in flat listings, where each leg is an order of its own.
    legs: tuple[OrderReport, ...] = ()
    expires_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    position_intent: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def remaining_qty(self) -> Decimal | None:
        return None if self.qty is None else self.qty - self.filled_qty

    @property
    def raw_status(self) -> str:
        return str(self.raw.get("status", self.status.value))

    def raw_value(self, key: str) -> str:
        """The wire text of an enum field (``side``, ``type``, ``status``, ...) as received,
        so an ``UNKNOWN`` member still shows what the broker sent; else the member's value."""
        text = self.raw.get(key)
        if key == "type" and not text:
            text = self.raw.get("order_type")
        if isinstance(text, str) and text:
            return text
        member = getattr(self, key, None)
        return member.value if isinstance(member, Enum) else str(member or "")


@dataclass(frozen=True)
class FillReport:
    """One execution. ``execution_id`` is None when the source did not carry one."""

    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    timestamp: datetime
    execution_id: str | None = None
    position_qty: Decimal | None = None
    fee: Decimal = Decimal("0")


@dataclass(frozen=True)
class FillActivity:
    """One ``FILL`` account activity (``GET /v2/account/activities/FILL``): an execution with
    the order's cumulative quantity after it. Activities of one millisecond may come out of
    order (Alpaca-API#170): ``cum_qty`` orders them. Whether ``id``'s uuid part equals the
    stream's ``execution_id`` is not documented, so mqd keys these by ``cum_qty``, never by id.
    """

    id: str
    order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    cum_qty: Decimal
    leaves_qty: Decimal | None
    transaction_time: datetime
    type: str = "fill"  # fill or partial_fill
    order_status: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class TradeUpdate:
    """One ``trade_updates`` event: the event, its time, the full order after it, a fill's data."""

    event: TradeEvent
    timestamp: datetime
    order: OrderReport
    execution_id: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None
    event_raw: str = ""
    # The whole ``data`` object: keys mqd does not model (``at``, ``event_id``, an mleg fill's
    # ``position_qtys`` and ``legs``) are kept as sent.
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def fill(self) -> FillReport | None:
        """The execution this event reports, when it is a fill with a price and a quantity."""
        if not self.event.is_fill or self.price is None or self.qty is None:
            return None
        return FillReport(
            order_id=self.order.id,
            client_order_id=self.order.client_order_id,
            symbol=self.order.symbol,
            side=self.order.side,
            qty=self.qty,
            price=self.price,
            timestamp=self.timestamp,
            execution_id=self.execution_id,
            position_qty=self.position_qty,
        )


@dataclass(frozen=True)
class PositionReport:
    symbol: str
    qty: Decimal  # signed: negative when short
    avg_entry_price: Decimal
    side: PositionSide
    asset_class: AssetClass = AssetClass.US_EQUITY
    asset_id: str | None = None
    exchange: str = ""
    qty_available: Decimal | None = None
    market_value: Decimal | None = None
    cost_basis: Decimal | None = None
    unrealized_pl: Decimal | None = None
    current_price: Decimal | None = None
    lastday_price: Decimal | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class AccountReport:
    """``GET /v2/account``: every field Alpaca sends. The typed fields are the ones mqd reads;
    None means the payload did not carry that field (older accounts, emulators, the removed PDT
    fields). ``raw`` is the whole payload, so fields mqd does not model (``admin_configurations``,
    ``user_configurations``, broker-API extras such as ``cash_withdrawable``) are kept as sent.
    """

    id: str
    account_number: str
    status: str
    currency: str = "USD"
    cash: Decimal = Decimal("0")
    equity: Decimal = Decimal("0")
    buying_power: Decimal = Decimal("0")
    portfolio_value: Decimal | None = None
    long_market_value: Decimal = Decimal("0")
    short_market_value: Decimal = Decimal("0")
    initial_margin: Decimal = Decimal("0")
    maintenance_margin: Decimal = Decimal("0")
    last_equity: Decimal | None = None
    multiplier: Decimal = Decimal("1")
    shorting_enabled: bool = False
    trading_blocked: bool = False
    account_blocked: bool = False
    crypto_status: str | None = None
    # Reg T buying power, the overnight power for marginable buys: excess equity x 2 on a margin
    # account (also when ``buying_power`` is 4x day-trading power), the cash on a cash account.
    regt_buying_power: Decimal | None = None
    # Cash-only buying power: what crypto and non-marginable assets can be bought with.
    non_marginable_buying_power: Decimal | None = None
    options_buying_power: Decimal | None = None
    daytrading_buying_power: Decimal | None = None  # removed by Alpaca on 2026-07-06
    effective_buying_power: Decimal | None = None
    bod_dtbp: Decimal | None = None  # day-trading buying power at the beginning of the day
    sma: Decimal | None = None  # special memorandum account
    accrued_fees: Decimal | None = None
    pending_transfer_in: Decimal | None = None
    pending_transfer_out: Decimal | None = None
    last_maintenance_margin: Decimal | None = None
    position_market_value: Decimal | None = None
    intraday_adjustments: Decimal | None = None
    pending_reg_taf_fees: Decimal | None = None
    options_approved_level: int | None = None  # 0 disabled ... 3 spreads
    options_trading_level: int | None = None
    crypto_tier: int | None = None
    pattern_day_trader: bool | None = None  # removed by Alpaca on 2026-07-06
    daytrade_count: int | None = None  # removed by Alpaca on 2026-07-06
    transfers_blocked: bool = False
    trade_suspended_by_user: bool = False
    created_at: datetime | None = None
    balance_asof: date | None = None  # the day the ``last_*`` fields describe
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class AssetInfo:
    """One asset of ``/v2/assets``. Crypto carries the size and price increments."""

    id: str
    symbol: str
    asset_class: AssetClass
    exchange: str
    status: AssetStatus
    tradable: bool
    marginable: bool
    shortable: bool
    easy_to_borrow: bool
    fractionable: bool
    name: str = ""
    min_order_size: Decimal | None = None
    min_trade_increment: Decimal | None = None
    price_increment: Decimal | None = None
    maintenance_margin_requirement: Decimal | None = None
    margin_requirement_long: Decimal | None = None
    margin_requirement_short: Decimal | None = None
    attributes: tuple[str, ...] = ()
    cusip: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def class_text(self) -> str:
        """The asset class as the broker wrote it (``ipo``, ``us_index``, ...), also when the
        enum does not know it; the member's value otherwise."""
        if self.asset_class is AssetClass.UNKNOWN:
            text = self.raw.get("class") or self.raw.get("asset_class")
            if isinstance(text, str) and text:
                return text
        return self.asset_class.value

    @property
    def status_text(self) -> str:
        """The status as the broker wrote it, also when the enum does not know it."""
        if self.status is AssetStatus.UNKNOWN:
            text = self.raw.get("status")
            if isinstance(text, str) and text:
                return text
        return self.status.value


# The asset classes mqd trades (validation, rounding and the risk gate know their rules); an
# asset of any other class is stored and shown, and orders for it are refused.
SUPPORTED_ASSET_CLASSES = frozenset({AssetClass.US_EQUITY, AssetClass.CRYPTO})


@dataclass(frozen=True)
class ClockReport:
    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class CalendarDay:
    date: date
    open: time  # New York time
    close: time
    session_open: time | None = None
    session_close: time | None = None
    settlement_date: _dt.date | None = None  # `date` here would name the field above
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class CancelResult:
    """One row of cancel-all's 207 answer."""

    order_id: str
    status: int  # HTTP status of that order's cancel
    order: OrderReport | None = None


@dataclass(frozen=True)
class Bar:
    """An OHLCV bar; ``timestamp`` is the bar's start (Alpaca's ``t``)."""

    symbol: str
    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal("0")
    trade_count: int | None = None
    vwap: Decimal | None = None
    # Wire keys beyond t/o/h/l/c/v/n/vw (e.g. ``x``, the exchange of older crypto bars) as
    # (key, value) pairs: kept, not dropped; a tuple so the millions of bars of a backtest
    # share one empty value.
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)


# -- what we ask --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderIntent:
    """An order we want: from a strategy, a CSV for ``symbols validate``, or an operator.

    Exactly one of ``qty`` and ``notional``. ``client_order_id`` is set by the order tracker
    (deterministic) before the intent reaches a broker. ``reason`` says why (entry, exit,
    stop_loss, take_profit, ...) and flows into closed trades as the exit reason.

    ``order_class`` other than simple attaches legs the broker holds (Alpaca's advanced orders):
    ``bracket`` needs ``take_profit_limit_price`` and ``stop_loss_stop_price``; ``oto`` one of
    the two; ``oco`` is a ``limit`` order closing a position, its limit the take-profit
    (``take_profit_limit_price``) and ``stop_loss_stop_price`` its stop. A stop-loss leg with
    ``stop_loss_limit_price`` is a stop-limit, else a stop.
    """

    symbol: str
    side: Side
    qty: Decimal | None = None
    notional: Decimal | None = None
    type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    extended_hours: bool = False
    client_order_id: str | None = None
    strategy: str = ""
    reason: str = ""
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit_limit_price: Decimal | None = None
    stop_loss_stop_price: Decimal | None = None
    stop_loss_limit_price: Decimal | None = None
