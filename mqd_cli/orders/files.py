"""Order-intent files for ``mqd symbols validate``: CSV or a JSON list, read strictly, written back.

Columns / keys: ``symbol`` and ``side`` (required), ``qty`` or ``notional``, ``type`` (default
market), ``limit_price``, ``stop_price``, ``trail_price``, ``trail_percent``, ``time_in_force``
(default day), ``extended_hours`` (true/false), ``client_order_id``, and two that describe the
context rather than the order: ``price`` (a reference price for the $1 minimum and crypto minimum
checks) and ``position_qty`` (the signed position, so a sell within it is not a short).

Anything malformed raises ``MalformedFile`` (exit 2) naming the line: an unknown column, a
number that is not a decimal, an unknown type or time in force, a JSON syntax error. An unknown
side is the order's own problem (``BAD_SIDE``, from the rules), so the rest is still checked.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from mqd_cli.errors import UsageError
from mqd_cli.model import OrderIntent, OrderType, Side, TimeInForce

ORDER_FIELDS = (
    "symbol",
    "side",
    "qty",
    "notional",
    "type",
    "limit_price",
    "stop_price",
    "trail_price",
    "trail_percent",
    "time_in_force",
    "extended_hours",
    "client_order_id",
)
CONTEXT_FIELDS = ("price", "position_qty")
KNOWN = ORDER_FIELDS + CONTEXT_FIELDS
_DECIMALS = frozenset(
    {
        "qty",
        "notional",
        "limit_price",
        "stop_price",
        "trail_price",
        "trail_percent",
        "price",
        "position_qty",
    }
)
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


class MalformedFile(UsageError):
    """The file cannot be read as order intents (exit 2); ``line`` is 1-based."""

    def __init__(self, path: str, line: int, message: str):
        super().__init__(
            f"{path}:{line}: {message}",
            "fix that line; columns: " + ", ".join(KNOWN),
        )
        self.line = line


@dataclass(frozen=True)
class FileOrder:
    """One order of the file with its line and context columns."""

    line: int
    intent: OrderIntent
    price: Decimal | None = None
    position_qty: Decimal = Decimal(0)


@dataclass(frozen=True)
class OrderFile:
    path: str
    format: str  # "csv" or "json"
    columns: tuple[str, ...]
    orders: list[FileOrder]


def detect_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".json"):
        return suffix[1:]
    return "json" if text.lstrip().startswith(("[", "{")) else "csv"


def read_orders(path: str | Path) -> OrderFile:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror or exc}", "check the path") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedFile(str(p), raw[: exc.start].count(b"\n") + 1, "not UTF-8 text") from None
    fmt = detect_format(p, text)
    if fmt == "json":
        return parse_json(text, str(p))
    return parse_csv(text, str(p))


# -- CSV ------------------------------------------------------------------------------------------


def parse_csv(text: str, path: str = "<csv>") -> OrderFile:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    orders: list[FileOrder] = []
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = _header([c.strip().lower() for c in row], path, start)
                continue
            if len(row) > len(header):
                raise MalformedFile(path, start, f"{len(row)} fields, the header has {len(header)}")
            values = {k: v.strip() for k, v in zip(header, row, strict=False) if v.strip()}
            orders.append(_order(values, path, start))
    except csv.Error as exc:
        raise MalformedFile(path, reader.line_num or 1, f"CSV syntax: {exc}") from None
    if header is None:
        raise MalformedFile(path, 1, "empty file: expected a header line with symbol,side,...")
    return OrderFile(path, "csv", tuple(header), orders)


def _header(cols: list[str], path: str, line: int) -> list[str]:
    import difflib

    seen: set[str] = set()
    for c in cols:
        if c not in KNOWN:
            near = difflib.get_close_matches(c, KNOWN, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise MalformedFile(path, line, f"unknown column {c!r}{hint}")
        if c in seen:
            raise MalformedFile(path, line, f"duplicate column {c!r}")
        seen.add(c)
    for need in ("symbol", "side"):
        if need not in seen:
            raise MalformedFile(path, line, f"missing column {need!r}")
    return cols


# -- JSON -----------------------------------------------------------------------------------------


def parse_json(text: str, path: str = "<json>") -> OrderFile:
    """A JSON list of objects; each object's line is where it starts."""
    decoder = json.JSONDecoder(parse_float=Decimal)
    n = len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    def line_of(i: int) -> int:
        return text.count("\n", 0, i) + 1

    i = skip(0)
    if i >= n or text[i] != "[":
        raise MalformedFile(path, line_of(i), "expected a JSON list of order objects")
    i = skip(i + 1)
    orders: list[FileOrder] = []
    columns: list[str] = []
    if i < n and text[i] == "]":
        i = skip(i + 1)
    else:
        while True:
            start = i
            try:
                obj, i = decoder.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise MalformedFile(path, exc.lineno, f"JSON syntax: {exc.msg}") from None
            except (RecursionError, ValueError) as exc:  # absurd nesting, huge integers
                raise MalformedFile(path, line_of(start), f"JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise MalformedFile(path, line_of(start), "each order must be a JSON object")
            values: dict[str, str] = {}
            for k, v in obj.items():
                key = str(k).strip().lower()
                if key not in KNOWN:
                    raise MalformedFile(path, line_of(start), f"unknown key {k!r}")
                if key not in columns:
                    columns.append(key)
                text_value = _json_scalar(v, key, path, line_of(start))
                if text_value:
                    values[key] = text_value
            orders.append(_order(values, path, line_of(start)))
            i = skip(i)
            if i < n and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < n and text[i] == "]":
                i = skip(i + 1)
                break
            raise MalformedFile(path, line_of(i), "expected ',' or ']' after an order")
    if i < n:
        raise MalformedFile(path, line_of(i), "extra data after the list")
    return OrderFile(path, "json", tuple(columns), orders)


def _json_scalar(v: Any, key: str, path: str, line: int) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | Decimal | str):
        return str(v).strip()
    raise MalformedFile(path, line, f"{key}: expected a string, number or boolean")


# -- one order ------------------------------------------------------------------------------------


def _order(values: dict[str, str], path: str, line: int) -> FileOrder:
    def bad(msg: str) -> MalformedFile:
        return MalformedFile(path, line, msg)

    nums: dict[str, Decimal] = {}
    for key in _DECIMALS & values.keys():
        try:
            d = Decimal(values[key])
        except (InvalidOperation, ValueError):
            raise bad(f"{key}: {values[key]!r} is not a number") from None
        if not d.is_finite() or abs(d.adjusted()) > 15:
            raise bad(f"{key}: {values[key]!r} is out of range")
        nums[key] = d
    symbol = values.get("symbol", "")
    if not symbol or any(c.isspace() for c in symbol):
        raise bad("symbol: missing or contains spaces")
    # An unknown side is a problem of this order (BAD_SIDE, reported with the others), not of
    # the file: the rest of the file is still checked.
    side = Side(values.get("side", ""))
    typ = OrderType(values.get("type", "market"))
    if typ is OrderType.UNKNOWN:
        raise bad(
            f"type: {values['type']!r} is not market, limit, stop, stop_limit or trailing_stop"
        )
    tif = TimeInForce(values.get("time_in_force", "day"))
    if tif is TimeInForce.UNKNOWN:
        raise bad(
            f"time_in_force: {values['time_in_force']!r} is not day, gtc, opg, cls, ioc or fok"
        )
    eh = values.get("extended_hours", "").lower()
    if eh not in _TRUE and eh not in _FALSE:
        raise bad(f"extended_hours: {values['extended_hours']!r} is not true or false")
    intent = OrderIntent(
        symbol=symbol,
        side=side,
        qty=nums.get("qty"),
        notional=nums.get("notional"),
        type=typ,
        time_in_force=tif,
        limit_price=nums.get("limit_price"),
        stop_price=nums.get("stop_price"),
        trail_price=nums.get("trail_price"),
        trail_percent=nums.get("trail_percent"),
        extended_hours=eh in _TRUE,
        client_order_id=values.get("client_order_id") or None,
    )
    return FileOrder(line, intent, nums.get("price"), nums.get("position_qty", Decimal(0)))


# -- writing --------------------------------------------------------------------------------------


def order_values(order: FileOrder, intent: OrderIntent) -> dict[str, str]:
    """The columns of one corrected order (empty values omitted)."""
    out: dict[str, str] = {}
    for key in ORDER_FIELDS:
        v = getattr(intent, key if key != "type" else "type")
        if v is None or v == "":
            continue
        if isinstance(v, bool):
            if not v:
                continue
            v = "true"
        out[key] = str(v)
    if order.price is not None:
        out["price"] = str(order.price)
    if order.position_qty:
        out["position_qty"] = str(order.position_qty)
    return out


def write_orders(path: str | Path, source: OrderFile, rows: list[dict[str, str]]) -> None:
    """Write corrected orders in the source's format, keeping its columns first."""
    p = Path(path)
    if source.format == "json":
        p.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return
    columns = list(source.columns)
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    p.write_text(buf.getvalue(), encoding="utf-8")
