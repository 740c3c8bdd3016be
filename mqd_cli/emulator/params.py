"""Request parameters parsed the way Alpaca does: a bad value is a 422 (trading) or 400 (data)."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from mqd_cli.emulator.http import bad_data_request, invalid
from mqd_cli.wire import parse as wire_parse


def parse_decimal(value: Any, name: str) -> Decimal | None:
    """A number from a JSON number or a string; None/"" -> None; anything else is a 422."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str | None):
        raise invalid(f"invalid {name}")
    try:
        out = wire_parse.dec(value, name)
    except wire_parse.PayloadError:
        raise invalid(f"invalid {name}") from None
    if out is not None and not out.is_finite():
        raise invalid(f"invalid {name}")
    return out


def parse_bool(value: Any, name: str, default: bool = False) -> bool:
    """JSON booleans, or "true"/"false" in any case (alpaca-py sends Python's ``True``)."""
    if value is None or value == "":
        return default
    try:
        return wire_parse.boolean(value.strip() if isinstance(value, str) else value, name)
    except wire_parse.PayloadError:
        raise invalid(f"invalid {name}") from None


def parse_list(value: str | None) -> list[str]:
    """A comma-separated query value (``symbols=AAPL, MSFT``): the non-empty items, stripped."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def parse_choice(value: Any, name: str, enum: type, required: bool = False) -> Any:
    if value is None or value == "":
        if required:
            raise invalid(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise invalid(f"invalid {name}")
    member = enum(value.strip())
    if member.value == "unknown":
        raise invalid(f"invalid {name}: {value}")
    return member


def parse_time(value: str | None, name: str) -> datetime | None:
    """RFC 3339 or YYYY-MM-DD (midnight UTC) from a query string."""
    if value is None or value == "":
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        return wire_parse.ts(value, name)
    except (wire_parse.PayloadError, ValueError):
        raise invalid(f"invalid {name}: {value}") from None


def parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        out = int(value)
    except ValueError:
        raise invalid(f"invalid {name}: {value}") from None
    if out < low:
        raise invalid(f"{name} must be at least {low}")
    return min(out, high)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_TIMEFRAME_RE = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W)$")
_TIMEFRAME_UNIT = {
    "Min": 60,
    "T": 60,
    "Hour": 3600,
    "H": 3600,
    "Day": 86400,
    "D": 86400,
    "Week": 604800,
    "W": 604800,
}


def parse_timeframe(value: str | None) -> timedelta:
    """``1Min``..``59Min``, ``1Hour``..``23Hour``, ``1Day``, ``1Week`` (and T/H/D/W)."""
    m = _TIMEFRAME_RE.match(value or "")
    if not m:
        raise bad_data_request(f"invalid timeframe: {value!r}")
    n, unit = int(m.group(1)), m.group(2)
    limits = {"Min": 59, "T": 59, "Hour": 23, "H": 23, "Day": 1, "D": 1, "Week": 1, "W": 1}
    if not 1 <= n <= limits[unit]:
        raise bad_data_request(f"invalid timeframe: {value!r}")
    return timedelta(seconds=n * _TIMEFRAME_UNIT[unit])


def page_token(symbol: str, t: datetime) -> str:
    """Alpaca's observed token shape: base64 of ``SYMBOL|M|<t with 9 fractional digits>``."""
    text = f"{symbol}|M|{t.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z"
    return base64.b64encode(text.encode()).decode()


def read_page_token(token: str) -> tuple[str, datetime]:
    try:
        symbol, _, stamp = base64.b64decode(token, validate=True).decode().split("|")
        return symbol, wire_parse.req_ts(stamp, "page_token")
    except (ValueError, wire_parse.PayloadError):
        raise bad_data_request("invalid page_token") from None
