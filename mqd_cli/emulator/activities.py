"""Alpaca's account activities over the simulated exchange: the FILL activities, paged.

``FillActivities.record`` is subscribed to the ``SimBroker``'s trade updates and keeps one
activity per ``fill``/``partial_fill`` event, in Alpaca's trade-activity shape (OpenAPI
``AccountTradingActivities``, alpaca-py ``TradeActivity``): ``id, account_id, activity_type
"FILL", transaction_time, type, price, qty, side, symbol, leaves_qty, order_id, cum_qty,
order_status``. ``account_id`` is there because alpaca-py's model requires it.

Ids have Alpaca's ``<New York time to the millisecond>::<uuid>`` shape (the trading API's own
example: ``20220202135509981::2d7be4ff-...`` for a fill at 2022-02-02T18:55:09.981482Z). Alpaca
does not say what its uuid part is; here it is the broker's execution id, so an activity matches
the ``execution_id`` of the trade update that reported the fill.

Queries follow ``GET /v2/account/activities[/{activity_type}]``: ``activity_types`` (comma list)
or ``category`` (``trade_activity``/``non_trade_activity``), ``date`` (a New York day) or
``after``/``until`` (exclusive), ``direction`` (default ``desc``), ``page_size`` (1-100, default
100; without a maximum when ``date`` is given) and ``page_token`` (the id of the previous page's
last activity). Activity types the exchange does not simulate answer an empty list; an unknown
type or a bad parameter is a 422.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from mqd_cli.emulator.http import invalid
from mqd_cli.emulator.params import parse_int, parse_list, parse_time
from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.model import OrderStatus, TradeEvent, TradeUpdate
from mqd_cli.wire import format as wire_format

__all__ = ["ACTIVITY_TYPES", "FillActivities", "FillActivity", "activity_id"]

# The trading API's ActivityType enum (OpenAPI) and the extra members of alpaca-py's enum.
_TYPE_NAMES = """FILL TRANS MISC ACATC ACATS CFEE CSD CSW DIV DIVCGL DIVCGS DIVFEE DIVFT DIVNRA
DIVROC DIVTW DIVTXEX DIVWH EXTRD FEE FXTRD INT INTNRA INTPNL INTTW JNL JNLC JNLS MA MEM NC OCT
OPASN OPCA OPCSH OPEXC OPEXP OPTRD PTC PTR REORG SPIN SPLIT SWP VOF WH"""
ACTIVITY_TYPES = frozenset(_TYPE_NAMES.split())
CATEGORIES = ("trade_activity", "non_trade_activity")
_ID_RE = re.compile(r"^(\d{17})::[0-9A-Za-z-]+$")
ZERO = Decimal(0)


def activity_id(at: datetime, uid: str) -> str:
    """``YYYYMMDDHHMMSSmmm::uid`` with the time in New York, to the millisecond."""
    local = at.astimezone(EXCHANGE_TZ)
    return f"{local:%Y%m%d%H%M%S}{local.microsecond // 1000:03d}::{uid}"


def _id_time(token: str) -> datetime:
    """The (New York, millisecond) time at the front of an activity id; 422 when malformed."""
    m = _ID_RE.match(token)
    if not m:
        raise invalid(f"invalid page_token: {token}")
    digits = m.group(1)
    try:
        local = datetime.strptime(digits[:14], "%Y%m%d%H%M%S")
    except ValueError:
        raise invalid(f"invalid page_token: {token}") from None
    local = local.replace(microsecond=int(digits[14:]) * 1000, tzinfo=EXCHANGE_TZ)
    return local.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class FillActivity:
    """One execution as Alpaca lists it among the account's activities."""

    id: str
    seq: int
    account_id: str
    transaction_time: datetime
    type: str  # "fill" | "partial_fill"
    price: Decimal
    qty: Decimal
    side: str
    symbol: str
    leaves_qty: Decimal
    order_id: str
    cum_qty: Decimal
    order_status: str

    @property
    def execution_id(self) -> str:
        return self.id.partition("::")[2]

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "activity_type": "FILL",
            "transaction_time": wire_format.stamp(self.transaction_time),
            "type": self.type,
            "price": wire_format.num(self.price),
            "qty": wire_format.num(self.qty),
            "side": self.side,
            "symbol": self.symbol,
            "leaves_qty": wire_format.num(self.leaves_qty),
            "order_id": self.order_id,
            "cum_qty": wire_format.num(self.cum_qty),
            "order_status": self.order_status,
        }


def _leaves(update: TradeUpdate, price: Decimal) -> Decimal:
    order = update.order
    if order.status is OrderStatus.FILLED:
        return ZERO
    if order.qty is not None:
        return max(order.qty - order.filled_qty, ZERO)
    # A notional order: what is left of the amount, in shares at this fill's price.
    spent = order.filled_qty * (order.filled_avg_price or price)
    left = (order.notional or ZERO) - spent
    return max((left / price).quantize(Decimal("0.000000001")), ZERO) if price else ZERO


class FillActivities:
    """The account's FILL activities, recorded from trade updates (``record``)."""

    def __init__(self, account_id: str):
        self.account_id = account_id
        self._rows: list[FillActivity] = []
        self._by_id: dict[str, FillActivity] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, update: TradeUpdate) -> None:
        """Keep a fill or partial fill (other events are ignored)."""
        if update.event not in (TradeEvent.FILL, TradeEvent.PARTIAL_FILL):
            return
        if update.price is None or update.qty is None or not update.execution_id:
            return
        order = update.order
        row = FillActivity(
            id=activity_id(update.timestamp, update.execution_id),
            seq=len(self._rows),
            account_id=self.account_id,
            transaction_time=update.timestamp,
            type="fill" if update.event is TradeEvent.FILL else "partial_fill",
            price=update.price,
            qty=update.qty,
            side=order.raw_value("side"),
            symbol=order.symbol,
            leaves_qty=_leaves(update, update.price),
            order_id=order.id,
            cum_qty=order.filled_qty,
            order_status=order.raw_status,
        )
        if row.id in self._by_id:
            return  # the same execution delivered twice
        self._rows.append(row)
        self._by_id[row.id] = row

    def query(self, params: Mapping[str, str], activity_type: str | None = None) -> list[dict]:
        """The wire rows answering ``GET /v2/account/activities[/{activity_type}]``."""
        q = params
        wanted: set[str] | None = None
        if activity_type is not None:
            wanted = {_activity_type(activity_type)}
        category = (q.get("category") or "").strip().lower() or None
        types = parse_list(q.get("activity_types"))
        if category is not None:
            if category not in CATEGORIES:
                raise invalid(f"invalid category: {q.get('category')}")
            if activity_type is not None or types:
                raise invalid("category cannot be used with activity types")
        if types:
            if activity_type is not None:
                raise invalid("activity_types cannot be used with an activity type in the path")
            wanted = {_activity_type(t) for t in types}
        day = _day(q.get("date"))
        after = parse_time(q.get("after"), "after")
        until = parse_time(q.get("until"), "until")
        if day is not None and (after is not None or until is not None):
            raise invalid("date cannot be used with after or until")
        direction = (q.get("direction") or "desc").strip().lower()
        if direction not in ("asc", "desc"):
            raise invalid(f"invalid direction: {q.get('direction')}")
        # 1-100, default 100; with a date: all of them by default and no maximum.
        size = parse_int(q.get("page_size"), "page_size", 100, 1, 10**9 if day else 100)
        if day is not None and not q.get("page_size"):
            size = len(self._rows)
        token = q.get("page_token") or None

        fills = (wanted is None or "FILL" in wanted) and category in (None, "trade_activity")
        rows = list(self._rows) if fills else []
        rows = [
            r
            for r in rows
            if (day is None or r.transaction_time.astimezone(EXCHANGE_TZ).date() == day)
            and (after is None or r.transaction_time > after)
            and (until is None or r.transaction_time < until)
        ]
        rows.sort(key=lambda r: (r.transaction_time, r.seq), reverse=direction == "desc")
        if token is not None:
            rows = self._after_token(rows, token, direction)
        return [r.to_wire() for r in rows[:size]]

    def _after_token(self, rows: list[FillActivity], token: str, direction: str) -> list:
        """The rows that follow the activity ``token`` in ``direction``; a well-formed id that
        is not known (another market's) cuts by its time."""
        known = self._by_id.get(token)
        if known is not None:
            key = (known.transaction_time, known.seq)
            if direction == "asc":
                return [r for r in rows if (r.transaction_time, r.seq) > key]
            return [r for r in rows if (r.transaction_time, r.seq) < key]
        cut = _id_time(token)

        def ms(r: FillActivity) -> datetime:
            t = r.transaction_time.astimezone(UTC)
            return t.replace(microsecond=t.microsecond // 1000 * 1000)

        if direction == "asc":
            return [r for r in rows if ms(r) > cut]
        return [r for r in rows if ms(r) < cut]


def _activity_type(text: str) -> str:
    name = text.strip().upper()
    if name not in ACTIVITY_TYPES:
        raise invalid(f"invalid activity type: {text}")
    return name


def _day(value: str | None) -> date | None:
    """``date``: a YYYY-MM-DD day, or a timestamp whose New York day counts."""
    if value is None or value == "":
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise invalid(f"invalid date: {value}") from None
    at = parse_time(value, "date")
    return at.astimezone(EXCHANGE_TZ).date() if at is not None else None
