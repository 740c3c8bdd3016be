"""Real Alpaca payloads written by others (tests/corpus/, sources in tests/corpus/SOURCES.md)
through mqd's parsers.

Every payload either parses completely or is refused with a ``PayloadError`` that names the
field; nothing is lost on the way: each key is mapped to a typed field (numbers exactly as the
text says, as ``Decimal``) or kept in the report's ``raw`` (``Bar.extra`` for bars). An enum
value mqd does not know is kept with its text and shown as sent. Malformed variants (a required
key missing, a value of the wrong type) are refused naming the key, and random mutations never
raise anything but ``PayloadError``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqd_cli.model import AssetClass, Bar, OrderStatus, Side, TradeEvent
from mqd_cli.stream.tail import event_from_update
from mqd_cli.symbols.properties import SymbolProperties
from mqd_cli.symbols.rules import check_intent
from mqd_cli.wire import format as wire_format
from mqd_cli.wire import parse as wire_parse
from mqd_cli.wire.parse import PayloadError

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*/*.json"))
SOURCES = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")

PARSERS: dict[str, Callable[[Any], Any]] = {
    "account": wire_parse.parse_account,
    "order": wire_parse.parse_order,
    "position": wire_parse.parse_position,
    "asset": wire_parse.parse_asset,
    "clock": wire_parse.parse_clock,
    "calendar_day": wire_parse.parse_calendar_day,
    "trade_update": wire_parse.parse_trade_update,
    "bar": lambda row: wire_parse.parse_bar("SYM", row),
    "fill_activity": wire_parse.parse_fill_activity,
}
# The prefix PayloadError messages use for each kind.
PREFIX = {
    "account": "account",
    "order": "order",
    "position": "position",
    "asset": "asset",
    "clock": "clock",
    "calendar_day": "calendar",
    "trade_update": "trade_update",
    "bar": "bar",
    "fill_activity": "activity",
}
REQUIRED = {
    "account": ("id", "account_number", "status"),
    "order": ("id", "client_order_id", "status", "created_at"),
    "position": ("symbol", "qty", "avg_entry_price"),
    "asset": ("id", "symbol"),
    "clock": ("timestamp", "is_open", "next_open", "next_close"),
    "calendar_day": ("date", "open", "close"),
    "trade_update": ("event", "order"),
    "bar": ("t", "o", "h", "l", "c"),
    "fill_activity": ("id", "order_id", "symbol", "qty", "price", "cum_qty", "transaction_time"),
}
# Wire keys whose field has another name.
ALIASES = {
    "asset": {"class": "asset_class"},
    "bar": {
        "t": "timestamp",
        "o": "open",
        "h": "high",
        "l": "low",
        "c": "close",
        "v": "volume",
        "n": "trade_count",
        "vw": "vwap",
    },
}
# Keys read and checked although no field carries them (kept in ``raw``).
CHECKED = {
    "account": {"admin_configurations", "user_configurations"},
    "order": {"legs"},
    "trade_update": {"order"},
}
# Enum keys per kind: (wire key, field).
ENUMS = {
    "order": (
        ("side", "side"),
        ("type", "type"),
        ("time_in_force", "time_in_force"),
        ("status", "status"),
        ("asset_class", "asset_class"),
    ),
    "position": (("side", "side"), ("asset_class", "asset_class")),
    "asset": (("class", "asset_class"), ("status", "status")),
    "fill_activity": (("side", "side"),),
}


@dataclass(frozen=True)
class Item:
    """One payload of a corpus file: as the HTTP client decodes it (floats) and exactly."""

    file: str
    kind: str
    payload: Any
    exact: Any


def _items(path: Path) -> Iterator[Item]:
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    exact = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    kind, payload, exact_payload = doc["kind"], doc["payload"], exact["payload"]
    name = f"{path.parent.name}/{path.name}"
    if kind == "bars":  # a data-API page: {"bars": {symbol: [...]}} or {"bars": [...]}
        rows, exact_rows = payload["bars"], exact_payload["bars"]
        if isinstance(rows, dict):
            for sym in rows:
                for row, ex in zip(rows[sym], exact_rows[sym], strict=True):
                    yield Item(name, "bar", row, ex)
        else:
            for row, ex in zip(rows, exact_rows, strict=True):
                yield Item(name, "bar", row, ex)
    elif isinstance(payload, list):
        for row, ex in zip(payload, exact_payload, strict=True):
            yield Item(name, kind, row, ex)
    else:
        yield Item(name, kind, payload, exact_payload)


def _expectation(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")).get("expect") or {}


ITEMS = [item for path in FILES for item in _items(path)]
PARSED = [i for i in ITEMS if not _expectation(CORPUS / i.file)]


def _ids(items: list[Item]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in items:
        n = seen[i.file] = seen.get(i.file, 0) + 1
        out.append(f"{i.file}#{n}")
    return out


# -- the corpus itself ----------------------------------------------------------------------------


def test_the_corpus_covers_every_payload_type_mqd_parses():
    kinds = {i.kind for i in ITEMS}
    assert kinds == set(PARSERS)
    assert any(i.kind == "order" and i.payload.get("legs") for i in ITEMS)
    assert any(i.kind == "position" and i.payload.get("asset_class") == "crypto" for i in ITEMS)
    assert any(i.kind == "asset" and i.payload.get("class") == "crypto" for i in ITEMS)
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_file_names_its_source_and_is_listed_in_sources_md(path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    source = doc["_source"]
    assert {"repo", "commit", "path"} <= set(source) or "url" in source
    if "commit" in source:
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert f"{path.parent.name}/{path.name}" in SOURCES
    assert set(doc) <= {"_source", "_note", "kind", "payload", "expect"}


# -- parsed completely, nothing lost -----------------------------------------------------------


def _exact_number(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value).strip())


def _check_field(kind: str, key: str, got: Any, sent: Any, exact: Any) -> None:
    """``got`` (the parsed field) says exactly what the payload's ``sent`` said."""
    where = f"{kind}.{key}"
    if sent is None or sent == "":
        if isinstance(got, Enum):
            return  # the report's default ("" or null means not applicable)
        assert got in (None, "", False, Decimal(0), Decimal(1), ()), where
        return
    if isinstance(got, Decimal):
        want = _exact_number(exact)
        assert got == want, where
        if isinstance(sent, str):  # the digits as the text wrote them, not a rounding of them
            assert got.as_tuple() == want.as_tuple(), where
    elif isinstance(got, bool):
        assert got is wire_parse.boolean(sent), where
    elif isinstance(got, int):
        assert got == int(_exact_number(exact)), where
    elif isinstance(got, datetime):
        assert got == wire_parse.ts(sent), where
    elif isinstance(got, date):
        assert got.isoformat() == sent, where
    elif isinstance(got, time):  # "09:30" (open/close) or "0400" (session_*)
        assert got.strftime("%H%M") == sent.replace(":", ""), where
    elif isinstance(got, Enum):
        assert got.value == sent.strip().lower() or got.name == "UNKNOWN", where
    elif isinstance(got, tuple):
        assert list(got) == sent, where
    elif kind == "position" and key == "symbol":
        assert got == sent.strip().upper() or "/" in got, where  # BTCUSD is keyed BTC/USD
    else:
        assert got == sent, where


def _check_report(kind: str, report: Any, payload: Mapping[str, Any], exact: Any) -> None:
    if kind == "bar":
        assert isinstance(report, Bar)
        mapped = set(ALIASES["bar"])
        assert dict(report.extra) == {k: v for k, v in payload.items() if k not in mapped}
    else:
        assert report.raw == payload  # every key, mapped or not, is kept as sent
        assert report.raw is not payload
    aliases = ALIASES.get(kind, {})
    for key, sent in payload.items():
        name = aliases.get(key, key)
        if name in ("raw", "legs", "order") or not hasattr(report, name):
            continue
        _check_field(kind, key, getattr(report, name), sent, exact[key])
    if kind == "order":
        legs = payload.get("legs") or []
        assert len(report.legs) == len(legs)
        for leg, sent, ex in zip(report.legs, legs, exact.get("legs") or [], strict=True):
            _check_report("order", leg, sent, ex)
    if kind == "trade_update":
        _check_report("order", report.order, payload["order"], exact["order"])
        assert report.event_raw == payload["event"]


@pytest.mark.parametrize("item", PARSED, ids=_ids(PARSED))
def test_corpus_payload_parses_completely_with_every_key_mapped_or_kept(item):
    report = PARSERS[item.kind](item.payload)
    _check_report(item.kind, report, item.payload, item.exact)


@pytest.mark.parametrize("path", [p for p in FILES if _expectation(p)], ids=lambda p: p.name)
def test_corpus_payload_mqd_cannot_use_is_refused_with_a_clear_payload_error(path):
    message = _expectation(path)["refused"]
    for item in _items(path):
        with pytest.raises(PayloadError, match=re.escape(message)):
            PARSERS[item.kind](item.payload)


def test_numbers_keep_every_digit_alpaca_sent():
    by_file = {i.file: i for i in ITEMS}
    account = wire_parse.parse_account(by_file["account/docs-getaccount-200-example.json"].payload)
    assert account.last_equity == Decimal("122011.09751111286868")
    assert account.options_buying_power == Decimal("122716.305")
    debit = wire_parse.parse_account(
        by_file["account/docs-instant-funding-debit-balance.json"].payload
    )
    assert debit.accrued_fees == Decimal("0.113961944444418396")
    assert debit.cash == Decimal("-15.26") and debit.equity == Decimal("-2.31")
    position = wire_parse.parse_position(by_file["position/docs-crypto-btcusd.json"].payload)
    assert position.avg_entry_price == Decimal("19660.5738784516887649")
    assert position.raw["unrealized_intraday_pl"] == "-514.790552088631999405963"
    assert position.symbol == "BTC/USD" and position.raw["symbol"] == "BTCUSD"


def test_the_whole_account_is_kept_typed_where_mqd_reads_it():
    doc = json.loads((CORPUS / "account/docs-getaccount-200-example.json").read_text())
    a = wire_parse.parse_account(doc["payload"])
    assert (a.effective_buying_power, a.position_market_value) == (
        Decimal("245432.61"),
        Decimal("1259.61"),
    )
    assert a.crypto_tier == 1 and a.options_trading_level == 2 and a.crypto_status == "ACTIVE"
    assert a.options_approved_level is None  # not sent: None, not a made-up 0
    assert a.balance_asof == date(2023, 9, 27) and a.sma == Decimal("123369.74")
    assert a.raw["admin_configurations"] == {} and a.raw["user_configurations"] is None
    legacy = wire_parse.parse_account(
        json.loads((CORPUS / "account/alpaca-py-get-account.json").read_text())["payload"]
    )
    # alpaca-py's fixture sends the options levels as text and still has the PDT fields.
    assert legacy.options_approved_level == 1 and legacy.options_trading_level == 1
    assert legacy.pattern_day_trader is False and legacy.daytrade_count == 0
    assert legacy.daytrading_buying_power == Decimal("262113.632")


def test_an_order_for_an_ipo_keeps_its_asset_class_text():
    doc = json.loads((CORPUS / "order/docs-postorder-ipo.json").read_text())
    order = wire_parse.parse_order(doc["payload"])
    assert order.asset_class is AssetClass.UNKNOWN
    assert order.raw_value("asset_class") == "ipo"
    assert wire_format.order_to_wire(order)["asset_class"] == "ipo"


def test_an_mleg_order_keeps_its_legs_with_their_own_classes_and_ratios():
    doc = json.loads((CORPUS / "order/docs-postorder-mleg.json").read_text())
    order = wire_parse.parse_order(doc["payload"])
    assert order.order_class == "mleg" and order.symbol == "" and len(order.legs) == 2
    assert [leg.symbol for leg in order.legs] == ["AAPL241213C00250000", "AAPL241213C00260000"]
    assert [leg.asset_class for leg in order.legs] == [AssetClass.US_OPTION] * 2
    assert [leg.raw["ratio_qty"] for leg in order.legs] == ["3", "1"]
    assert order.legs[0].filled_avg_price == Decimal("0.43")


def test_bars_from_two_venues_at_one_time_keep_their_venue():
    items = [i for i in ITEMS if i.file == "bars/docs-crypto-multi-bars-two-venues.json"]
    bars = [wire_parse.parse_bar("BTCUSD", i.payload) for i in items]
    assert bars[0].timestamp == bars[1].timestamp
    assert [dict(b.extra)["x"] for b in bars] == ["CBSE", "FTXU"]
    assert bars[0].volume == Decimal("12.36582291")


def test_a_fractional_trade_count_is_refused_not_dropped():
    with pytest.raises(PayloadError, match=r"bar\.n: expected a whole number, got 1\.5"):
        row = {"t": "2022-02-01T05:00:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "n": 1.5}
        wire_parse.parse_bar("AAPL", row)


# -- unknown enum values are kept and shown as sent --------------------------------------------

NEW = "brand_new_value"
ENUM_ITEMS = [i for i in PARSED if i.kind in ENUMS or i.kind == "trade_update"]


@pytest.mark.parametrize("item", ENUM_ITEMS, ids=_ids(ENUM_ITEMS))
def test_an_unknown_enum_value_is_kept_with_its_text_and_displayed_as_sent(item):
    if item.kind == "trade_update":
        payload = copy.deepcopy(item.payload)
        payload["event"] = NEW
        payload["order"]["side"] = NEW
        payload["order"]["status"] = NEW
        update = wire_parse.parse_trade_update(payload)
        assert update.event is TradeEvent.UNKNOWN and update.order.status is OrderStatus.UNKNOWN
        shown = event_from_update(update)  # what `mqd stream tail` prints
        assert (shown.event, shown.side, shown.status) == (NEW, NEW, NEW)
        assert wire_format.trade_update_to_wire(update)["data"]["event"] == NEW
        return
    for key, name in ENUMS[item.kind]:
        if key not in item.payload:
            continue
        payload = {**item.payload, key: NEW}
        report = PARSERS[item.kind](payload)
        assert getattr(report, name).name == "UNKNOWN", key
        assert report.raw[key] == NEW
        if item.kind == "order":
            assert report.raw_value(key) == NEW
            assert wire_format.order_to_wire(report)[key] == NEW
        elif item.kind == "position":
            assert wire_format.position_to_wire(report)[key] == NEW
        elif item.kind == "fill_activity":
            pass  # not shown or served by mqd as such: the raw text above is what is kept
        else:
            shown = SymbolProperties.from_asset(report).to_doc()  # `mqd symbols show`
            assert shown[name] == NEW
            assert wire_format.asset_to_wire(report)[key] == NEW


def test_an_asset_of_a_class_mqd_does_not_know_is_refused_by_validation_with_its_class():
    doc = json.loads((CORPUS / "asset/docs-crypto-btc-usd-ftxu.json").read_text())
    asset = wire_parse.parse_asset({**doc["payload"], "class": "us_index"})
    props = SymbolProperties.from_asset(asset)
    from mqd_cli.model import OrderIntent

    problems = check_intent(props, OrderIntent("BTC/USD", Side.BUY, qty=Decimal("1")))
    assert [p.code for p in problems] == ["UNSUPPORTED_ASSET_CLASS"]
    assert "us_index" in problems[0].message


# -- malformed variants are refused, naming the key --------------------------------------------

WRONG = [{"wrong": "type"}]


def _typed_keys(item: Item) -> list[str]:
    report = PARSERS[item.kind](item.payload)
    aliases = ALIASES.get(item.kind, {})
    keys = []
    for key in item.payload:
        name = aliases.get(key, key)
        if key in CHECKED.get(item.kind, ()) or (name != "raw" and hasattr(report, name)):
            keys.append(key)
    return keys


@pytest.mark.parametrize("item", PARSED, ids=_ids(PARSED))
def test_a_payload_missing_a_required_key_is_refused_naming_it(item):
    prefix = PREFIX[item.kind]
    for key in REQUIRED[item.kind]:
        payload = {k: v for k, v in item.payload.items() if k != key}
        with pytest.raises(PayloadError, match=re.escape(f"{prefix}.{key}")):
            PARSERS[item.kind](payload)
    with pytest.raises(PayloadError, match=re.escape(prefix)):
        PARSERS[item.kind]([item.payload])  # a list where an object belongs


@pytest.mark.parametrize("item", PARSED, ids=_ids(PARSED))
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(item):
    prefix = PREFIX[item.kind]
    for key in _typed_keys(item):
        payload = {**item.payload, key: WRONG}
        with pytest.raises(PayloadError, match=re.escape(f"{prefix}.{key}")):
            PARSERS[item.kind](payload)


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "1e999", "-0", "NaN", "2026-13-45T99:99:99Z", "12:75", "true", "1.5"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(min_value=0, max_value=len(PARSED) - 1),
    edits=st.lists(st.tuples(st.integers(min_value=0), JUNK, st.booleans()), max_size=4),
)
def test_a_mutated_corpus_payload_parses_or_raises_payload_error_only(index, edits):
    item = PARSED[index]
    payload = copy.deepcopy(item.payload)
    for pick, value, delete in edits:
        keys = sorted(payload)
        if not keys:
            break
        key = keys[pick % len(keys)]
        if delete:
            del payload[key]
        else:
            payload[key] = value
    try:
        PARSERS[item.kind](payload)
    except PayloadError as exc:
        assert str(exc).startswith(PREFIX[item.kind])


# -- the emulator's account carries Alpaca's field set -----------------------------------------


def test_the_emulator_account_has_the_fields_of_alpacas_current_payload_and_no_pdt_ones():
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.clock import BacktestClock
    from mqd_cli.config.settings import SimSettings

    clock = BacktestClock(datetime.fromisoformat("2026-09-16T14:00:00+00:00"))
    broker = SimBroker(SimSettings(), clock)
    wire = wire_format.account_to_wire(broker.get_account(), broker.created_at)
    current = json.loads((CORPUS / "account/docs-getaccount-200-example.json").read_text())
    schema = json.loads((CORPUS / "account/docs-getaccount-schema-example.json").read_text())
    # The 200 example is the current shape; it lacks two fields the schema example and the
    # OpenAPI list (options_approved_level, pending_transfer_out).
    expected = set(current["payload"]) | {"options_approved_level", "pending_transfer_out"}
    assert set(wire) == expected
    assert expected - set(current["payload"]) <= set(schema["payload"]) | {"pending_transfer_out"}
    for key, value in current["payload"].items():
        assert type(wire[key]) is type(value), key
    removed = {"pattern_day_trader", "daytrade_count", "daytrading_buying_power", "bod_dtbp"}
    assert not removed & set(wire)
    parsed = wire_parse.parse_account(wire)
    assert parsed.created_at == broker.created_at
    assert dataclasses.replace(parsed, created_at=None) == broker.get_account()


def test_reconcile_shows_an_unknown_side_type_and_status_as_the_broker_sent_them():
    from mqd_cli.reconcile import diff as rc_diff
    from mqd_cli.reconcile import model as rc_model

    doc = json.loads((CORPUS / "order/docs-postorder-equity.json").read_text())
    sent = {**doc["payload"], "side": "sell_short_exempt", "type": NEW, "order_type": NEW}
    order = wire_parse.parse_order(sent)
    assert order.side is Side.UNKNOWN and order.status.is_open
    nothing = rc_model.LocalState(
        orders=(), positions={}, cash_baseline=None, net_traded_since_baseline=Decimal(0)
    )
    snapshot = rc_model.BrokerSnapshot(
        orders=(order,), positions=(), account=None, taken_at=order.created_at
    )
    (orphan,) = rc_diff.orphan_findings(nothing, snapshot)
    assert orphan.detail.startswith(f"sell_short_exempt 2 {NEW}, filled 0")
    assert orphan.broker == "accepted"
    ours = rc_model.LocalOrder(
        client_order_id=order.client_order_id,
        broker_id=order.id,
        symbol="AAPL",
        side=Side.BUY,
        status=OrderStatus.ACCEPTED,
        filled_qty=Decimal(0),
        avg_price=None,
        created_at=order.created_at,
        updated_at=order.created_at,
        is_open=True,
    )
    drifted = wire_parse.parse_order({**doc["payload"], "status": NEW})
    (finding,) = [f for f in rc_diff.order_drift(ours, drifted) if f.kind == "status_drift"]
    assert (finding.local, finding.broker) == ("accepted", NEW)
